"""Chunk bodies joined into a reused per-thread buffer (eventindex.codec, Writer.join_into): the same bytes."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pyarrow as pa
import pytest
import zstandard

from eventindex import codec
from eventindex.columns import encode_versioned_body
from eventindex.wire import Writer
from producer.inputs.synthetic import SyntheticInput


def test_join_into_writes_what_getvalue_joins() -> None:
    inner = Writer()
    inner.packed(1, np.arange(5, dtype=np.uint32), "<u4")
    out = Writer()
    out.uint(1, 300)
    out.bytes_field(2, np.arange(16, dtype=np.uint16).data.cast("B"))  # a view is copied as its bytes
    out.bytes_field(3, b"abc")
    out.bytes_field(5, np.arange(4, dtype=np.uint32).data)  # a view of 4-byte items
    out.message(4, inner)
    buffer = bytearray(b"\xff" * (out.size + 7))
    view = out.join_into(buffer)
    assert bytes(view) == out.getvalue() and out.size == len(out.getvalue())
    assert buffer[out.size :] == b"\xff" * 7  # nothing written past the message
    view.release()
    with pytest.raises(ValueError, match="buffer"):
        out.join_into(bytearray(out.size - 1))


def _fresh(table: pa.Table) -> bytes:
    """The object as encode_chunk made it before the buffer: the body joined by getvalue."""
    body, version = encode_versioned_body(table)
    return codec._pack(codec.CHUNK_MAGIC, version, body, table.num_rows, codec.DEFAULT_ZSTD_LEVEL).data


def test_chunks_of_shrinking_and_growing_bodies_are_the_bytes_of_a_fresh_join() -> None:
    tables = list(SyntheticInput(3_000, 4).batches(1_000))
    sizes = [tables[0], tables[1].slice(0, 10), tables[2], tables[0].slice(0, 0), pa.concat_tables(tables)]
    for table in sizes:  # a smaller body after a larger one: the buffer's tail holds the old bytes
        obj = codec.encode_chunk(table)
        assert obj.data == _fresh(table)
        assert obj.sha256 == hashlib.sha256(obj.data).digest()
        assert codec.decode_chunk(obj.data).equals(codec.decode_chunk(_fresh(table)))
        header = codec.read_header(obj.data, codec.CHUNK_MAGIC)
        assert header.usize == len(zstandard.ZstdDecompressor().decompress(obj.data[codec.HEADER_SIZE :]))


def test_threads_encode_with_their_own_buffers() -> None:
    tables = list(SyntheticInput(4_000, 9).batches(500))
    want = [_fresh(table) for table in tables]
    got: dict[int, list[bytes]] = {}

    def encode(k: int) -> None:
        got[k] = [codec.encode_chunk(table).data for table in tables[k::2] * 3]

    threads = [threading.Thread(target=encode, args=(k,)) for k in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k in (0, 1):
        assert got[k] == want[k::2] * 3


def test_a_body_over_the_limit_is_joined_without_keeping_its_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    small = next(iter(SyntheticInput(1_200, 3).batches(200)))
    large = pa.concat_tables(SyntheticInput(1_200, 3).batches(1_200))
    monkeypatch.setattr(codec, "_scratch", threading.local())
    monkeypatch.setattr(codec, "SCRATCH_MAX_BYTES", len(encode_versioned_body(small)[0]))
    assert codec.encode_chunk(small).data == _fresh(small)
    kept = codec._scratch.buffer
    assert codec.encode_chunk(large).data == _fresh(large)
    assert codec._scratch.buffer is kept  # the larger body's buffer was not kept
    assert codec.encode_chunk(small).data == _fresh(small)
