"""Shared core of the event-metadata collection system: schema, chunk codec, stores, transports."""

__version__ = "0.1.0"
