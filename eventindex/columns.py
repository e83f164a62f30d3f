"""The event columns: the Arrow schema of the warehouse and the columnar protobuf chunk body.

Events travel as Arrow tables inside each process; between processes they travel as a
`ChunkBody` (one packed protobuf field per column). Conversions in both directions work
column by column on buffers, never event by event, which is what makes the supersink fast.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from eventindex.errors import CorruptObjectError
from eventindex.schema import eventindex_pb2 as pb
from eventindex.wire import Fields, Writer

L1_MASK_BYTES = 512 // 8
HLT_MASK_BYTES = 8192 // 8

PROVENANCE_TYPE = pa.list_(
    pa.struct(
        [
            pa.field("stream", pa.string()),
            pa.field("guid", pa.string()),
            pa.field("container", pa.string()),
            pa.field("clid", pa.string()),
            pa.field("tech", pa.uint32()),
            pa.field("oid1", pa.uint64()),
            pa.field("oid2", pa.uint64()),
        ]
    )
)

# Numeric columns: (name, arrow type, numpy dtype).
NUMERIC_COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("run_number", pa.uint32(), "uint32"),
    ("event_number", pa.uint64(), "uint64"),
    ("lumi_block", pa.uint32(), "uint32"),
    ("bcid", pa.uint32(), "uint32"),
    ("timestamp", pa.uint32(), "uint32"),
    ("timestamp_ns_offset", pa.uint32(), "uint32"),
)
FLAG_COLUMNS = ("is_simulation", "is_calibration", "is_testbeam")
TAIL_NUMERIC_COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("mc_channel_number", pa.uint32(), "uint32"),
    ("mc_event_weight", pa.float32(), "float32"),
    ("smk", pa.uint32(), "uint32"),
    ("hlt_psk", pa.uint32(), "uint32"),
    ("l1_psk", pa.uint32(), "uint32"),
)
MASK_COLUMNS: tuple[tuple[str, int], ...] = (
    ("l1_tbp", L1_MASK_BYTES),
    ("l1_tap", L1_MASK_BYTES),
    ("l1_tav", L1_MASK_BYTES),
    ("l2_passed_physics", HLT_MASK_BYTES),
    ("l2_passed_through", HLT_MASK_BYTES),
    ("l2_resurrected", HLT_MASK_BYTES),
    ("hlt_passed_physics", HLT_MASK_BYTES),
    ("hlt_passed_through", HLT_MASK_BYTES),
    ("hlt_resurrected", HLT_MASK_BYTES),
)
PROVENANCE_STRINGS = ("stream", "guid", "container", "clid")
PROVENANCE_NUMBERS: tuple[tuple[str, str], ...] = (("tech", "uint32"), ("oid1", "uint64"), ("oid2", "uint64"))

# The columns a chunk carries, in warehouse order. The loader adds task/job/attempt.
EVENT_SCHEMA = pa.schema(
    [pa.field(name, typ, nullable=False) for name, typ, _ in NUMERIC_COLUMNS]
    + [pa.field("extended_level1_id", pa.uint32())]
    + [pa.field(name, pa.bool_(), nullable=False) for name in FLAG_COLUMNS]
    + [pa.field(name, typ, nullable=False) for name, typ, _ in TAIL_NUMERIC_COLUMNS]
    + [pa.field(name, pa.binary()) for name, _ in MASK_COLUMNS]
    + [pa.field("provenance", PROVENANCE_TYPE), pa.field("input_guid", pa.string(), nullable=False)]
)

IDENTITY_FIELDS = [
    pa.field("task", pa.string(), nullable=False),
    pa.field("job", pa.string(), nullable=False),
    pa.field("attempt", pa.uint32(), nullable=False),
]
WAREHOUSE_SCHEMA = pa.schema(list(EVENT_SCHEMA) + IDENTITY_FIELDS)


# ---------------------------------------------------------------- Arrow -> ChunkBody


def _np(array: pa.ChunkedArray | pa.Array, dtype: str) -> np.ndarray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=dtype)


# For each byte value: how many bits are set, and where its list of set bits starts in _BIT_LIST.
_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.int64)
_BIT_START = np.concatenate([[0], np.cumsum(_POPCOUNT)[:-1]])
_BIT_LIST = np.array([b for v in range(256) for b in range(8) if v >> b & 1], dtype=np.int64)

# Field numbers come from the generated schema, the single source of the wire contract.
_BODY = {f.name: f.number for f in pb.ChunkBody.DESCRIPTOR.fields}
_MASK = {f.name: f.number for f in pb.MaskColumn.DESCRIPTOR.fields}
_STRINGS = {f.name: f.number for f in pb.StringColumn.DESCRIPTOR.fields}
_WIRE_DTYPES = {"uint32": "<u4", "uint64": "<u8", "float32": "<f4", "bool": "|b1"}


def _encode_mask(array: pa.Array, width_bytes: int, name: str) -> Writer:
    """Bitmaps (binary, `width_bytes` each, or null) -> set-bit positions per row."""
    array = array.cast(pa.binary())
    rows = len(array)
    out = Writer()
    out.uint(_MASK["width_bits"], width_bytes * 8)
    valid = _np(array.is_valid(), "bool")
    n_valid = int(valid.sum())
    counts = np.zeros(rows, dtype=np.uint32)
    positions = np.empty(0, dtype=np.uint32)
    if n_valid:
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + rows + 1]
        lengths = np.diff(offsets)[valid]
        if np.any(lengths != width_bytes):
            bad = int(lengths[lengths != width_bytes][0])
            raise ValueError(f"column {name}: a mask of {bad} bytes, expected {width_bytes}")
        data = array.buffers()[2]
        assert data is not None
        start = int(offsets[0])
        # Masks are sparse: scan 64-bit words, then the bytes of the non-zero words, then expand
        # each non-zero byte into its set bits through a 256-entry table.
        words = np.frombuffer(data, dtype=np.uint8, count=n_valid * width_bytes, offset=start).view("<u8")
        hit_words = np.flatnonzero(words)
        word_bytes = words[hit_words].view(np.uint8)
        nz = np.flatnonzero(word_bytes)
        values = word_bytes[nz]
        byte_index = hit_words[nz // 8] * 8 + nz % 8  # in the whole column
        per_byte = _POPCOUNT[values]
        total = int(per_byte.sum())
        first = np.repeat(np.cumsum(per_byte) - per_byte, per_byte)
        bit = _BIT_LIST[np.repeat(_BIT_START[values], per_byte) + np.arange(total) - first]
        row = np.repeat(byte_index // width_bytes, per_byte)
        counts[np.nonzero(valid)[0]] = np.bincount(row, minlength=n_valid)
        positions = (np.repeat(byte_index % width_bytes, per_byte) * 8 + bit).astype(np.uint32)
    out.packed(_MASK["counts"], counts, "<u4")
    out.packed(_MASK["positions"], positions, "<u4")
    if n_valid < rows:
        out.packed(_MASK["absent"], ~valid, "|b1")
    return out


def _encode_strings(array: pa.Array) -> Writer:
    encoded = array.dictionary_encode()
    out = Writer()
    for value in encoded.dictionary.to_pylist():
        out.bytes_field(_STRINGS["values"], value.encode())
    out.packed(_STRINGS["index"], _np(encoded.indices, "uint32"), "<u4")
    return out


def encode_body(table: pa.Table) -> bytes:
    """Arrow events (EVENT_SCHEMA) -> the serialised columnar protobuf body (a ChunkBody)."""
    table = table.select(EVENT_SCHEMA.names)  # columns are combined one by one, as they are needed
    out = Writer()
    out.uint(_BODY["rows"], table.num_rows)
    for name, _, dtype in NUMERIC_COLUMNS + TAIL_NUMERIC_COLUMNS:
        out.packed(_BODY[name], _np(table.column(name), dtype), _WIRE_DTYPES[dtype])
    for name in FLAG_COLUMNS:
        out.packed(_BODY[name], _np(table.column(name), "bool"), "|b1")
    l1id = table.column("extended_level1_id").combine_chunks()
    out.packed(_BODY["extended_level1_id"], _np(l1id.fill_null(0), "uint32"), "<u4")
    out.packed(_BODY["extended_level1_id_present"], _np(l1id.is_valid(), "bool"), "|b1")
    for name, width in MASK_COLUMNS:
        out.message(_BODY[name], _encode_mask(table.column(name).combine_chunks(), width, name))
    prov = table.column("provenance").combine_chunks()
    out.packed(_BODY["provenance_count"], _np(prov.value_lengths().fill_null(0), "uint32"), "<u4")
    structs = prov.flatten()
    for field in PROVENANCE_STRINGS:
        out.message(_BODY[f"provenance_{field}"], _encode_strings(structs.field(field)))
    for field, dtype in PROVENANCE_NUMBERS:
        out.packed(_BODY[f"provenance_{field}"], _np(structs.field(field), dtype), _WIRE_DTYPES[dtype])
    out.message(_BODY["input_guid"], _encode_strings(table.column("input_guid").combine_chunks()))
    return out.getvalue()


# ---------------------------------------------------------------- ChunkBody -> Arrow


class Body:
    """A parsed chunk body: its row count and raw columns, not yet turned into Arrow."""

    def __init__(self, raw: bytes, what: str = "chunk body") -> None:
        self.fields = Fields(raw, what)
        self.rows = self.fields.uint(_BODY["rows"])

    def column(self, name: str, dtype: str, rows: int | None = None) -> np.ndarray:
        """A numeric column, checked to hold `rows` values (the body's rows by default)."""
        values = self.fields.packed(_BODY[name], _WIRE_DTYPES[dtype])
        expected = self.rows if rows is None else rows
        if len(values) != expected:
            raise CorruptObjectError(f"column {name} has {len(values)} values, the chunk has {expected} rows")
        return values

    def keys(self) -> tuple[np.ndarray, np.ndarray]:
        """The (run, event) columns."""
        return self.column("run_number", "uint32"), self.column("event_number", "uint64")


def _checked(values: np.ndarray, rows: int, name: str) -> np.ndarray:
    if len(values) != rows:
        raise CorruptObjectError(f"column {name} has {len(values)} values, the chunk has {rows} rows")
    return values


def _decode_mask(column: Fields | None, rows: int, name: str, width_bytes: int, check_only: bool = False) -> pa.Array:
    if column is None:
        raise CorruptObjectError(f"column {name} is missing")
    width_bits = column.uint(_MASK["width_bits"])
    if width_bits != width_bytes * 8:
        raise CorruptObjectError(f"column {name} holds {width_bits}-bit masks, expected {width_bytes * 8}")
    counts = _checked(column.packed(_MASK["counts"], "<u4"), rows, name).astype(np.int64)
    positions = column.packed(_MASK["positions"], "<u4").astype(np.int64)
    if int(counts.sum()) != len(positions):
        raise CorruptObjectError(f"column {name}: counts add up to {int(counts.sum())}, {len(positions)} positions")
    if len(positions) and positions.max() >= width_bits:
        raise CorruptObjectError(f"column {name}: a bit position outside 0..{width_bits - 1}")
    absent_raw = column.packed(_MASK["absent"], "|b1")
    absent = _checked(absent_raw, rows, name) if len(absent_raw) else np.zeros(rows, dtype=bool)
    valid = ~absent
    if np.any(counts[absent]):
        raise CorruptObjectError(f"column {name}: an absent mask with bits set")
    if check_only:
        return pa.nulls(0, pa.binary())
    n_valid = int(valid.sum())
    matrix = np.zeros(n_valid * width_bytes, dtype=np.uint8)
    if len(positions):
        valid_index = np.cumsum(valid) - 1
        row_of = valid_index[np.repeat(np.arange(rows), counts)]
        byte_index = row_of * width_bytes + positions // 8
        bits = (1 << (positions % 8)).astype(np.uint8)
        step = byte_index[1:] - byte_index[:-1]
        if np.all(step > 0):  # one set bit per byte: a plain scatter
            matrix[byte_index] = bits
        else:  # several bits in one byte: they are distinct, so their sum is their OR
            if np.any(step < 0):  # positions out of order (the writer sorts them): sort first
                order = np.argsort(byte_index, kind="stable")
                byte_index, bits = byte_index[order], bits[order]
            starts = np.flatnonzero(np.r_[True, byte_index[1:] != byte_index[:-1]])
            matrix[byte_index[starts]] = np.add.reduceat(bits, starts).astype(np.uint8)
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(np.where(valid, width_bytes, 0), out=offsets[1:])
    validity = None if n_valid == rows else pa.array(valid).buffers()[1]
    return pa.Array.from_buffers(
        pa.binary(), rows, [validity, pa.py_buffer(offsets), pa.py_buffer(matrix)], null_count=rows - n_valid
    )


def _decode_strings(column: Fields | None, rows: int, name: str, check_only: bool = False) -> pa.Array:
    if column is None:
        if rows:
            raise CorruptObjectError(f"column {name} is missing")
        return pa.array([], pa.string())
    index = _checked(column.packed(_STRINGS["index"], "<u4"), rows, name)
    values = column.strings(_STRINGS["values"])
    if rows and int(index.max()) >= len(values):
        raise CorruptObjectError(f"column {name}: dictionary index out of range")
    if check_only:
        return pa.nulls(0, pa.string())
    dictionary = pa.array(values, type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), dictionary).cast(pa.string())


