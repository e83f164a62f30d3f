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


def _sum(counts: np.ndarray) -> int:
    """The sum of uint32 counts (cheap when they are all zero)."""
    return int(np.add.reduce(counts, dtype=np.uint64)) if np.count_nonzero(counts) else 0


def _checked(values: np.ndarray, rows: int, name: str) -> np.ndarray:
    if len(values) != rows:
        raise CorruptObjectError(f"column {name} has {len(values)} values, the chunk has {rows} rows")
    return values


# Arrow's binary type has 32-bit offsets: one column holds at most this many bytes.
_MAX_BINARY_BYTES = 2**31 - 1
# Columns with no set bit share one read-only buffer of zeros, up to this size (grown on demand).
_SHARED_ZEROS_MAX = 64 * 1024 * 1024
_shared_zeros = pa.py_buffer(b"")


def _zeros(size: int) -> pa.Buffer:
    """`size` zero bytes, read-only: a slice of one shared buffer unless that would be too big."""
    global _shared_zeros
    if size > _SHARED_ZEROS_MAX:
        return pa.py_buffer(np.zeros(size, dtype=np.uint8))
    block = _shared_zeros
    if block.size < size:
        block = _shared_zeros = pa.py_buffer(bytes(min(max(size, 2 * block.size), _SHARED_ZEROS_MAX)))
    return block.slice(0, size)


