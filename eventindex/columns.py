"""The event columns: the Arrow schema of the warehouse and the columnar protobuf chunk body.

Events travel as Arrow tables inside each process; between processes they travel as a
`ChunkBody` (one packed field per column). Conversions in both directions work
column by column on buffers, never event by event, which is what makes the supersink fast.

Types are signed only, as every engine that reads the warehouse maps them natively (Hive, Trino,
Iceberg and Phoenix have no unsigned integers): the unsigned 32-bit ATLAS fields are int64, and
so is `event_number`, whose values stay below 2^63 (the producer refuses larger ones). The wire
keeps the unsigned widths of the ATLAS fields; decoding widens them.

A value the input did not carry is null, never 0 or false: every column may be null except
run_number, event_number and input_guid (and the task, job and attempt the loader adds). On the
wire, each nullable column has an `X_absent` column, empty when every value is present
(proto/eventindex/v1/eventindex.proto, chunk format version 2).

A mask column travels either as the set bits of each row (sparse) or as the bitmaps themselves
(dense, chunk format version 3), whichever its density makes cheaper: real ATLAS masks are dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from eventindex.errors import CorruptObjectError, InputError
from eventindex.schema import eventindex_pb2 as pb
from eventindex.wire import MAX_RECORDS, Fields, Writer

#: The chunk format versions: 2 added the `*_absent` columns, 3 dense mask columns. A chunk is
#: written as version 3 only when it holds a dense mask column (a version 2 reader would see no
#: bits there), else as version 2, which every reader since 2 reads. All three are read.
FORMAT_VERSION = 3
SPARSE_FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2, 3)

L1_MASK_BYTES = 512 // 8
HLT_MASK_BYTES = 8192 // 8
UINT32_MAX = 2**32 - 1
INT64_MAX = 2**63 - 1
_WIRE_LIMITS = {"<u4": UINT32_MAX, "<u8": INT64_MAX}


@dataclass(frozen=True)
class Scalar:
    """A column of one fixed-width value per row (or per provenance reference)."""

    name: str
    type: pa.DataType
    #: numpy dtype of the packed wire column: "<u4" (fixed32), "<u8" (fixed64), "<f4" (float), "|b1" (bool).
    wire: str
    nullable: bool = True

    @property
    def limit(self) -> int | None:
        """The largest value of an integer column (the smallest is 0); None for the others."""
        return _WIRE_LIMITS.get(self.wire)

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable)


_INT = pa.int64()
_BOOL = pa.bool_()
#: The scalar columns, in warehouse order.
SCALAR_COLUMNS: tuple[Scalar, ...] = (
    Scalar("run_number", _INT, "<u4", nullable=False),
    Scalar("event_number", _INT, "<u8", nullable=False),
    Scalar("lumi_block", _INT, "<u4"),
    Scalar("bcid", _INT, "<u4"),
    Scalar("timestamp", _INT, "<u4"),
    Scalar("timestamp_ns_offset", _INT, "<u4"),
    Scalar("extended_level1_id", _INT, "<u4"),
    Scalar("is_simulation", _BOOL, "|b1"),
    Scalar("is_calibration", _BOOL, "|b1"),
    Scalar("is_testbeam", _BOOL, "|b1"),
    Scalar("mc_channel_number", _INT, "<u4"),
    Scalar("mc_event_weight", pa.float32(), "<f4"),
    Scalar("smk", _INT, "<u4"),
    Scalar("hlt_psk", _INT, "<u4"),
    Scalar("l1_psk", _INT, "<u4"),
)
FLAG_COLUMNS = tuple(spec.name for spec in SCALAR_COLUMNS if spec.wire == "|b1")
#: The largest value of each integer column (the smallest is 0), for readers' range checks.
INTEGER_LIMITS = {spec.name: spec.limit for spec in SCALAR_COLUMNS if spec.limit is not None}

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

#: Every reference names its stream and file; the other fields may be absent (null).
PROVENANCE_STRINGS: tuple[tuple[str, bool], ...] = (
    ("stream", False),
    ("guid", False),
    ("container", True),
    ("clid", True),
)
PROVENANCE_NUMBERS: tuple[Scalar, ...] = (
    Scalar("tech", _INT, "<u4"),
    Scalar("oid1", _INT, "<u8"),
    Scalar("oid2", _INT, "<u8"),
)
PROVENANCE_LIMITS = {spec.name: spec.limit for spec in PROVENANCE_NUMBERS if spec.limit is not None}
PROVENANCE_TYPE = pa.list_(
    pa.struct(
        [pa.field(name, pa.string(), nullable=nullable) for name, nullable in PROVENANCE_STRINGS]
        + [spec.field for spec in PROVENANCE_NUMBERS]
    )
)

# The columns a chunk carries, in warehouse order. The loader adds task/job/attempt.
EVENT_SCHEMA = pa.schema(
    [spec.field for spec in SCALAR_COLUMNS]
    + [pa.field(name, pa.binary()) for name, _ in MASK_COLUMNS]
    + [pa.field("provenance", PROVENANCE_TYPE), pa.field("input_guid", pa.string(), nullable=False)]
)

IDENTITY_FIELDS = [
    pa.field("task", pa.string(), nullable=False),
    pa.field("job", pa.string(), nullable=False),
    pa.field("attempt", pa.int32(), nullable=False),
]
WAREHOUSE_SCHEMA = pa.schema(list(EVENT_SCHEMA) + IDENTITY_FIELDS)


# ---------------------------------------------------------------- Arrow -> ChunkBody


def _np(array: pa.ChunkedArray | pa.Array, dtype: str) -> np.ndarray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=dtype)


# Field numbers come from the generated schema, the single source of the wire contract.
_BODY = {f.name: f.number for f in pb.ChunkBody.DESCRIPTOR.fields}
_MASK = {f.name: f.number for f in pb.MaskColumn.DESCRIPTOR.fields}
_STRINGS = {f.name: f.number for f in pb.StringColumn.DESCRIPTOR.fields}


def _wire_values(array: pa.Array, spec: Scalar, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A column's values in its wire dtype (0 or false where null) and its absent flags (None: none is)."""
    absent = None
    if array.null_count:
        if not spec.nullable:
            raise ValueError(f"column {name}: a null in a column that may not hold one")
        absent = _np(array.is_null(), "bool")
        array = array.fill_null(False if spec.wire == "|b1" else 0)
    values = _np(array, spec.type.to_pandas_dtype())
    limit = spec.limit
    if limit is not None and len(values):
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > limit:
            raise ValueError(f"column {name}: value {low if low < 0 else high} is outside 0..{limit}")
    return values.astype(spec.wire, copy=False), absent


