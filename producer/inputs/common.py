"""What the file readers share: file GUIDs, range checks, and completing partial columns into EVENT_SCHEMA tables.

A value the file does not carry is null, never a stand-in 0, false or "" (docs/inputs.md):

- `run_number` and `event_number` are required;
- every other column the file lacks is null for every event, `input_guid` excepted (the file's GUID);
- a provenance reference needs its `stream` and `guid` (not empty strings); its other fields may be null.

Integers are range-checked for every format alike (`checked_integers`, `out_of_range`): every
integer column holds values in 0..INTEGER_LIMITS[column], so an event number or OID of 2^63 or
more, which the warehouse's signed 64-bit columns cannot hold, is refused naming the file.

Masks are normalised the same way for every format: an empty value means absent (null), a
value shorter than the vector's width is padded with zero bytes (the missing high bits are 0),
a longer one is an error.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import resource
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eventindex.columns import EVENT_SCHEMA, INT64_MAX, INTEGER_LIMITS, MASK_COLUMNS, PROVENANCE_LIMITS, PROVENANCE_TYPE
from eventindex.errors import ConfigError, InputError

HASH_BLOCK = 1 << 20
GUID_PATTERN = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
REQUIRED_COLUMNS = ("run_number", "event_number")
#: Warehouse columns the loader adds; a reader ignores them when a file carries them.
IDENTITY_COLUMNS = frozenset({"task", "job", "attempt"})
MASK_WIDTHS = dict(MASK_COLUMNS)
#: The largest value of each integer column and provenance field ("provenance.oid1"); the smallest is 0.
LIMITS = {**INTEGER_LIMITS, **{f"provenance.{name}": limit for name, limit in PROVENANCE_LIMITS.items()}}


def content_guid(path: Path) -> str:
    """The GUID of a file that names none: UUIDv5(NAMESPACE_URL, "sha256:" + hex digest of its bytes)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            while block := stream.read(HASH_BLOCK):
                digest.update(block)
    except OSError as exc:
        raise unreadable(str(path), exc, f"cannot read it to name it by its content ({exc.strerror or exc})") from None
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sha256:" + digest.hexdigest())).upper()


_NO_DESCRIPTOR = (errno.EMFILE, errno.ENFILE)


def descriptors_exhausted(exc: BaseException) -> bool:
    """True when `exc` says the process (EMFILE) or the system (ENFILE) has no file descriptor left; pyarrow's
    OSError carries no errno, only the text."""
    if not isinstance(exc, OSError):
        return False
    return exc.errno in _NO_DESCRIPTOR or any(os.strerror(code) in str(exc) for code in _NO_DESCRIPTOR)


def unreadable(where: str, exc: BaseException, reason: str) -> ConfigError | InputError:
    """The error for an input that could not be opened or read: InputError (`where: reason`), the input's
    fault, unless the job ran out of file descriptors: that is the job's limits, not the file's fault
    (ConfigError, exit 2, naming the limit), and the file must not be reported as bad."""
    if descriptors_exhausted(exc):
        code = errno.ENFILE if os.strerror(errno.ENFILE) in str(exc) or getattr(exc, "errno", 0) == errno.ENFILE else 0
        what = os.strerror(code or errno.EMFILE)
        return ConfigError(
            f"{where}: {what}: the job's inputs need more open files than its limit (ulimit -n "
            f"{open_file_limit()}) allows"
        )
    return InputError(f"{where}: {reason}")


def open_file_limit() -> str:
    """The process's soft limit of open files, as `ulimit -n` shows it."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return "unlimited" if soft == resource.RLIM_INFINITY else str(soft)


def normalize_guid(value: object, where: str) -> str:
    """An uppercase 8-4-4-4-12 GUID, or InputError naming `where`."""
    if not isinstance(value, str) or not GUID_PATTERN.fullmatch(value.strip()):
        raise InputError(f"{where}: {value!r} is not a GUID (8-4-4-4-12 hex digits)")
    return value.strip().upper()


def first_true(mask: pa.Array | np.ndarray) -> int:
    """Index of the first true value of a boolean array (nulls count as false), or -1."""
    if isinstance(mask, pa.Array):
        mask = mask.fill_null(False).to_numpy(zero_copy_only=False)
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else -1


def first_blank(array: pa.Array) -> int:
    """Index of the first empty or whitespace-only string of a string array (nulls aside), or -1."""
    if len(array) == array.null_count:
        return -1
    empty, spaces = pc.equal(pc.binary_length(array), 0), pc.utf8_is_space(array)  # no string is built
    return first_true(pc.or_(empty, spaces)) if pc.any(empty).as_py() or pc.any(spaces).as_py() else -1


def out_of_range(column: str, value: int) -> str:
    """Why `value` cannot be stored in `column` (a column name, or "provenance.oid1" and the like)."""
    limit = LIMITS[column]
    if value > INT64_MAX and limit == INT64_MAX:
        return (
            f"{column} {value} is 2^63 or more: the warehouse holds it as a signed 64-bit integer, "
            f"so values up to {INT64_MAX} are accepted"
        )
    return f"{column} value {value} is outside 0..{limit}"


#: The largest magnitude `mc_event_weight` (a 32-bit float) holds; beyond it a value would be stored as infinity.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def first_beyond_float32(values: np.ndarray) -> int:
    """The index of the first finite value that a 32-bit float cannot hold (it would be stored as infinity),
    or -1. Only a float wider than 32 bits can be one: every integer type fits (2^64 < 3.4e38). NaN and the
    infinities (a null read as NaN too) are kept as the input says them."""
    if values.dtype.kind != "f" or values.dtype.itemsize <= 4:
        return -1
    with np.errstate(invalid="ignore"):
        beyond = np.isfinite(values) & (np.abs(values) > FLOAT32_MAX)
    return first_true(beyond) if beyond.any() else -1


def beyond_float32(column: str, value: object) -> str:
    return (
        f"{column} value {value} is beyond the range of a 32-bit float (about 3.4e38): it would be stored as infinity"
    )


def checked_integers(array: pa.Array, column: str, where: str, first_row: int) -> pa.Array:
    """An integer array of any type (nulls kept) as int64, every value within the column's range.

    `column` is a column name or "provenance.FIELD"; `where` names the file and `first_row` is
    the row number of the array's first value, for the InputError.
    """
    return _checked_integers(array, column, where, lambda index: first_row + index)


def _checked_integers(array: pa.Array, column: str, where: str, row: Callable[[int], int]) -> pa.Array:
    limit = LIMITS[column]
    if len(array) > array.null_count:
        low, high = pc.min_max(array).values()
        bad = None
        if low.as_py() < 0:
            bad = pc.less(array, 0)
        elif high.as_py() > limit:
            bad = pc.greater(array, pa.scalar(limit, array.type))
        if bad is not None:
            index = first_true(bad)
            raise InputError(f"{where}: row {row(index)}: {out_of_range(column, array[index].as_py())}")
    return array.cast(pa.int64())


def binary_from_matrix(matrix: np.ndarray) -> pa.Array:
    """An (n, width) uint8 matrix -> a binary array of n values of `width` bytes."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(matrix, dtype=np.uint8)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())])


