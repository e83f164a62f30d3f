"""Benchmarks: `ei-bench compare` (broker-only vs object-store transport) and `load_memory.py`."""