def _set_bits(matrix: np.ndarray, byte_index: np.ndarray, bits: np.ndarray) -> None:
    """matrix[byte_index] |= bits, on a matrix of zeros, whatever the order and repeats of byte_index."""
    if len(byte_index) < 2:
        matrix[byte_index] = bits
        return
    step = byte_index[1:] - byte_index[:-1]
    smallest = int(step.min())
    if smallest < 0:  # out of order (the writer sorts each row's positions)
        np.bitwise_or.at(matrix, byte_index, bits)
        return
    matrix[byte_index] = bits  # one set bit per byte: done; several: each such byte got one of them
    if smallest == 0:  # element i shares its byte with element i + 1: write those bytes again, whole
        shared = np.flatnonzero(step == 0)
        where = byte_index[shared]
        pairs = bits[shared] | bits[shared + 1]
        first = np.ones(len(where), dtype=bool)  # the first pair of each byte (3+ bits make 2+ pairs)
        np.not_equal(where[1:], where[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        matrix[where[starts]] = np.bitwise_or.reduceat(pairs, starts)


def _decode_mask(column: Fields | None, rows: int, name: str, width_bytes: int, check_only: bool = False) -> pa.Array:
    """A MaskColumn -> `width_bytes` bitmaps per row, null where absent (only the checks if check_only).

    Each set bit becomes one (byte index, bit value) pair, and the pairs are scattered into a
    matrix of zeros; a column without set bits takes shared zeros instead.
    """
    if column is None:
        raise CorruptObjectError(f"column {name} is missing")
    width_bits = column.uint(_MASK["width_bits"])
    if width_bits != width_bytes * 8:
        raise CorruptObjectError(f"column {name} holds {width_bits}-bit masks, expected {width_bytes * 8}")
    counts = _checked(column.packed(_MASK["counts"], "<u4"), rows, name)
    positions = column.packed(_MASK["positions"], "<u4")
    total = _sum(counts)
    if total != len(positions):
        raise CorruptObjectError(f"column {name}: counts add up to {total}, {len(positions)} positions")
    if total and int(np.maximum.reduce(positions)) >= width_bits:
        raise CorruptObjectError(f"column {name}: a bit position outside 0..{width_bits - 1}")
    absent_raw = column.packed(_MASK["absent"], "|b1")
    valid: np.ndarray | None = None  # None: every row holds a mask
    n_valid = rows
    if len(absent_raw):
        absent = _checked(absent_raw, rows, name)
        if total and np.count_nonzero(counts[absent]):
            raise CorruptObjectError(f"column {name}: an absent mask with bits set")
        valid = ~absent
        n_valid = int(np.count_nonzero(valid))
        if n_valid == rows:
            valid = None
    size = n_valid * width_bytes
    if size > _MAX_BINARY_BYTES:
        raise CorruptObjectError(f"column {name}: {n_valid} masks of {width_bytes} bytes do not fit one column")
    if check_only:
        return pa.nulls(0, pa.binary())
    if valid is None:
        validity = None
        offsets = np.arange(0, size + 1, width_bytes, dtype=np.int32)
    else:
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
        offsets = np.zeros(rows + 1, dtype=np.int32)
        if n_valid:
            np.cumsum(valid, dtype=np.int32, out=offsets[1:])
            offsets *= width_bytes
    if total:
        # From Arrow's memory pool, which reuses freed pages: a fresh np.zeros of this size is an mmap
        # whose every page faults on first touch (2-5x the cost of clearing a reused block).
        data = pa.allocate_buffer(size)
        matrix = np.frombuffer(data, dtype=np.uint8)
        matrix.fill(0)
        row_start = np.arange(0, size, width_bytes, dtype=np.intp)  # intp: no conversion when indexing
        byte_index = np.repeat(row_start, counts if valid is None else counts[valid])
        byte_index += positions >> 3
        bits = positions.astype(np.uint8)  # the low byte; bit i % 8 of byte i // 8
        bits &= 7
        np.left_shift(np.uint8(1), bits, out=bits)
        _set_bits(matrix, byte_index, bits)
    else:
        data = _zeros(size)
    return pa.Array.from_buffers(pa.binary(), rows, [validity, pa.py_buffer(offsets), data], null_count=rows - n_valid)


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
    encoded = [value.encode() for value in values]
    width = len(encoded[0]) if encoded else 0
    if rows and width and rows * width <= _MAX_BINARY_BYTES and all(len(value) == width for value in encoded):
        # All values of one length (file GUIDs, stream names): gather fixed-size records.
        if len(encoded) == 1:
            data: bytes | np.ndarray = encoded[0] * rows
        else:
            table = np.frombuffer(b"".join(encoded), dtype=np.dtype((np.void, width)))
            data = table.take(index.astype(np.intp)).view(np.uint8)
        offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
        # An all-valid bitmap, as the cast below makes (the loader sizes row groups by table.nbytes);
        # null_count=0 would drop it.
        validity = pa.py_buffer(np.full((rows + 7) // 8, 0xFF, dtype=np.uint8))
        return pa.Array.from_buffers(pa.string(), rows, [validity, pa.py_buffer(offsets), pa.py_buffer(data)])
    dictionary = pa.array(values, type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), dictionary).cast(pa.string())


def _numbers(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    """A fixed-width numeric column without nulls, sharing the values' memory."""
    return pa.Array.from_buffers(typ, len(values), [None, pa.py_buffer(values)], null_count=0)


def _bitmap(flags: np.ndarray) -> pa.Buffer:
    """Booleans -> an Arrow bitmap (bit i of the buffer is flags[i]; any non-zero byte is true)."""
    return pa.py_buffer(np.packbits(flags, bitorder="little"))


def decode_body(body: Body) -> pa.Table:
    """A parsed columnar protobuf body -> Arrow events (EVENT_SCHEMA); raises CorruptObjectError."""
    rows = body.rows
    fields = body.fields
    arrays: dict[str, pa.Array] = {}
    for name, typ, dtype in NUMERIC_COLUMNS + TAIL_NUMERIC_COLUMNS:
        arrays[name] = _numbers(body.column(name, dtype), typ)
    present = body.column("extended_level1_id_present", "bool")
    l1id = body.column("extended_level1_id", "uint32")
    n_present = int(np.count_nonzero(present))
    validity = None if n_present == rows else _bitmap(present)
    arrays["extended_level1_id"] = pa.Array.from_buffers(
        pa.uint32(), rows, [validity, pa.py_buffer(l1id)], null_count=rows - n_present
    )
    for name in FLAG_COLUMNS:
        arrays[name] = pa.Array.from_buffers(pa.bool_(), rows, [None, _bitmap(body.column(name, "bool"))], null_count=0)
    for name, width in MASK_COLUMNS:
        arrays[name] = _decode_mask(fields.message(_BODY[name], name), rows, name, width)
    counts = body.column("provenance_count", "uint32")
    n_refs = _sum(counts)
    children = [
        _decode_strings(fields.message(_BODY[f"provenance_{f}"], f"provenance_{f}"), n_refs, f"provenance_{f}")
        for f in PROVENANCE_STRINGS
    ]
    children += [
        _numbers(body.column(f"provenance_{f}", dtype, n_refs), pa.from_numpy_dtype(np.dtype(dtype)))
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
