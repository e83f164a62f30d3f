"""The fast paths of chunk-body decoding give what a plain row-by-row reading of the body gives."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from eventindex import codec
from eventindex.columns import (
    EVENT_SCHEMA,
    MASK_COLUMNS,
    Body,
    _decode_mask,
    _decode_strings,
    decode_body,
    encode_body,
    validate_body,
)
from eventindex.errors import CorruptObjectError
from eventindex.schema import eventindex_pb2 as pb
from eventindex.wire import Fields, Writer

WIDTHS = dict(MASK_COLUMNS)
MASKS = [name for name, _ in MASK_COLUMNS]


def _reference_masks(column: pb.MaskColumn, rows: int, width_bytes: int) -> list[bytes | None]:
    """The masks a MaskColumn describes, row by row: bit i of a mask is bit i % 8 of byte i // 8."""
    absent = list(column.absent) or [False] * rows
    out: list[bytes | None] = []
    at = 0
    if column.bitmaps:  # dense: the present rows' bitmaps back to back
        for row in range(rows):
            out.append(None if absent[row] else column.bitmaps[at : at + width_bytes])
            at += 0 if absent[row] else width_bytes
        assert at == len(column.bitmaps)
        return out
    for row in range(rows):
        count = column.counts[row]
        if absent[row]:
            out.append(None)
        else:
            mask = bytearray(width_bytes)
            for position in column.positions[at : at + count]:
                mask[position // 8] |= 1 << (position % 8)
            out.append(bytes(mask))
        at += count
    return out


def _message(events: pa.Table) -> pb.ChunkBody:
    return pb.ChunkBody.FromString(encode_body(events))


def _check_masks(message: pb.ChunkBody) -> pa.Table:
    """decode_body and validate_body accept the body; every mask column is what the row-by-row reading gives."""
    raw = message.SerializeToString()
    validate_body(Body(raw))
    table = decode_body(Body(raw))
    table.validate(full=True)
    for name in MASKS:
        expected = _reference_masks(getattr(message, name), message.rows, WIDTHS[name])
        assert table.column(name).to_pylist() == expected, name
    return table


def _set_mask(column: pb.MaskColumn, rows: list[list[int] | None]) -> None:
    """Rewrite a mask column from per-row positions (None: absent), in the order given."""
    column.ClearField("counts")
    column.ClearField("positions")
    column.ClearField("absent")
    column.counts.extend(len(row or []) for row in rows)
    for row in rows:
        column.positions.extend(row or [])
    if any(row is None for row in rows):
        column.absent.extend(row is None for row in rows)


def test_all_absent_mask_column_is_all_null(events: pa.Table) -> None:
    message = _message(events.slice(0, 300))
    _set_mask(message.l1_tbp, [None] * 300)
    table = _check_masks(message)
    assert table.column("l1_tbp").null_count == 300
    assert table.column("l2_passed_physics").null_count == 300  # all absent in the synthetic events too


def test_masks_with_no_set_bits_are_zero_bitmaps(events: pa.Table) -> None:
    message = _message(events.slice(0, 200))
    _set_mask(message.l1_tap, [[] for _ in range(200)])
    _set_mask(message.hlt_passed_through, [[] if i % 3 else None for i in range(200)])
    table = _check_masks(message)
    assert table.column("l1_tap").to_pylist() == [bytes(64)] * 200
    assert table.column("hlt_resurrected").to_pylist() == [bytes(1024)] * 200
    # Zero bitmaps may share memory between columns and chunks: a second decode is unaffected by the first.
    again = decode_body(Body(message.SerializeToString()))
    assert again.equals(table)


def test_several_bits_in_one_byte(events: pa.Table) -> None:
    rng = random.Random(1)
    rows: list[list[int] | None] = [
        sorted(rng.sample(range(512), rng.choice([0, 1, 2, 8, 40, 300, 512]))) for _ in range(100)
    ]
    rows[0] = [0, 1, 2, 3, 4, 5, 6, 7]  # a whole byte
    rows[1] = [8, 9, 16, 17, 18, 511]  # runs of 2 and 3, the last bit
    rows[2] = list(range(512))  # every bit
    message = _message(events.slice(0, 100))
    _set_mask(message.l1_tav, rows)
    hlt_rows: list[list[int] | None] = [sorted(rng.sample(range(8192), rng.choice([0, 3, 64]))) for _ in range(100)]
    hlt_rows[5] = None
    _set_mask(message.hlt_passed_physics, hlt_rows)
    table = _check_masks(message)
    assert table.column("l1_tav")[2].as_py() == b"\xff" * 64
    assert table.column("l1_tav")[0].as_py() == b"\xff" + bytes(63)


def test_positions_out_of_order_give_the_same_masks(events: pa.Table) -> None:
    message = _message(events.slice(0, 400))
    sorted_table = decode_body(Body(message.SerializeToString()))
    rng = random.Random(2)
    for name in ("l1_tbp", "hlt_passed_physics"):
        column = getattr(message, name)
        rows: list[list[int] | None] = []
        at = 0
        for count in column.counts:
            row = list(column.positions[at : at + count])
            rng.shuffle(row)
            rows.append(row)
            at += count
        _set_mask(column, rows)
    assert _check_masks(message).equals(sorted_table)


def test_a_position_listed_twice_sets_its_bit() -> None:
    message = pb.ChunkBody(rows=2, l1_tbp=pb.MaskColumn(width_bits=512))
    _set_mask(message.l1_tbp, [[3, 3, 9], [9, 9, 3]])  # in order, and not
    column = _decode_mask(Fields(message.l1_tbp.SerializeToString(), "l1_tbp"), 2, "l1_tbp", 64)
    assert column.to_pylist() == [b"\x08\x02" + bytes(62)] * 2


def test_masks_of_random_density_and_absence(events: pa.Table) -> None:
    rng = np.random.default_rng(3)
    n = 500
    columns = {name: events.column(name) for name in EVENT_SCHEMA.names}
    for name, width in MASK_COLUMNS:
        bits = rng.random((n, width * 8)) < rng.choice([0.0, 0.002, 0.3, 1.0])
        masks = np.packbits(bits, axis=1, bitorder="little")
        absent = rng.random(n) < rng.choice([0.0, 0.5])
        columns[name] = pa.array([None if a else bytes(m) for m, a in zip(masks, absent, strict=True)], pa.binary())
    table = pa.Table.from_arrays([columns[name].slice(0, n) for name in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)
    decoded = _check_masks(_message(table))
    assert decoded.equals(table)


def test_a_big_chunk_round_trips() -> None:
    """70,000 rows of 1,024-byte masks: byte offsets far beyond 16 bits; bits in the very last byte."""
    rows, width = 70_000, 1024
    counts = np.zeros(rows, dtype=np.uint32)
    counts[[0, 33_333, rows - 1]] = [1, 2, 3]
    positions = np.array([0, 5, 4000, 8189, 8190, 8191], dtype=np.uint32)
    out = Writer()
    out.uint(1, width * 8)
    out.packed(2, counts, "<u4")
    out.packed(3, positions, "<u4")
    column = _decode_mask(Fields(out.getvalue(), "hlt_passed_physics"), rows, "hlt_passed_physics", width)
    assert len(column) == rows and column.null_count == 0
    data = np.frombuffer(column.buffers()[2], dtype=np.uint8)
    assert len(data) == rows * width
    assert np.flatnonzero(data).tolist() == [0, 33_333 * width, 33_333 * width + 500, rows * width - 1]
    assert data[-1] == 0b1110_0000 and data[33_333 * width] == 0b10_0000 and data[0] == 1


def test_masks_too_big_for_one_arrow_column_are_refused() -> None:
    rows = 2**31 // 1024 + 1
    out = Writer()
    out.uint(1, 8192)
    out.packed(2, np.zeros(rows, dtype=np.uint32), "<u4")
    fields = Fields(out.getvalue(), "hlt_passed_physics")
    for check_only in (True, False):
        with pytest.raises(CorruptObjectError, match="do not fit"):
            _decode_mask(fields, rows, "hlt_passed_physics", 1024, check_only)


@pytest.mark.parametrize(
    ("mangle", "words"),
    [
        (lambda m: m.l1_tbp.absent.extend([count > 0 for count in m.l1_tbp.counts]), "an absent mask with bits set"),
        (lambda m: m.l2_passed_physics.counts.__setitem__(3, 1), "counts add up to 1, 0 positions"),
        (lambda m: m.hlt_passed_physics.positions.__setitem__(0, 8192), "outside 0..8191"),
        (lambda m: m.l1_tap.counts.append(0), "l1_tap has 51 values"),
        (lambda m: m.l2_resurrected.absent.append(True), "l2_resurrected has 51 values"),
        (lambda m: m.ClearField("l1_tav"), "column l1_tav is missing"),
        (lambda m: m.input_guid.index.__setitem__(0, 1), "dictionary index out of range"),
    ],
)
def test_corrupt_masks_and_strings_are_refused(events: pa.Table, mangle, words: str) -> None:  # type: ignore[no-untyped-def]
    message = _message(events.slice(0, 50))
    mangle(message)
    raw = message.SerializeToString()
    for check in (validate_body, decode_body):
        with pytest.raises(CorruptObjectError, match=words):
            check(Body(raw))


@pytest.mark.parametrize(
    "values",
    [
        ["F0E1D2C3-0000-0000-0000-000000000001", "F0E1D2C3-0000-0000-0000-000000000002"],  # one length
        ["StreamAOD"],  # one value
        ["DataHeader", "00000000", ""],  # lengths differ
        ["", ""],  # only empty strings
        ["é", "ü", "€"],  # one length in characters, not in bytes
        ["日本", "ab"],
    ],
)
def test_string_columns(values: list[str]) -> None:
    rng = np.random.default_rng(4)
    index = rng.integers(0, len(values), 1000).astype(np.uint32)
    out = Writer()
    for value in values:
        out.bytes_field(1, value.encode())
    out.packed(2, index, "<u4")
    column = _decode_strings(Fields(out.getvalue(), "s"), 1000, "s")
    column.validate(full=True)
    assert column.type == pa.string()
    assert column.to_pylist() == [values[i] for i in index]
    # As many bytes as the dictionary cast gives (the loader sizes row groups by table.nbytes).
    cast = pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), pa.array(values)).cast(pa.string())
    assert column.nbytes == cast.nbytes


