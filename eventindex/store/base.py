"""The object-store interface, and the URL dispatch to its adapters.

Keys are relative to the store's root (a directory, or a bucket plus prefix). Every write is
write-once: a second write of the same key raises ObjectExistsError, never overwrites.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from urllib.parse import urlsplit

from eventindex.errors import ConfigError, ForbiddenLocationError

#: Largest object a reader accepts unless told otherwise.
DEFAULT_MAX_OBJECT_BYTES = 1024 * 1024 * 1024


class ObjectStore(ABC):
    """A place for chunk and manifest objects."""

    #: The URL this store was opened with, without credentials.
    url: str

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write `data` under `key` once; raise ObjectExistsError if the key exists."""

    @abstractmethod
    def get(self, key: str, max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> bytes:
        """Read an object; ObjectNotFoundError if absent, OversizedObjectError if above max_bytes."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under `prefix`, in lexical order."""

    @abstractmethod
    def object_url(self, key: str) -> str:
        """The location a pointer carries for `key` (no endpoint, no credentials)."""

    @abstractmethod
    def key_for_url(self, url: str) -> str:
        """The key of a pointer's `url`; ForbiddenLocationError when it lies outside this store."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def check_key(key: str) -> str:
    """Keys are relative, '/'-separated, with no empty, '.' or '..' parts."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise ForbiddenLocationError(f"object key {key!r} is not a clean relative key")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise ForbiddenLocationError(f"object key {key!r} contains control characters")
    return key


def open_store(url: str) -> ObjectStore:
    """Open the store a URL names: `file:///abs/dir` or `s3://bucket[/prefix][?endpoint=...]`."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        from eventindex.store.local import LocalStore

        return LocalStore.from_url(url)
    if scheme == "s3":
        from eventindex.store.s3 import S3Store

        return S3Store.from_url(url)
    raise ConfigError(f"store URL {url!r}: scheme must be file:// or s3://")
