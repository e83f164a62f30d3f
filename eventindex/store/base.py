"""The object-store interface, and the URL dispatch to its adapters.

Keys are relative to the store's root (a directory, or a bucket plus prefix). Every write is
write-once: a second write of the same key raises ObjectExistsError, never overwrites.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from eventindex.errors import ConfigError, ForbiddenLocationError, StoreError
from eventindex.redact import redact

#: Largest object a reader accepts unless told otherwise.
DEFAULT_MAX_OBJECT_BYTES = 1024 * 1024 * 1024
MIB = 1024 * 1024
#: S3's floor for every part of a multipart upload but the last.
MIN_PART_BYTES = 5 * MIB
#: Objects above this size are uploaded in parts of this size (s3transfer's default too).
DEFAULT_MULTIPART_BYTES = 8 * MIB
#: The lowest threshold accepted: below 5 MiB an object goes up as one (last, hence small) part.
MIN_MULTIPART_THRESHOLD = MIB
#: S3's ceiling on the number of parts of one upload.
MAX_PARTS = 10_000
#: HTTP connections one store keeps open (botocore's pool); at least the upload threads.
DEFAULT_CONNECTIONS = 10
MAX_CONNECTIONS = 256
#: Attempts per S3 request (botocore standard mode, the retry layer inside the S3 adapter). With its backoff
#: (full jitter, 50 ms * 2**i for errors that are not throttling, capped at 20 s) 6 attempts give up
#: on an unreachable store within ~1.6 s; 10 ride out ~25 s (about 13 s expected).
DEFAULT_MAX_ATTEMPTS = 6
MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class StoreOptions:
    """How a store writes: multipart threshold and part size, connection pool, attempts per request (S3 only)."""

    multipart_threshold: int = DEFAULT_MULTIPART_BYTES
    part_size: int = DEFAULT_MULTIPART_BYTES
    connections: int = DEFAULT_CONNECTIONS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    def __post_init__(self) -> None:
        if self.part_size < MIN_PART_BYTES:
            raise ConfigError(f"multipart part size must be at least {MIN_PART_BYTES // MIB} MiB")
        if self.multipart_threshold < MIN_MULTIPART_THRESHOLD:
            raise ConfigError(f"multipart threshold must be at least {MIN_MULTIPART_THRESHOLD // MIB} MiB")
        if not 1 <= self.connections <= MAX_CONNECTIONS:
            raise ConfigError(f"store connections must be 1-{MAX_CONNECTIONS}")
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS:
            raise ConfigError(f"store attempts must be 1-{MAX_ATTEMPTS}")


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

    def delete(self, keys: Sequence[str]) -> None:
        """Remove objects (for retention after a commit); absent keys are no error."""
        raise StoreError(f"the store {self.url} cannot delete objects")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def check_key(key: str) -> str:
    """Keys are relative, '/'-separated, with no empty, '.' or '..' parts."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise ForbiddenLocationError(f"object key {key!r} is not a clean relative key")
    if _CONTROL.search(key):
        raise ForbiddenLocationError(f"object key {key!r} contains control characters")
    return key


def open_store(url: str, options: StoreOptions | None = None, *, create: bool = True) -> ObjectStore:
    """Open the store a URL names: `file:///abs/dir` or `s3://bucket[/prefix][?endpoint=...&ca=...]`.
    Without `create`, a location that does not exist is a ConfigError, not an empty store: a missing
    directory (with `create`, it is made), an S3 bucket the store says does not exist (asked once)."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        from eventindex.store.local import LocalStore

        return LocalStore.from_url(url, create)
    if scheme == "s3":
        from eventindex.store.s3 import S3Store

        store = S3Store.from_url(url, options)
        if not create:
            try:
                store.check_bucket()
            except BaseException:
                store.close()
                raise
        return store
    raise ConfigError(f"store URL {redact(url)!r}: scheme must be file:// or s3://")


def check_store_url(url: str) -> None:
    """Validate a store URL (and the files it names) without opening the store or creating anything."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        from eventindex.store.local import file_url_path

        file_url_path(url)
    elif scheme == "s3":
        from eventindex.store.s3 import S3Location

        S3Location.from_url(url)
    else:
        raise ConfigError(f"store URL {redact(url)!r}: scheme must be file:// or s3://")