def decode_body(body: Body) -> pa.Table:
    """A parsed columnar protobuf body -> Arrow events (EVENT_SCHEMA); raises CorruptObjectError."""
    rows = body.rows
    fields = body.fields
    arrays: dict[str, pa.Array] = {}
    for name, typ, dtype in NUMERIC_COLUMNS + TAIL_NUMERIC_COLUMNS:
        arrays[name] = pa.array(body.column(name, dtype), typ)
    present = body.column("extended_level1_id_present", "bool")
    arrays["extended_level1_id"] = pa.array(body.column("extended_level1_id", "uint32"), pa.uint32(), mask=~present)
    for name in FLAG_COLUMNS:
        arrays[name] = pa.array(body.column(name, "bool"), pa.bool_())
    for name, width in MASK_COLUMNS:
        arrays[name] = _decode_mask(fields.message(_BODY[name], name), rows, name, width)
    counts = body.column("provenance_count", "uint32").astype(np.int64)
    n_refs = int(counts.sum())
    children = [
        _decode_strings(fields.message(_BODY[f"provenance_{f}"], f"provenance_{f}"), n_refs, f"provenance_{f}")
        for f in PROVENANCE_STRINGS
    ]
    children += [
        pa.array(body.column(f"provenance_{f}", dtype, n_refs), pa.from_numpy_dtype(np.dtype(dtype)))
        for f, dtype in PROVENANCE_NUMBERS
    ]
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    structs = pa.StructArray.from_arrays(children, fields=list(PROVENANCE_TYPE.value_type))
    arrays["provenance"] = pa.ListArray.from_arrays(pa.array(offsets), structs, type=PROVENANCE_TYPE)
    arrays["input_guid"] = _decode_strings(fields.message(_BODY["input_guid"], "input_guid"), rows, "input_guid")
    return pa.Table.from_arrays([arrays[name] for name in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)


def validate_body(body: Body) -> None:
    """Every check decode_body makes, without building the columns: CorruptObjectError if any fails."""
    for name, _, dtype in NUMERIC_COLUMNS + TAIL_NUMERIC_COLUMNS:
        body.column(name, dtype)
    for name in ("extended_level1_id_present", *FLAG_COLUMNS):
        body.column(name, "bool")
    body.column("extended_level1_id", "uint32")
    for name, width in MASK_COLUMNS:
        _decode_mask(body.fields.message(_BODY[name], name), body.rows, name, width, check_only=True)
    n_refs = int(body.column("provenance_count", "uint32").astype(np.int64).sum())
    for f in PROVENANCE_STRINGS:
        _decode_strings(
            body.fields.message(_BODY[f"provenance_{f}"], f"provenance_{f}"), n_refs, f"provenance_{f}", True
        )
    for f, dtype in PROVENANCE_NUMBERS:
        body.column(f"provenance_{f}", dtype, n_refs)
    _decode_strings(body.fields.message(_BODY["input_guid"], "input_guid"), body.rows, "input_guid", True)


def event_keys(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The (run, event) columns as numpy arrays."""
    return _np(table.column("run_number"), "uint32"), _np(table.column("event_number"), "uint64")
