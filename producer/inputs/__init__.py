"""Readers of a job's input files. Each yields Arrow tables of events (eventindex.columns.EVENT_SCHEMA)."""

from producer.inputs.base import InputSource, open_input

__all__ = ["InputSource", "open_input"]
