from __future__ import annotations

import hashlib
import struct

import pyarrow as pa
import pytest

from eventindex import codec
from eventindex.errors import (
    CodecError,
    CorruptObjectError,
    OversizedObjectError,
    TruncatedObjectError,
    UnsupportedVersionError,
)
from eventindex.schema import eventindex_pb2 as pb
from tests.helpers import forge_chunk


def test_chunk_round_trip_keeps_every_column(events: pa.Table) -> None:
    obj = codec.encode_chunk(events)
    assert obj.count == events.num_rows
    assert obj.sha256 == hashlib.sha256(obj.data).digest()
    assert codec.decode_chunk(obj.data).equals(events)


def test_round_trip_of_a_slice_with_offsets(events: pa.Table) -> None:
    part = events.slice(137, 501)
    assert codec.decode_chunk(codec.encode_chunk(part).data).equals(part)


def test_nulls_survive(events: pa.Table) -> None:
    decoded = codec.decode_chunk(codec.encode_chunk(events).data)
    assert decoded.column("l2_passed_physics").null_count == events.num_rows
    assert decoded.column("extended_level1_id").null_count == events.column("extended_level1_id").null_count > 0


def test_empty_chunk_round_trips(events: pa.Table) -> None:
    empty = events.slice(0, 0)
    assert codec.decode_chunk(codec.encode_chunk(empty).data).num_rows == 0


def _reheader(data: bytes, **changes: int) -> bytes:
    fields = list(struct.unpack_from("<4sHBBHHQQQ32s", data))
    names = ["magic", "version", "codec", "flags", "header_size", "reserved", "usize", "count", "csize", "sha256"]
    for name, value in changes.items():
        fields[names.index(name)] = value
    return struct.pack("<4sHBBHHQQQ32s", *fields) + data[codec.HEADER_SIZE :]


@pytest.mark.parametrize(
    ("mangle", "error", "words"),
    [
        (lambda d: d[:10], TruncatedObjectError, "shorter than"),
        (lambda d: d[:-5], TruncatedObjectError, "header says"),
        (lambda d: d + b"xx", CorruptObjectError, "trailing"),
        (lambda d: b"NOPE" + d[4:], CorruptObjectError, "bad magic"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 0xFF]), CorruptObjectError, "sha256"),
        (lambda d: _reheader(d, version=9), UnsupportedVersionError, "version 9"),
        (lambda d: _reheader(d, codec=7), UnsupportedVersionError, "codec"),
        (lambda d: _reheader(d, usize=10**12), OversizedObjectError, "limit"),
        (lambda d: _reheader(d, count=3), CorruptObjectError, "header says 3"),
    ],
)
def test_bad_objects_raise_typed_one_line_errors(events: pa.Table, mangle, error, words) -> None:  # type: ignore[no-untyped-def]
    data = codec.encode_chunk(events.slice(0, 100)).data
    with pytest.raises(error) as info:
        codec.decode_chunk(mangle(data))
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_zstd_bomb_is_refused_before_inflating() -> None:
    bomb = forge_chunk(b"\0" * (64 * 1024 * 1024), usize=64 * 1024 * 1024)
    assert len(bomb) < 100_000
    with pytest.raises(OversizedObjectError):
        codec.decode_chunk(bomb, max_uncompressed=1024 * 1024)


def test_zstd_bomb_lying_about_its_size_is_refused() -> None:
    # The header claims 1 kB; the frame (without a declared size) inflates to 64 MB.
    bomb = forge_chunk(b"\0" * (64 * 1024 * 1024), usize=1024, frame_size=False)
    with pytest.raises(CodecError):
        codec.decode_chunk(bomb)


def test_undecodable_body_is_corrupt() -> None:
    with pytest.raises(CorruptObjectError, match="protobuf"):
        codec.decode_chunk(forge_chunk(b"\xff\xff\xff\xff garbage", usize=12))


def test_inconsistent_columns_are_corrupt(events: pa.Table) -> None:
    body = pb.ChunkBody(rows=2)
    body.run_number.extend([1])
    with pytest.raises(CorruptObjectError, match="run_number"):
        codec.decode_chunk(forge_chunk(body.SerializeToString(), usize=body.ByteSize(), count=2))


def test_manifest_round_trip() -> None:
    manifest = pb.Manifest(schema_version=1, task="t", job="j", attempt=2, dataset="d", total_events=5)
    manifest.chunks.add(seq=0, key="t/j/2/chunk-000000.eic", size=10, sha256=b"x" * 32, events=5)
    obj = codec.encode_manifest(manifest)
    assert codec.decode_manifest(obj.data) == manifest
    with pytest.raises(CorruptObjectError):
        codec.decode_chunk(obj.data)  # a manifest is not a chunk


def test_manifest_of_unknown_schema_version() -> None:
    obj = codec.encode_manifest(pb.Manifest(schema_version=2, task="t"))
    with pytest.raises(UnsupportedVersionError):
        codec.decode_manifest(obj.data)


def test_the_body_is_an_ordinary_protobuf_chunkbody(events: pa.Table) -> None:
    """Our column writer's bytes parse with the protobuf runtime; what it writes back decodes the same."""
    from eventindex.columns import Body, decode_body, encode_body

    raw = encode_body(events)
    message = pb.ChunkBody.FromString(raw)
    assert message.rows == events.num_rows
    assert list(message.event_number) == events.column("event_number").to_pylist()
    assert message.l1_tbp.width_bits == 512 and len(message.l1_tbp.counts) == events.num_rows
    assert decode_body(Body(message.SerializeToString())).equals(events)


def test_unpacked_and_split_repeated_fields_are_accepted(events: pa.Table) -> None:
    from eventindex.columns import Body, encode_body

    small = events.slice(0, 3)
    raw = encode_body(small)
    # Append a second record of run_number: proto3 readers concatenate repeated fields.
    extra = pb.ChunkBody()
    extra.run_number.extend([7, 8, 9])
    body = Body(raw + extra.SerializeToString())
    with pytest.raises(CorruptObjectError, match="run_number has 6 values"):
        body.keys()


@pytest.mark.parametrize(
    ("mangle", "words"),
    [
        (lambda m: m.l1_tbp.positions.append(600), "counts add up"),
        (lambda m: (m.l1_tbp.counts.__setitem__(0, m.l1_tbp.counts[0] + 1), m.l1_tbp.positions.append(999)), "outside"),
        (lambda m: m.provenance_guid.index.__setitem__(0, 99), "dictionary index out of range"),
        (lambda m: m.hlt_passed_physics.ClearField("width_bits"), "0-bit masks"),
        (lambda m: m.provenance_oid2.append(1), "provenance_oid2 has"),
    ],
)
def test_validation_at_intake_catches_what_decoding_would(events: pa.Table, mangle, words: str) -> None:  # type: ignore[no-untyped-def]
    from eventindex.columns import Body, decode_body, encode_body, validate_body

    message = pb.ChunkBody.FromString(encode_body(events.slice(0, 50)))
    mangle(message)
    raw = message.SerializeToString()
    for check in (validate_body, decode_body):
        with pytest.raises(CorruptObjectError, match=words):
            check(Body(raw))
