from __future__ import annotations

import hashlib
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from eventindex import codec
from eventindex.columns import EVENT_SCHEMA, PROVENANCE_TYPE, Body, decode_body, encode_body, validate_body
from eventindex.errors import (
    CodecError,
    CorruptObjectError,
    OversizedObjectError,
    TruncatedObjectError,
    UnsupportedVersionError,
)
from eventindex.schema import eventindex_pb2 as pb
from eventindex.wire import _varint
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


def test_tables_of_several_chunks_round_trip(events: pa.Table) -> None:
    """Columns of several chunks (as concatenated batches are), with nulls in some chunks only."""
    with_nulls = _with_nulls(events.slice(300, 200), 3)
    table = pa.concat_tables([events.slice(0, 300), with_nulls, events.slice(500, 0), events.slice(900, 77)])
    assert table.column("l1_tbp").num_chunks == 4
    decoded = codec.decode_chunk(codec.encode_chunk(table).data)
    assert decoded.to_pylist() == table.to_pylist()


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


def _peak_bytes(call: Callable[[], object]) -> tuple[int, str]:
    """The peak of Python allocations while `call` runs, and the CodecError it raised ("" for none)."""
    tracemalloc.start()
    raised = ""
    try:
        call()
    except CodecError as exc:
        raised = str(exc)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


def test_a_small_chunk_of_millions_of_tiny_fields_is_refused_before_it_costs_memory() -> None:
    """An unknown 2-byte field repeated 4 million times: 8 MiB that zstd packs into a few kB. Parsed
    field by field it cost ~34 MB per MiB (a gigabyte for a 3 kB object); it is refused at the cap."""
    body = b"\x08\x01" + b"\x78\x00" * (4 << 20)  # rows = 1, then field 15 = 0 again and again
    bomb = forge_chunk(body, usize=len(body), count=1)
    assert len(bomb) < 10_000
    peak, raised = _peak_bytes(lambda: codec.decode_chunk(bomb))
    assert "more than 1,048,576 fields in one protobuf message" in raised
    assert peak < len(body) + 320_000_000  # ~1 GB without the bound


def test_a_manifest_of_millions_of_tiny_entries_is_refused_before_it_costs_memory() -> None:
    runs = b"\x32\x00" * 1_100_000  # 1.1 million empty run ranges ...
    nested = b"\x3a" + _varint(len(runs)) + runs  # ... in one input file summary (field 7)
    flat = b"\x32\x00" * 1_100_000  # 1.1 million empty chunk entries
    for raw in (nested, flat):
        obj = codec._pack(codec.MANIFEST_MAGIC, codec.MANIFEST_VERSION, raw, 0, 3)
        assert len(obj.data) < 50_000
        with pytest.raises(CorruptObjectError, match="more than 1,048,576 fields"):
            codec.decode_manifest(obj.data)
    fine = pb.Manifest(schema_version=1, total_events=10_000)
    for seq in range(10_000):
        fine.chunks.add(seq=seq, events=1, size=100, sha256=bytes(32))
    assert len(codec.decode_manifest(codec.encode_manifest(fine).data).chunks) == 10_000


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


# ---------------------------------------------------------------- presence (format version 2)

V1_DIR = Path(__file__).resolve().parents[1] / "data" / "chunk-v1"


