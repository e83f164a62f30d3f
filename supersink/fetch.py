"""Fetch objects from the store and verify them against what the pointer or manifest promised."""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from eventindex.codec import decode_chunk_body, decode_manifest
from eventindex.columns import decode_body, event_keys, validate_body
from eventindex.errors import CodecError, CorruptObjectError, NeedsAttentionError, ObjectNotFoundError
from eventindex.schema import eventindex_pb2 as pb
from eventindex.store import ObjectStore

#: Ledger keys of chunks assembled from broker-only messages start with this; they live in the assembly
#: area (supersink.intake.assembly_for). The text is what ledgers hold, from when the area was called the spool.
ASSEMBLED_PREFIX = "spool:"
#: Largest chunk or manifest object the supersink fetches.
MAX_OBJECT_BYTES = 256 * 1024 * 1024
#: Bytes of verified chunk objects kept between intake and load (see ChunkCache).
CACHE_BYTES = 64 * 1024 * 1024
_KEY = struct.Struct(">IQ")


def sort_key(run: int, event: int) -> bytes:
    """(run, event) as bytes whose lexical order is the numeric order."""
    return _KEY.pack(run, event)


def unpack_key(key: bytes) -> tuple[int, int]:
    run, event = _KEY.unpack(key)
    return int(run), int(event)


@dataclass(frozen=True)
class VerifiedChunk:
    size: int
    sha256: bytes
    events: int
    min_key: bytes | None
    max_key: bytes | None


class ChunkCache:
    """Chunk objects verified at intake, kept until their task is loaded (least recently added first out).

    A task is usually loaded seconds after its last chunk arrived, so its load finds most chunks
    here and skips a second GET and checksum of each. A chunk is taken out when it is used; what
    does not fit, or was evicted, or was never seen by this process (after a restart) is simply
    fetched again. Bytes are matched by key and sha256, so a hit is the object the ledger names.
    Not thread-safe: the supersink's loop is single-threaded.
    """

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: str, sha256: bytes, data: bytes) -> None:
        self._discard(key)
        if len(data) > self.max_bytes // 4:
            return  # a big chunk would push out many small ones
        self._items[key] = (sha256, data)
        self.bytes += len(data)
        while self.bytes > self.max_bytes:
            _, (_, evicted) = self._items.popitem(last=False)
            self.bytes -= len(evicted)

    def take(self, key: str, sha256: bytes) -> bytes | None:
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes -= len(item[1])
            if item[0] == sha256:
                self.hits += 1
                return item[1]
        self.misses += 1
        return None

    def _discard(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes -= len(item[1])


def _check(data: bytes, what: str, size: int | None, sha256: bytes | None) -> bytes:
    digest = hashlib.sha256(data).digest()
    if size is not None and len(data) != size:
        raise CorruptObjectError(f"{what} is {len(data)} bytes, {size} announced")
    if sha256 is not None and digest != sha256:
        raise CorruptObjectError(
            f"{what} sha256 {digest.hex()[:16]}... differs from the announced {sha256.hex()[:16]}..."
        )
    return digest


def verify_chunk(
    store: ObjectStore,
    key: str,
    *,
    size: int | None = None,
    sha256: bytes | None = None,
    events: int | None = None,
    cache: ChunkCache | None = None,
) -> VerifiedChunk:
    """Fetch a chunk and check size, checksum, decoding and event count; CodecError/StoreError on failure.
    A chunk that passes is kept in `cache` for its load."""
    data = store.get(key, MAX_OBJECT_BYTES)
    digest = _check(data, key, size, sha256)
    body = decode_chunk_body(data)
    if events is not None and body.rows != events:
        raise CorruptObjectError(f"{key} holds {body.rows} events, {events} announced")
    validate_body(body)  # every column checked as decode_body would, so a load cannot fail on it later
    min_key, max_key = _range(*body.keys())
    if cache is not None:
        cache.put(key, digest, data)
    return VerifiedChunk(len(data), digest, body.rows, min_key, max_key)


def _range(runs: np.ndarray, events: np.ndarray) -> tuple[bytes | None, bytes | None]:
    """Smallest and largest (run, event), in linear time (no sort)."""
    if not len(runs):
        return None, None
    low, high = runs.min(), runs.max()
    return (
        sort_key(int(low), int(events[runs == low].min())),
        sort_key(int(high), int(events[runs == high].max())),
    )


def key_range(table: pa.Table) -> tuple[bytes | None, bytes | None]:
    """The smallest and largest (run, event) of some events, as sort keys."""
    return _range(*event_keys(table))


class ChunkUnusableError(NeedsAttentionError):
    """A chunk verified at intake is missing, changed or undecodable when its task loads: the chunk's
    problem, not the service's (its attempt becomes incomplete again)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"chunk {key}: {reason}")
        self.key = key
        self.reason = reason


def load_chunk(
    key: str, size: int, sha256: bytes, *, store: ObjectStore, assembly: ObjectStore, cache: ChunkCache | None = None
) -> pa.Table:
    """Fetch a chunk verified before and decode it to Arrow, checking it is still the same object.

    The bytes verified at intake are taken from `cache` when they are still there.
    An assembled chunk (broker-only transport) was put together by this supersink from its messages;
    its size and sha256 in the ledger are those of the messages, and the codec's own checksum guards
    the assembled bytes.
    ChunkUnusableError when the object is gone or is not the one verified; a StoreError otherwise
    (the store failing, not the object).
    """
    try:
        if key.startswith(ASSEMBLED_PREFIX):
            return decode_body(decode_chunk_body(assembly.get(key[len(ASSEMBLED_PREFIX) :], MAX_OBJECT_BYTES)))
        data = cache.take(key, sha256) if cache is not None else None
        if data is None:
            data = store.get(key, MAX_OBJECT_BYTES)
            _check(data, key, size, sha256)
        return decode_body(decode_chunk_body(data))
    except ObjectNotFoundError:
        raise ChunkUnusableError(key, "gone from the store since it was verified") from None
    except CodecError as exc:
        raise ChunkUnusableError(key, f"changed since it was verified: {exc}") from None


def fetch_manifest(
    store: ObjectStore, key: str, size: int | None, sha256: bytes | None, carried: bytes = b""
) -> tuple[pb.Manifest, bytes]:
    """The manifest at `key`, checked against the pointer's size and sha256: from the bytes the pointer
    `carried` when it carried them (no GET), else from the store."""
    data = carried or store.get(key, MAX_OBJECT_BYTES)
    digest = _check(data, key, size, sha256)
    return decode_manifest(data), digest
