"""Test servers the integration tests and benchmarks start on loopback."""