def _with_nulls(events: pa.Table, seed: int) -> pa.Table:
    """The events with nulls scattered through every column that may hold one, references' fields too."""
    rng = np.random.default_rng(seed)
    n = events.num_rows
    arrays = []
    for field in EVENT_SCHEMA:
        array = events.column(field.name).combine_chunks()
        if field.name == "provenance":
            refs = array.flatten()
            children = [
                refs.field(f.name)
                if not f.nullable
                else pc.if_else(rng.random(len(refs)) < 0.3, None, refs.field(f.name))
                for f in PROVENANCE_TYPE.value_type
            ]
            structs = pa.StructArray.from_arrays(children, fields=list(PROVENANCE_TYPE.value_type))
            array = pa.ListArray.from_arrays(array.offsets, structs, type=PROVENANCE_TYPE)
            # A null list must hold no references: empty some rows' lists, then null them.
            empty = rng.random(n) < 0.2
            lists = array.to_pylist()
            array = pa.array([None if e else refs for e, refs in zip(empty, lists, strict=True)], PROVENANCE_TYPE)
        elif field.nullable:
            array = pc.if_else(rng.random(n) < 0.25, None, array)
            if field.name == "mc_event_weight":
                array = pc.if_else(array.is_null(), None, pa.array(rng.normal(size=n).astype(np.float32)))
            if field.name == "mc_channel_number":
                array = pc.if_else(array.is_null(), None, pa.array(np.full(n, 410_000)))
            if field.name == "is_simulation":
                array = pc.if_else(array.is_null(), None, pa.array(rng.random(n) < 0.5))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def test_every_nullable_column_keeps_its_nulls(events: pa.Table) -> None:
    table = _with_nulls(events.slice(0, 700), 1)
    for field in EVENT_SCHEMA:
        assert table.column(field.name).null_count == 0 if not field.nullable else table.column(field.name).null_count
    decoded = codec.decode_chunk(codec.encode_chunk(table).data)
    decoded.validate(full=True)
    assert decoded.equals(table)
    assert decoded.to_pylist() == table.to_pylist()
    # A slice starts mid-way through the references: its presence columns start there too.
    part = table.slice(123, 301)
    assert codec.decode_chunk(codec.encode_chunk(part).data).to_pylist() == part.to_pylist()