def normalize_mask(array: pa.Array, column: str, where: str, first_row: int) -> pa.Array:
    """Binary mask values -> values of the vector's width, or null; a longer value is an error.

    `where` names the file; `first_row` is the row number of the array's first value, for messages.
    """
    width = MASK_WIDTHS[column]
    lengths = pc.binary_length(array)
    too_long = first_true(pc.greater(lengths, width))
    if too_long >= 0:
        raise InputError(
            f"{where}: row {first_row + too_long}: {column} has {lengths[too_long].as_py()} bytes, "
            f"more than the {width} of a {width * 8}-bit vector"
        )
    if not pc.any(pc.less(lengths, width)).as_py():
        return array
    values = [value + bytes(width - len(value)) if value else None for value in array.to_pylist()]
    return pa.array(values, pa.binary())


def normalize_provenance(array: pa.Array, where: str, first_row: int) -> pa.Array:
    """A list of structs with (some of) the provenance field names -> a PROVENANCE_TYPE array.

    Integer fields are range-checked, absent fields are null, and every reference must name its
    stream and guid; a null list stays null. InputError names the file and the row.
    """
    if pa.types.is_large_list(array.type):
        array = array.cast(pa.list_(array.type.value_type))
    counts = np.asarray(array.value_lengths().fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    starts = np.cumsum(counts) - counts  # where each row's references start in `structs`
    structs = array.flatten()  # the references of the non-null rows, in order

    def row(value_index: int) -> int:
        return first_row + int(np.searchsorted(starts, value_index, side="right")) - 1

    bad = first_true(structs.is_null())
    if bad >= 0:
        raise InputError(f"{where}: row {row(bad)}: provenance holds a null reference")
    names = [field.name for field in structs.type]
    known = [field.name for field in PROVENANCE_TYPE.value_type]
    unknown = [name for name in names if name not in known]
    if unknown:  # a misspelt field is never silently taken for an absent one
        raise InputError(
            f"{where}: provenance field {unknown[0]!r} is not a provenance field (expected {', '.join(known)})"
        )
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InputError(f"{where}: provenance field {twice[0]!r} is there twice")
    present = set(names)
    for field in PROVENANCE_TYPE.value_type:
        if field.nullable:
            continue
        missing = structs.field(field.name).is_null() if field.name in present else np.ones(len(structs), bool)
        bad = first_true(missing)
        if bad >= 0:
            raise InputError(f"{where}: row {row(bad)}: a provenance reference has no {field.name}")
    for name in PROVENANCE_LIMITS:
        if name in present:
            child = structs.field(name)
            if not pa.types.is_integer(child.type):
                raise InputError(f"{where}: provenance field {name!r} has type {child.type}, expected an integer")
            _checked_integers(child, f"provenance.{name}", where, row)
    for field in PROVENANCE_TYPE.value_type:  # a number is not a stream, GUID, container or CLID: never cast to one
        if pa.types.is_string(field.type) and field.name in present:
            child_type = structs.field(field.name).type
            if pa.types.is_dictionary(child_type):
                child_type = child_type.value_type
            if not (
                pa.types.is_string(child_type) or pa.types.is_large_string(child_type) or pa.types.is_null(child_type)
            ):
                raise InputError(f"{where}: provenance field {field.name!r} has type {child_type}, expected a string")
    try:
        cast = array.cast(PROVENANCE_TYPE)
    except pa.ArrowException as exc:
        raise InputError(f"{where}: column 'provenance' cannot be read: {' '.join(str(exc).split())}") from None
    references = cast.flatten()
    for field in PROVENANCE_TYPE.value_type:
        if not field.nullable and pa.types.is_string(field.type):
            bad = first_blank(references.field(field.name))
            if bad >= 0:
                raise InputError(f"{where}: row {row(bad)}: a provenance reference has an empty or blank {field.name}")
    return cast


def complete_table(columns: dict[str, pa.Array], rows: int, guid: str) -> pa.Table:
    """An EVENT_SCHEMA table from the columns a file carries (already of the schema's types).

    A column the file lacks is null for every event; `input_guid` is the file's GUID.
    """
    arrays = []
    for field in EVENT_SCHEMA:
        array = columns.get(field.name)
        if array is None:
            array = pa.array([guid] * rows, pa.string()) if field.name == "input_guid" else pa.nulls(rows, field.type)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)