def _put_scalar(out: Writer, array: pa.Array, spec: Scalar, name: str) -> None:
    values, absent = _wire_values(array, spec, name)
    out.packed(_BODY[name], values, spec.wire)
    if absent is not None:
        out.packed(_BODY[f"{name}_absent"], absent, "|b1")


#: A mask column is written dense (bitmaps) when more than one bit in this many is set, i.e. when its
#: 32-bit positions would take more than half the bitmaps' bytes. Positions cost ~100x the CPU of a
#: bitmap byte per set bit, and dense real masks compress smaller as bitmaps; sparse masks (a few
#: bits in 512 or 8192, like the synthetic ones) stay positions, much smaller than their bitmaps.
DENSE_ONE_BIT_IN = 64
#: How many bytes of a column's masks (its first present rows) are counted to judge its density.
_DENSITY_SAMPLE_BYTES = 1 << 18


def _encode_mask(column: pa.ChunkedArray, width_bytes: int, name: str) -> tuple[Writer, bool]:
    """Bitmaps (binary, `width_bytes` each, or null) -> a MaskColumn, and whether it is dense.

    Chunk by chunk: combining the chunks would copy every bitmap once more."""
    parts = [_mask_rows(chunk.cast(pa.binary()), width_bytes, name) for chunk in column.chunks]
    valid = np.concatenate([valid for valid, _ in parts] or [np.empty(0, dtype=bool)])
    datas = [data for _, data in parts if len(data)]
    dense = _is_dense(datas)
    out = Writer()
    out.uint(_MASK["width_bits"], width_bytes * 8)
    if dense:
        # One chunk (the usual case): the body's final join is the bitmaps' only copy.
        out.bytes_field(_MASK["bitmaps"], datas[0].data if len(datas) == 1 else b"".join(d.data for d in datas))
    else:
        sparse = [_mask_positions(valid, data, width_bytes) for valid, data in parts]
        none = np.empty(0, dtype=np.uint32)
        out.packed(_MASK["counts"], np.concatenate([counts for counts, _ in sparse] or [none]), "<u4")
        out.packed(_MASK["positions"], np.concatenate([positions for _, positions in sparse] or [none]), "<u4")
    if not valid.all():
        out.packed(_MASK["absent"], ~valid, "|b1")
    return out, dense


