"""What the file readers share: file GUIDs, and completing partial columns into EVENT_SCHEMA tables.

A reader that finds only some of the schema's columns in a file fills the others with the
documented defaults (docs/inputs.md):

- `run_number` and `event_number` are required;
- the other non-nullable numbers are 0, the flags false, `mc_event_weight` 0.0;
- `extended_level1_id` and the nine trigger masks are null (absent);
- `provenance` is an empty list (so is a null one); `input_guid` is the file's GUID.

Masks are normalised the same way for every format: an empty value means absent (null), a
value shorter than the vector's width is padded with zero bytes (the missing high bits are 0),
a longer one is an error.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eventindex.columns import EVENT_SCHEMA, MASK_COLUMNS, PROVENANCE_TYPE
from eventindex.errors import InputError

HASH_BLOCK = 1 << 20
GUID_PATTERN = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
REQUIRED_COLUMNS = ("run_number", "event_number")
#: Warehouse columns the loader adds; a reader ignores them when a file carries them.
IDENTITY_COLUMNS = frozenset({"task", "job", "attempt"})
MASK_WIDTHS = dict(MASK_COLUMNS)
#: Provenance reference fields that may be absent (the default fills them); stream and guid may not.
PROVENANCE_DEFAULTS: dict[str, str | int] = {"container": "", "clid": "", "tech": 0, "oid1": 0, "oid2": 0}


def content_guid(path: Path) -> str:
    """The GUID of a file that names none: UUIDv5(NAMESPACE_URL, "sha256:" + hex digest of its bytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(HASH_BLOCK):
            digest.update(block)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sha256:" + digest.hexdigest())).upper()


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
    """A list<struct> provenance array (already cast to PROVENANCE_TYPE) with absent optional fields filled.

    Each reference needs a stream and a guid; container/clid default to "" and tech/oid1/oid2 to 0.
    A null list is an empty one (the chunk format does not tell them apart).
    """
    if array.null_count:
        array = array.fill_null(pa.scalar([], PROVENANCE_TYPE))
    offsets = np.asarray(array.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    offsets -= offsets[0]
    structs = array.values.slice(int(array.offsets[0].as_py()), int(offsets[-1]))

    def row(value_index: int) -> int:
        return first_row + int(np.searchsorted(offsets, value_index, side="right")) - 1

    bad = first_true(structs.is_null())
    if bad >= 0:
        raise InputError(f"{where}: row {row(bad)}: provenance holds a null reference")
    children = []
    for field in PROVENANCE_TYPE.value_type:
        child = structs.field(field.name)
        if child.null_count:
            if field.name not in PROVENANCE_DEFAULTS:
                raise InputError(
                    f"{where}: row {row(first_true(child.is_null()))}: a provenance reference has no {field.name}"
                )
            child = child.fill_null(pa.scalar(PROVENANCE_DEFAULTS[field.name], field.type))
        children.append(child)
    filled = pa.StructArray.from_arrays(children, fields=list(PROVENANCE_TYPE.value_type))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), filled, type=PROVENANCE_TYPE)


def complete_table(columns: dict[str, pa.Array], rows: int, guid: str) -> pa.Table:
    """An EVENT_SCHEMA table from the columns a file carries (already of the schema's types).

    Absent columns get the defaults documented in the module docstring.
    """
    arrays = []
    for field in EVENT_SCHEMA:
        array = columns.get(field.name)
        if array is None:
            if field.name == "input_guid":
                array = pa.array([guid] * rows, pa.string())
            elif field.name == "provenance":
                array = pa.ListArray.from_arrays(pa.array(np.zeros(rows + 1, dtype=np.int32)), _EMPTY_REFS)
            elif field.nullable:
                array = pa.nulls(rows, field.type)
            elif pa.types.is_boolean(field.type):
                array = pa.array(np.zeros(rows, dtype=bool))
            else:
                array = pa.array(np.zeros(rows, dtype=field.type.to_pandas_dtype()), field.type)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


_EMPTY_REFS = pa.array([], PROVENANCE_TYPE.value_type)
