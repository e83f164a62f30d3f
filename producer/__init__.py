"""The job-side producer: inputs -> events -> chunks -> upload -> pointers."""