def test_a_column_of_nulls_and_one_without_any(events: pa.Table) -> None:
    n = 50
    columns = {name: events.column(name).slice(0, n) for name in EVENT_SCHEMA.names}
    columns["mc_event_weight"] = pa.nulls(n, pa.float32())
    columns["is_testbeam"] = pa.nulls(n, pa.bool_())
    columns["provenance"] = pa.nulls(n, PROVENANCE_TYPE)
    columns["lumi_block"] = pa.array(np.arange(n))
    table = pa.Table.from_arrays([columns[name] for name in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)
    decoded = codec.decode_chunk(codec.encode_chunk(table).data)
    assert decoded.equals(table)
    assert decoded.column("mc_event_weight").null_count == decoded.column("provenance").null_count == n
    assert decoded.column("lumi_block").null_count == 0


def test_complete_events_carry_no_presence_columns(events: pa.Table) -> None:
    n = 100
    columns = {name: events.column(name).slice(0, n).combine_chunks() for name in EVENT_SCHEMA.names}
    for name in ("extended_level1_id", "mc_channel_number"):
        columns[name] = pa.array(np.arange(n))
    columns["mc_event_weight"] = pa.array(np.ones(n, dtype=np.float32))
    table = pa.Table.from_arrays([columns[name] for name in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)
    message = pb.ChunkBody.FromString(encode_body(table))
    absent = [f.name for f in pb.ChunkBody.DESCRIPTOR.fields if f.name.endswith("_absent")]
    assert len(absent) == 17
    assert all(len(getattr(message, name)) == 0 for name in absent)
    assert not message.extended_level1_id_present  # a version 1 column
    assert all(len(getattr(message, f"provenance_{name}").absent) == 0 for name in ("container", "clid"))


def test_chunks_are_version_2_or_3_and_manifests_version_1(events: pa.Table) -> None:
    """Sparse masks only: version 2, which readers before dense masks read; a dense mask column: version 3."""
    chunk = codec.encode_chunk(events.slice(0, 3)).data
    manifest = codec.encode_manifest(pb.Manifest(schema_version=1, task="t")).data
    assert struct.unpack_from("<4sH", chunk) == (b"EIC1", 2)
    assert struct.unpack_from("<4sH", manifest) == (b"EIM1", 1)
    dense = _dense_masks(events.slice(0, 3))
    assert struct.unpack_from("<4sH", codec.encode_chunk(dense).data) == (b"EIC1", 3)
    with pytest.raises(UnsupportedVersionError, match="reads 1, 2, 3"):
        codec.decode_chunk(_reheader(chunk, version=4))
    with pytest.raises(UnsupportedVersionError, match="version 2 is not supported"):
        codec.decode_manifest(_reheader(manifest, version=2))


def test_a_version_1_chunk_decodes_as_it_did() -> None:
    """A chunk written by the previous format (uint columns, extended_level1_id_present) gives the
    events the previous decoder gave, in the signed types, every value present but the L1 IDs it lacked."""
    data = (V1_DIR / "chunk-v1.eic").read_bytes()
    assert struct.unpack_from("<4sH", data) == (b"EIC1", 1)
    before = pq.read_table(V1_DIR / "chunk-v1-decoded.parquet")
    assert before.schema.field("event_number").type == pa.uint64()
    decoded = codec.decode_chunk(data)
    decoded.validate(full=True)
    assert decoded.schema.equals(EVENT_SCHEMA)
    assert decoded.to_pylist() == before.to_pylist()
    assert decoded.column("extended_level1_id").null_count == 3
    assert decoded.column("event_number")[-1].as_py() == 2**63 - 1
    for name in ("mc_event_weight", "is_simulation", "lumi_block", "smk", "provenance"):
        assert decoded.column(name).null_count == 0


def _mangled(events: pa.Table, mangle) -> bytes:  # type: ignore[no-untyped-def]
    message = pb.ChunkBody.FromString(encode_body(events.slice(0, 20)))
    mangle(message)
    return message.SerializeToString()


@pytest.mark.parametrize(
    ("mangle", "words"),
    [
        (lambda m: m.event_number.__setitem__(4, 2**63), "event_number: a value of 2\\^63 or more"),
        (lambda m: m.event_number.__setitem__(0, 2**64 - 1), "event_number: a value of 2\\^63 or more"),
        (lambda m: m.provenance_oid1.__setitem__(7, 2**63 + 5), "provenance_oid1: a value of 2\\^63"),
        (lambda m: m.provenance_oid2.__setitem__(0, 2**64 - 1), "provenance_oid2: a value of 2\\^63"),
        (lambda m: m.lumi_block_absent.extend([True] * 19), "lumi_block_absent has 19 values"),
        (lambda m: m.timestamp_absent.extend([False] * 21), "timestamp_absent has 21 values"),
        (lambda m: m.provenance_tech_absent.extend([True] * 3), "provenance_tech_absent has 3 values"),
        (lambda m: m.provenance_absent.extend([True] * 20), "an absent provenance with references"),
        (lambda m: m.input_guid.absent.extend([i == 3 for i in range(20)]), "input_guid: an absent value"),
        (lambda m: m.provenance_stream.absent.extend([True] * 60), "provenance_stream: an absent value"),
    ],
)
def test_presence_and_range_faults_are_corrupt(events: pa.Table, mangle, words: str) -> None:  # type: ignore[no-untyped-def]
    from eventindex.columns import Body, decode_body, validate_body

    raw = _mangled(events, mangle)
    for check in (validate_body, decode_body):
        with pytest.raises(CorruptObjectError, match=words):
            check(Body(raw))


def test_keys_refuse_event_numbers_of_2_63_or_more(events: pa.Table) -> None:
    from eventindex.columns import Body

    raw = _mangled(events, lambda m: m.event_number.__setitem__(2, 2**63))
    with pytest.raises(CorruptObjectError, match="2\\^63"):
        Body(raw).keys()
    runs, numbers = Body(_mangled(events, lambda m: None)).keys()
    assert runs.tolist() == events.column("run_number").to_pylist()[:20]
    assert numbers.dtype == np.int64 and numbers.tolist() == events.column("event_number").to_pylist()[:20]


def test_all_false_presence_flags_mean_every_value_present(events: pa.Table) -> None:
    from eventindex.columns import Body, decode_body

    raw = _mangled(events, lambda m: (m.smk_absent.extend([False] * 20), m.input_guid.absent.extend([False] * 20)))
    table = decode_body(Body(raw))
    assert table.column("smk").null_count == 0 and table.equals(events.slice(0, 20))


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("run_number", -1, "run_number: value -1 is outside 0..4294967295"),
        ("lumi_block", 2**32, "lumi_block: value 4294967296 is outside"),
        ("event_number", -5, "event_number: value -5 is outside 0..9223372036854775807"),
        ("run_number", None, "run_number: a null in a column that may not hold one"),
        ("input_guid", None, "input_guid: a null in a column that may not hold one"),
    ],
)
def test_the_encoder_refuses_what_no_reader_may_hand_over(events: pa.Table, column: str, value, words: str) -> None:  # type: ignore[no-untyped-def]
    table = events.slice(0, 10)
    values = table.column(column).to_pylist()
    values[6] = value
    table = table.set_column(
        EVENT_SCHEMA.get_field_index(column), EVENT_SCHEMA.field(column).with_nullable(True),
        pa.array(values, EVENT_SCHEMA.field(column).type),
    )  # fmt: skip
    with pytest.raises(ValueError, match=words):
        codec.encode_chunk(table)


