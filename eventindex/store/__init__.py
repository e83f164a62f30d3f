"""Object stores behind one interface: `file:///dir` (embedded default) and `s3://bucket/prefix?endpoint=URL`."""

from eventindex.store.base import ObjectStore, open_store

__all__ = ["ObjectStore", "open_store"]
