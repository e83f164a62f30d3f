"""Tests that run programs as processes: the console scripts (ei-producer, ei-supersink, ei-catalog), and protoc.

They need no servers, like tests/unit, but each case starts an interpreter or two, so they sit in a tier of
their own: `pytest tests/unit` stays quick.
"""
