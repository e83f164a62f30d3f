"""The supersink's cache of chunks verified at intake (supersink.fetch.ChunkCache) and its use by a load."""

from __future__ import annotations

import hashlib
from pathlib import Path

from eventindex.codec import encode_chunk
from eventindex.store.local import LocalStore
from producer.inputs.synthetic import SyntheticInput
from supersink.fetch import ChunkCache, load_chunk, verify_chunk


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_a_chunk_is_taken_once_and_only_with_its_checksum() -> None:
    cache = ChunkCache(max_bytes=1000)
    cache.put("a", sha(b"x" * 100), b"x" * 100)
    assert cache.take("a", sha(b"other")) is None, "another object under the same key is not served"
    assert cache.bytes == 0 and len(cache) == 0
    cache.put("a", sha(b"x" * 100), b"x" * 100)
    assert cache.take("a", sha(b"x" * 100)) == b"x" * 100
    assert cache.take("a", sha(b"x" * 100)) is None, "taken out when used"
    assert (cache.hits, cache.misses) == (1, 2)


def test_the_oldest_chunks_make_room_and_big_ones_are_not_kept() -> None:
    cache = ChunkCache(max_bytes=1000)
    for i in range(5):
        cache.put(str(i), sha(b"%d" % i), bytes(240))
    assert cache.bytes == 960 and len(cache) == 4, "the first was evicted"
    assert cache.take("0", sha(b"0")) is None and cache.take("4", sha(b"4")) is not None
    cache.put("big", sha(b"big"), bytes(251))
    assert cache.take("big", sha(b"big")) is None, "over a quarter of the cache: fetched again instead"
    cache.put("1", sha(b"1"), bytes(10))  # the same key again replaces, and is counted once
    assert cache.bytes == 240 * 2 + 10


def test_a_load_after_intake_reads_the_chunk_from_the_cache(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    table = next(iter(SyntheticInput(2_000, 7).batches(2_000)))
    data = encode_chunk(table).data
    store.put("t/j/1/chunk-000000.eic", data)
    cache = ChunkCache()
    key = "t/j/1/chunk-000000.eic"
    verified = verify_chunk(store, key, size=len(data), sha256=sha(data), events=2_000, cache=cache)
    (tmp_path / "store" / "t/j/1/chunk-000000.eic").unlink()  # a hit needs no store
    loaded = load_chunk(key, verified.size, verified.sha256, store=store, assembly=store, cache=cache)
    assert loaded.select(table.column_names).equals(table), "the cached bytes decode to the events stored"
    assert cache.hits == 1