def _is_dense(datas: list[np.ndarray]) -> bool:
    """Are the masks (bytes of the present rows) dense, judged by the set bits of their first bytes?"""
    set_bits = sampled = 0
    for data in datas:
        sample = data[: _DENSITY_SAMPLE_BYTES - sampled]
        set_bits += int(np.bitwise_count(sample.view("<u8") if not len(sample) % 8 else sample).sum())
        sampled += len(sample)
        if sampled >= _DENSITY_SAMPLE_BYTES:
            break
    return set_bits * DENSE_ONE_BIT_IN > sampled * 8


def _mask_rows(array: pa.Array, width_bytes: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(which rows hold a mask, the masks of those rows back to back as uint8) of a binary array."""
    valid = _np(array.is_valid(), "bool")
    n_valid = int(valid.sum())
    if not n_valid:
        return valid, np.empty(0, dtype=np.uint8)
    # The masks, back to back (a null may hold bytes: leave those out).
    present = array if n_valid == len(array) else array.filter(pa.array(valid))
    offsets = np.frombuffer(present.buffers()[1], dtype=np.int32)[present.offset : present.offset + n_valid + 1]
    lengths = np.diff(offsets)
    if np.any(lengths != width_bytes):
        bad = int(lengths[lengths != width_bytes][0])
        raise ValueError(f"column {name}: a mask of {bad} bytes, expected {width_bytes}")
    data = present.buffers()[2]
    assert data is not None
    return valid, np.frombuffer(data, dtype=np.uint8, count=n_valid * width_bytes, offset=int(offsets[0]))


def _mask_positions(valid: np.ndarray, data: np.ndarray, width_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(set bits per row, their positions row after row) of the present rows' masks `data`."""
    counts = np.zeros(len(valid), dtype=np.uint32)
    positions = np.empty(0, dtype=np.uint32)
    n_valid = len(data) // width_bytes
    if n_valid:
        # Masks are sparse: find the non-zero 64-bit words (bit b of a little-endian word is bit
        # b % 8 of its byte b // 8), then take their set bits lowest first, one per word a step:
        # a step per bit of the fullest word, each over the words that still have one.
        words = data.view("<u8")
        hit = np.flatnonzero(words != 0)
        left = words[hit]
        per_word = np.bitwise_count(left).astype(np.int64)
        where = np.cumsum(per_word) - per_word  # each word's first bit in `positions`
        total = int(per_word.sum())
        found = np.empty(total, dtype=np.int64)
        base = (hit % (width_bytes // 8)) * 64  # the word's first bit in its mask
        while len(left):
            lowest = left & (~left + np.uint64(1))
            found[where] = base + np.bitwise_count(lowest - np.uint64(1))
            left ^= lowest
            more = left != 0
            left, where, base = left[more], where[more] + 1, base[more]
        row = hit // (width_bytes // 8)
        counts[np.nonzero(valid)[0]] = np.bincount(row, weights=per_word, minlength=n_valid)
        positions = found.astype(np.uint32)
    return counts, positions


def _encode_strings(array: pa.Array, name: str, nullable: bool) -> Writer:
    encoded = array.dictionary_encode()
    if len(encoded.dictionary) > MAX_RECORDS - 8:  # one field per distinct value: more would be refused as a bomb
        raise InputError(
            f"column {name} holds {len(encoded.dictionary):,} distinct values in one chunk of {len(array):,}, more "
            f"than a chunk may ({MAX_RECORDS - 8:,}): use a smaller --chunk-events"
        )
    out = Writer()
    for value in encoded.dictionary.to_pylist():
        out.bytes_field(_STRINGS["values"], value.encode())
    indices = encoded.indices
    if indices.null_count:
        if not nullable:
            raise ValueError(f"column {name}: a null in a column that may not hold one")
        out.packed(_STRINGS["index"], _np(indices.fill_null(0), "uint32"), "<u4")
        out.packed(_STRINGS["absent"], _np(indices.is_null(), "bool"), "|b1")
    else:
        out.packed(_STRINGS["index"], _np(indices, "uint32"), "<u4")
    return out


def encode_body(table: pa.Table) -> bytes:
    """Arrow events (EVENT_SCHEMA) -> the serialised columnar protobuf body (a ChunkBody).

    Raises ValueError for what no reader may hand over: a null in a column that may not hold one,
    an integer outside its wire range, a mask of the wrong width.
    """
    return encode_versioned_body(table)[0]


def encode_versioned_body(table: pa.Table) -> tuple[bytes, int]:
    """`encode_body`, and the chunk format version its header must give (3 with a dense mask column, else 2)."""
    body, version = body_writer(table)
    return body.getvalue(), version


def body_writer(table: pa.Table) -> tuple[Writer, int]:
    """`encode_versioned_body` before its parts are joined (eventindex.codec joins them into a buffer it reuses)."""
    table = table.select(EVENT_SCHEMA.names)  # columns are combined one by one, as they are needed
    out = Writer()
    out.uint(_BODY["rows"], table.num_rows)
    for spec in SCALAR_COLUMNS:
        _put_scalar(out, table.column(spec.name).combine_chunks(), spec, spec.name)
    version = SPARSE_FORMAT_VERSION
    for name, width in MASK_COLUMNS:
        column, dense = _encode_mask(table.column(name), width, name)
        out.message(_BODY[name], column)
        if dense:
            version = FORMAT_VERSION
    prov = table.column("provenance").combine_chunks()
    out.packed(_BODY["provenance_count"], _np(prov.value_lengths().fill_null(0), "uint32"), "<u4")
    if prov.null_count:
        out.packed(_BODY["provenance_absent"], _np(prov.is_null(), "bool"), "|b1")
    refs = prov.flatten()  # the references of the rows, whatever the array's offset
    if refs.null_count:
        raise ValueError("column provenance: a null reference")
    for name, nullable in PROVENANCE_STRINGS:
        out.message(_BODY[f"provenance_{name}"], _encode_strings(refs.field(name), f"provenance.{name}", nullable))
    for spec in PROVENANCE_NUMBERS:
        _put_scalar(out, refs.field(spec.name), spec, f"provenance_{spec.name}")
    out.message(_BODY["input_guid"], _encode_strings(table.column("input_guid").combine_chunks(), "input_guid", False))
    return out, version


# ---------------------------------------------------------------- ChunkBody -> Arrow


def _checked(values: np.ndarray, rows: int, name: str) -> np.ndarray:
    if len(values) != rows:
        raise CorruptObjectError(f"column {name} has {len(values)} values, the chunk has {rows} rows")
    return values


class Body:
    """A parsed chunk body: its row count and raw columns, not yet turned into Arrow.

    `version` is the chunk format version its header gives (FORMAT_VERSION by default).
    """

    def __init__(self, raw: bytes, what: str = "chunk body", version: int = FORMAT_VERSION) -> None:
        self.fields = Fields(raw, what)
        self.rows = self.fields.uint(_BODY["rows"])
        self.version = version

    def column(self, name: str, dtype: str, rows: int | None = None) -> np.ndarray:
        """A packed column as stored (`dtype` like "<u4"), checked to hold `rows` values (default: the body's)."""
        return _checked(self.fields.packed(_BODY[name], dtype), self.rows if rows is None else rows, name)

    def absent(self, name: str, rows: int | None = None) -> np.ndarray | None:
        """Where column `name` has no value (booleans), or None when it has every value."""
        if self.version == 1:  # every value present, but for extended_level1_id's own presence column
            if name != "extended_level1_id":
                return None
            present = self.column("extended_level1_id_present", "|b1", rows)
            return np.asarray(present.view(np.uint8) == 0)
        raw = self.fields.packed(_BODY[f"{name}_absent"], "|b1")
        if not len(raw):
            return None
        return np.asarray(_checked(raw, self.rows if rows is None else rows, f"{name}_absent").view(np.uint8) != 0)

    def keys(self) -> tuple[np.ndarray, np.ndarray]:
        """The (run, event) columns: uint32 runs and int64 events."""
        return self.column("run_number", "<u4"), _signed(self.column("event_number", "<u8"), "event_number")


def _signed(values: np.ndarray, name: str) -> np.ndarray:
    """Wire integers -> int64; a fixed64 value of 2^63 or more is corrupt (the producer refuses them)."""
    if values.dtype.itemsize == 8:
        signed = values.view("<i8")
        if len(signed) and int(signed.min()) < 0:
            raise CorruptObjectError(f"column {name}: a value of 2^63 or more")
        return signed
    return values.astype(np.int64)


def _sum(counts: np.ndarray) -> int:
    """The sum of uint32 counts (cheap when they are all zero)."""
    return int(np.add.reduce(counts, dtype=np.uint64)) if np.count_nonzero(counts) else 0


def _validity(absent: np.ndarray | None) -> tuple[pa.Buffer | None, int]:
    """An Arrow validity bitmap and null count from absent flags (no bitmap when none is absent)."""
    if absent is None:
        return None, 0
    nulls = int(np.count_nonzero(absent))
    if not nulls:
        return None, 0
    return pa.py_buffer(np.packbits(~absent, bitorder="little")), nulls


def _scalar(body: Body, spec: Scalar, name: str, rows: int, check_only: bool) -> pa.Array | None:
    """A scalar column: checked, and built unless `check_only`."""
    values = body.column(name, spec.wire, rows)
    absent = body.absent(name, rows) if spec.nullable else None
    if spec.wire == "<u8":
        values = _signed(values, name)
    if check_only:
        return None
    validity, nulls = _validity(absent)
    if nulls == rows and rows:  # a column the input never carries (MC numbers of real data)
        return pa.nulls(rows, spec.type)
    if spec.wire == "|b1":
        data = pa.py_buffer(np.packbits(values, bitorder="little"))  # any non-zero byte is true
    else:
        data = pa.py_buffer(values if spec.wire != "<u4" else values.astype(np.int64))
    return pa.Array.from_buffers(spec.type, rows, [validity, data], null_count=nulls)


# Arrow's binary type has 32-bit offsets: one column holds at most this many bytes.
_MAX_BINARY_BYTES = 2**31 - 1
# Columns with no set bit share one read-only buffer of zeros, up to this size (grown on demand).
_SHARED_ZEROS_MAX = 64 * 1024 * 1024
_shared_zeros = pa.py_buffer(b"")


def shared_zeros(size: int) -> pa.Buffer:
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


def _decode_mask(
    column: Fields | None, rows: int, name: str, width_bytes: int, check_only: bool = False, version: int = 3
) -> pa.Array:
    """A MaskColumn -> `width_bytes` bitmaps per row, null where absent (only the checks if check_only).

    Dense: the bitmaps are the column's data as they are (no copy). Sparse: each set bit becomes
    one (byte index, bit value) pair, and the pairs are scattered into a matrix of zeros; a column
    without set bits takes shared zeros instead.
    """
    if column is None:
        raise CorruptObjectError(f"column {name} is missing")
    width_bits = column.uint(_MASK["width_bits"])
    if width_bits != width_bytes * 8:
        raise CorruptObjectError(f"column {name} holds {width_bits}-bit masks, expected {width_bytes * 8}")
    bitmaps = column.packed(_MASK["bitmaps"], "|u1")
    positions = column.packed(_MASK["positions"], "<u4")
    if len(bitmaps):
        if version < 3:
            raise CorruptObjectError(f"column {name}: dense masks in a version {version} chunk")
        if len(column.packed(_MASK["counts"], "<u4")) or len(positions):
            raise CorruptObjectError(f"column {name}: both bitmaps and set-bit positions")
        counts = np.zeros(0, dtype=np.uint32)
        total = 0
    else:
        counts = _checked(column.packed(_MASK["counts"], "<u4"), rows, name)
        total = _sum(counts)
    if total != len(positions):
        raise CorruptObjectError(f"column {name}: counts add up to {total}, {len(positions)} positions")
    if total and int(np.maximum.reduce(positions)) >= width_bits:
        raise CorruptObjectError(f"column {name}: a bit position outside 0..{width_bits - 1}")
    absent_raw = column.packed(_MASK["absent"], "|b1")
    valid: np.ndarray | None = None  # None: every row holds a mask
    n_valid = rows
    if len(absent_raw):
        absent = _checked(absent_raw, rows, name).view(np.uint8) != 0
        if total and np.count_nonzero(counts[absent]):
            raise CorruptObjectError(f"column {name}: an absent mask with bits set")
        valid = ~absent
        n_valid = int(np.count_nonzero(valid))
        if n_valid == rows:
            valid = None
    size = n_valid * width_bytes
    if size > _MAX_BINARY_BYTES:
        raise CorruptObjectError(f"column {name}: {n_valid} masks of {width_bytes} bytes do not fit one column")
    if len(bitmaps) and len(bitmaps) != size:
        raise CorruptObjectError(
            f"column {name}: {len(bitmaps)} bytes of bitmaps, {n_valid} masks of {width_bytes} bytes expected"
        )
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
    if len(bitmaps):
        data = pa.py_buffer(bitmaps)
    elif total:
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
        data = shared_zeros(size)
    return pa.Array.from_buffers(pa.binary(), rows, [validity, pa.py_buffer(offsets), data], null_count=rows - n_valid)


def _decode_strings(
    column: Fields | None, rows: int, name: str, check_only: bool = False, nullable: bool = False
) -> pa.Array:
    if column is None:
        if rows:
            raise CorruptObjectError(f"column {name} is missing")
        return pa.array([], pa.string())
    index = _checked(column.packed(_STRINGS["index"], "<u4"), rows, name)
    values = column.strings(_STRINGS["values"])
    absent_raw = column.packed(_STRINGS["absent"], "|b1")
    absent: np.ndarray | None = None
    if len(absent_raw):
        absent = _checked(absent_raw, rows, f"{name} absent").view(np.uint8) != 0
        if not absent.any():
            absent = None
        elif not nullable:
            raise CorruptObjectError(f"column {name}: an absent value in a column that may not hold one")
    used = index if absent is None else index[~absent]
    if len(used) and int(used.max()) >= len(values):
        raise CorruptObjectError(f"column {name}: dictionary index out of range")
    if check_only:
        return pa.nulls(0, pa.string())
    if absent is not None:
        indices = pa.array(index.astype(np.int32), mask=absent)
        return pa.DictionaryArray.from_arrays(indices, pa.array(values, pa.string())).cast(pa.string())
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


def _provenance(body: Body, check_only: bool) -> pa.Array | None:
    rows, fields = body.rows, body.fields
    counts = body.column("provenance_count", "<u4")
    n_refs = _sum(counts)
    absent = body.absent("provenance")
    if absent is not None and n_refs and np.count_nonzero(counts[absent]):
        raise CorruptObjectError("column provenance: an absent provenance with references")
    children = [
        _decode_strings(fields.message(_BODY[f"provenance_{f}"], f"provenance_{f}"), n_refs, f"provenance_{f}",
                        check_only, nullable)
        for f, nullable in PROVENANCE_STRINGS
    ]  # fmt: skip
    children += [_scalar(body, spec, f"provenance_{spec.name}", n_refs, check_only) for spec in PROVENANCE_NUMBERS]
    if check_only:
        return None
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    structs = pa.StructArray.from_arrays(children, fields=list(PROVENANCE_TYPE.value_type))
    mask = None if absent is None or not absent.any() else pa.array(absent)
    return pa.ListArray.from_arrays(pa.array(offsets), structs, type=PROVENANCE_TYPE, mask=mask)


def _decode(body: Body, check_only: bool) -> dict[str, pa.Array | None]:
    """Every column of a body, checked; the Arrow arrays unless `check_only` (then None)."""
    rows, fields = body.rows, body.fields
    arrays: dict[str, pa.Array | None] = {}
    for spec in SCALAR_COLUMNS:
        arrays[spec.name] = _scalar(body, spec, spec.name, rows, check_only)
    for name, width in MASK_COLUMNS:
        arrays[name] = _decode_mask(fields.message(_BODY[name], name), rows, name, width, check_only, body.version)
    arrays["provenance"] = _provenance(body, check_only)
    arrays["input_guid"] = _decode_strings(fields.message(_BODY["input_guid"], "input_guid"), rows, "input_guid",
                                           check_only)  # fmt: skip
    return arrays


def decode_body(body: Body) -> pa.Table:
    """A parsed columnar protobuf body -> Arrow events (EVENT_SCHEMA); raises CorruptObjectError."""
    arrays = _decode(body, check_only=False)
    return pa.Table.from_arrays([arrays[name] for name in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)


def validate_body(body: Body) -> None:
    """Every check decode_body makes, without building the columns: CorruptObjectError if any fails."""
    _decode(body, check_only=True)


def event_keys(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The (run, event) columns as int64 numpy arrays."""
    return _np(table.column("run_number"), "int64"), _np(table.column("event_number"), "int64")