# ---------------------------------------------------------------- dense masks (format version 3)


def _dense_masks(events: pa.Table, seed: int = 4, absent: float = 0.0) -> pa.Table:
    """The events with dense L1 masks (~20 % of the bits set, real ATLAS masks have ~110 of 512) and
    a dense HLT physics mask (~3 %), the other masks as they were; a share `absent` of them null."""
    rng = np.random.default_rng(seed)
    n = events.num_rows
    columns = {name: events.column(name) for name in EVENT_SCHEMA.names}
    for name, width, density in [("l1_tbp", 64, 0.2), ("l1_tap", 64, 0.15), ("l1_tav", 64, 0.1),
                                 ("hlt_passed_physics", 1024, 0.03)]:  # fmt: skip
        masks = np.packbits(rng.random((n, width * 8)) < density, axis=1, bitorder="little")
        nulls = rng.random(n) < absent
        columns[name] = pa.array([None if a else bytes(m) for m, a in zip(masks, nulls, strict=True)], pa.binary())
    return pa.Table.from_arrays([columns[name] for name in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)


def test_dense_masks_travel_as_bitmaps_and_sparse_ones_as_positions(events: pa.Table) -> None:
    table = _dense_masks(events.slice(0, 400), absent=0.1)
    message = pb.ChunkBody.FromString(encode_body(table))
    for name in ("l1_tbp", "l1_tap", "l1_tav", "hlt_passed_physics"):
        column = getattr(message, name)
        present = table.column(name).drop_null()
        assert column.bitmaps == b"".join(present.to_pylist()), name
        assert len(column.counts) == len(column.positions) == 0
        assert list(column.absent) == table.column(name).is_null().to_pylist()
    sparse = message.hlt_passed_through  # the synthetic events' own, a few bits in 8192
    assert not sparse.bitmaps and len(sparse.counts) == table.num_rows
    decoded = codec.decode_chunk(codec.encode_chunk(table).data)
    decoded.validate(full=True)
    assert decoded.equals(table)
    assert decoded.to_pylist() == table.to_pylist()


def test_dense_masks_of_several_chunks_and_slices_round_trip(events: pa.Table) -> None:
    table = _dense_masks(events.slice(0, 600), seed=5, absent=0.3)
    several = pa.concat_tables([table.slice(0, 250), table.slice(250, 1), table.slice(251)])
    assert several.column("l1_tbp").num_chunks == 3
    assert codec.decode_chunk(codec.encode_chunk(several).data).to_pylist() == table.to_pylist()
    part = table.slice(77, 300)
    assert codec.decode_chunk(codec.encode_chunk(part).data).to_pylist() == part.to_pylist()


def test_density_decides_the_form_per_column(events: pa.Table) -> None:
    """Dense when the set bits are more than 1 in 64 of the bits (their positions would outweigh
    half the bitmaps); a column whose masks are all null is sparse, whatever."""
    n = 64
    columns = {name: events.column(name).slice(0, n) for name in EVENT_SCHEMA.names}
    columns["l1_tbp"] = pa.array([bytes([1]) + bytes(63)] * n, pa.binary())  # 1 bit in 512: sparse
    columns["l1_tap"] = pa.array([bytes([0xFF, 0x01]) + bytes(62)] * n, pa.binary())  # 9 in 512: dense
    columns["l1_tav"] = pa.nulls(n, pa.binary())
    table = pa.Table.from_arrays([columns[name] for name in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)
    message = pb.ChunkBody.FromString(encode_body(table))
    assert not message.l1_tbp.bitmaps and list(message.l1_tbp.positions) == [0] * n
    assert message.l1_tap.bitmaps == (bytes([0xFF, 0x01]) + bytes(62)) * n
    assert not message.l1_tav.bitmaps and list(message.l1_tav.absent) == [True] * n
    assert codec.decode_chunk(codec.encode_chunk(table).data).equals(table)


def _dense_mangled(events: pa.Table, mangle) -> bytes:  # type: ignore[no-untyped-def]
    message = pb.ChunkBody.FromString(encode_body(_dense_masks(events.slice(0, 20), absent=0.2)))
    mangle(message)
    return message.SerializeToString()


@pytest.mark.parametrize(
    ("mangle", "words"),
    [
        (lambda m: setattr(m.l1_tbp, "bitmaps", m.l1_tbp.bitmaps[:-1]), "l1_tbp: .* bytes of bitmaps, .* masks of 64"),
        (lambda m: setattr(m.l1_tap, "bitmaps", m.l1_tap.bitmaps + bytes(64)), "l1_tap: .* bytes of bitmaps"),
        (lambda m: m.l1_tav.counts.extend([0] * 20), "l1_tav: both bitmaps and set-bit positions"),
        (lambda m: m.hlt_passed_physics.positions.append(3), "hlt_passed_physics: both bitmaps and set-bit"),
        (lambda m: m.l1_tbp.ClearField("absent"), "l1_tbp: .* bytes of bitmaps, 20 masks of 64 bytes expected"),
        (lambda m: setattr(m.hlt_passed_through, "bitmaps", bytes(1024 * 20)), "both bitmaps and set-bit positions"),
    ],
)
def test_dense_mask_faults_are_corrupt(events: pa.Table, mangle, words: str) -> None:  # type: ignore[no-untyped-def]
    raw = _dense_mangled(events, mangle)
    for check in (validate_body, decode_body):
        with pytest.raises(CorruptObjectError, match=words):
            check(Body(raw))


def test_dense_masks_in_a_version_2_chunk_are_corrupt(events: pa.Table) -> None:
    """A version 2 reader would see no bits in a dense column: a chunk claiming version 2 must not hold one."""
    chunk = codec.encode_chunk(_dense_masks(events.slice(0, 5))).data
    with pytest.raises(CorruptObjectError, match="l1_tbp: dense masks in a version 2 chunk"):
        codec.decode_chunk(_reheader(chunk, version=2))


def test_the_producer_never_writes_what_the_supersink_would_refuse_as_too_many_fields(
    events: pa.Table, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A string column of more distinct values than the field bound, or a job of more chunks than a manifest
    may list, is an input error naming the remedy (here with the bound lowered to 64)."""
    import eventindex.columns
    import producer.job
    from eventindex.errors import InputError
    from eventindex.store.local import LocalStore
    from producer.inputs.synthetic import SyntheticInput
    from producer.job import JobRunner, JobSpec
    from tests.helpers import Recorder

    monkeypatch.setattr(eventindex.columns, "MAX_RECORDS", 64)
    distinct = events.slice(0, 100).set_column(
        events.schema.get_field_index("input_guid"), "input_guid", pa.array([f"G{i:04d}" for i in range(100)])
    )
    with pytest.raises(InputError, match=r"input_guid holds 100 distinct values .* smaller --chunk-events"):
        codec.encode_chunk(distinct)
    monkeypatch.undo()
    monkeypatch.setattr(producer.job, "MAX_RECORDS", 64)
    spec = JobSpec(task="t", job="j", attempt=1, dataset="d", chunk_events=10)
    with pytest.raises(InputError, match=r"the job's 20 chunks make a manifest of more than 64 fields"):
        JobRunner(spec, LocalStore(tmp_path / "store"), Recorder()).run([SyntheticInput(200, 1)])
    assert not list((tmp_path / "store").rglob("manifest.eim")), "no manifest written"