def test_decoded_tables_are_sized_as_before(events: pa.Table) -> None:
    """Each column takes as many bytes as an Arrow array built from Python values (no hidden sharing)."""
    table = codec.decode_chunk(codec.encode_chunk(events).data)
    for name in EVENT_SCHEMA.names:
        rebuilt = pa.array(table.column(name).to_pylist(), EVENT_SCHEMA.field(name).type)
        if name in ("input_guid", "provenance"):
            continue  # built from a dictionary: validity bitmaps even without nulls
        assert table.column(name).nbytes == rebuilt.nbytes, name


def test_split_mask_message_merges(events: pa.Table) -> None:
    """Two records of one embedded mask message: proto3 merges them (repeated fields concatenate)."""
    message = _message(events.slice(0, 20))
    whole = decode_body(Body(message.SerializeToString()))
    column = message.l1_tbp
    first, second = pb.MaskColumn(width_bits=512), pb.MaskColumn()
    first.counts.extend(column.counts[:10])
    second.counts.extend(column.counts[10:])
    split = sum(column.counts[:10])
    first.positions.extend(column.positions[:split])
    second.positions.extend(column.positions[split:])
    message.ClearField("l1_tbp")
    raw = message.SerializeToString()
    raw += pb.ChunkBody(l1_tbp=first).SerializeToString() + pb.ChunkBody(l1_tbp=second).SerializeToString()
    assert decode_body(Body(raw)).equals(whole)
