"""`*.parquet` / `parquet:PATH`: a Parquet file whose columns carry the schema's names.

- `run_number` and `event_number` are required; any other schema column may be absent, and is
  then null for every event (`input_guid`: the file's GUID). A null value stays null. `task`, `job`
  and `attempt` (a warehouse file's identity columns) are ignored; any other column is an error, so
  a misspelt column is never silently taken for an absent one; so is a column name given twice. An
  empty `input_guid` is refused.
- Compatible types are cast: any integer type to an integer column when every value is in the
  column's range (0..2^32-1 for the ATLAS 32-bit fields, 0..2^63-1 for event_number: a larger
  event number is refused), integers or floats to `mc_event_weight`, binary/large/fixed-size binary
  to the masks, string/large string/dictionary to `input_guid`, list/large list of structs with the
  provenance field names (container, clid, tech, oid1, oid2 may be absent or null: null; stream and
  guid may not, nor be empty; any other field is an error). Anything
  else (a float run number, a string mask, ...) is an InputError naming the column; a value that
  does not fit, or a null in a column that may not hold one, is one naming the column and the row
  (rows count from 0).
- Masks are normalised as for every format: empty = null, shorter = zero-padded, longer = error.
- The file's GUID is the file's key-value metadata `eventindex.guid` when present, else derived
  from its bytes (producer.inputs.common.content_guid). `declared_events` is the footer's row count.

The file is read in record batches of at most `max_rows` rows, so memory stays bounded by that
and one row group's column chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eventindex.columns import EVENT_SCHEMA
from eventindex.errors import InputError
from producer.inputs.base import InputSource
from producer.inputs.common import (
    IDENTITY_COLUMNS,
    MASK_WIDTHS,
    REQUIRED_COLUMNS,
    beyond_float32,
    checked_integers,
    complete_table,
    content_guid,
    first_beyond_float32,
    first_blank,
    first_true,
    normalize_guid,
    normalize_mask,
    normalize_provenance,
    unreadable,
)

GUID_KEY = b"eventindex.guid"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _compatible(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether a column of type `source` may be cast to the schema's `target` type."""
    types = pa.types
    if types.is_dictionary(source):
        source = source.value_type
    if types.is_integer(target):
        ok = types.is_integer(source)
    elif types.is_floating(target):
        ok = types.is_integer(source) or types.is_floating(source)
    elif types.is_boolean(target):
        ok = types.is_boolean(source)
    elif types.is_binary(target):
        ok = types.is_binary(source) or types.is_large_binary(source) or types.is_fixed_size_binary(source)
    elif types.is_string(target):
        ok = types.is_string(source) or types.is_large_string(source)
    else:
        ok = (types.is_list(source) or types.is_large_list(source)) and types.is_struct(source.value_type)
    return bool(ok)


class ParquetInput(InputSource):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        try:
            with pq.ParquetFile(path) as file:
                metadata = file.metadata
                schema = file.schema_arrow
        except (OSError, pa.ArrowException) as exc:
            raise unreadable(self.name, exc, f"not a readable Parquet file: {_one_line(exc)}") from None
        self.rows = metadata.num_rows
        self.row_groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        twice = sorted({name for name in schema.names if schema.names.count(name) > 1})
        if twice:  # which of them is the column? never a guess
            raise InputError(f"{self.name}: column {twice[0]!r} is there twice")
        unknown = [name for name in schema.names if name not in EVENT_SCHEMA.names and name not in IDENTITY_COLUMNS]
        if unknown:
            raise InputError(f"{self.name}: column {unknown[0]!r} is not an event column (docs/inputs.md)")
        for name in REQUIRED_COLUMNS:
            if name not in schema.names:
                raise InputError(f"{self.name}: no {name} column")
        self.columns = [name for name in EVENT_SCHEMA.names if name in schema.names]
        for name in self.columns:
            source, target = schema.field(name).type, EVENT_SCHEMA.field(name).type
            if not _compatible(source, target):
                raise InputError(f"{self.name}: column {name!r} has type {source}, which cannot be read as {target}")
        guid = (metadata.metadata or {}).get(GUID_KEY)
        if guid is not None:
            self.guid = normalize_guid(guid.decode("utf-8", errors="replace"), f"{self.name}: metadata eventindex.guid")
        else:
            self.guid = content_guid(path)

    @property
    def declared_events(self) -> int:
        return int(self.rows)

    def _row_group_of(self, row: int) -> str:
        ends = np.cumsum(self.row_groups)
        index = int(np.searchsorted(ends, row, side="right"))
        first = int(ends[index - 1]) if index else 0
        last = int(ends[index]) - 1 if index < len(ends) else first
        return f"row group {index} (rows {first}..{last})"

    def batches(self, max_rows: int) -> Iterator[pa.Table]:
        start = 0
        try:
            with pq.ParquetFile(self.path) as file:
                reader = file.iter_batches(batch_size=max_rows, columns=self.columns)
                while True:
                    try:
                        batch = next(reader, None)
                    except (OSError, pa.ArrowException) as exc:
                        raise InputError(f"{self.name}: {self._row_group_of(start)}: {_one_line(exc)}") from None
                    if batch is None:
                        break
                    if batch.num_rows:
                        yield self._convert(batch, start)
                    start += batch.num_rows
        except (OSError, pa.ArrowException) as exc:
            raise unreadable(self.name, exc, f"not a readable Parquet file: {_one_line(exc)}") from None
        if start != self.rows:
            raise InputError(f"{self.name}: the footer declares {self.rows} rows, {start} were read")

    def _convert(self, batch: pa.RecordBatch, start: int) -> pa.Table:
        arrays: dict[str, pa.Array] = {}
        for name in self.columns:
            field = EVENT_SCHEMA.field(name)
            array = batch.column(name)
            if pa.types.is_dictionary(array.type):
                array = array.dictionary_decode()
            if not field.nullable and array.null_count:
                row = start + first_true(array.is_null())
                raise InputError(f"{self.name}: row {row}: column {name!r} is null")
            if pa.types.is_integer(field.type):
                array = checked_integers(array, name, self.name, start)
            elif name == "provenance":
                array = normalize_provenance(array, self.name, start)
            else:
                if pa.types.is_floating(field.type) and pa.types.is_floating(array.type):
                    values = array.to_numpy(zero_copy_only=False)  # a null is NaN: kept
                    bad = first_beyond_float32(values)
                    if bad >= 0:
                        raise InputError(f"{self.name}: row {start + bad}: {beyond_float32(name, values[bad])}")
                array = array.cast(field.type, safe=not pa.types.is_floating(field.type))
                if name in MASK_WIDTHS:
                    array = normalize_mask(array, name, self.name, start)
                elif name == "input_guid" and (blank := first_blank(array)) >= 0:
                    raise InputError(
                        f"{self.name}: row {start + blank}: column 'input_guid' is an empty or blank string"
                    )
            arrays[name] = array
        return complete_table(arrays, batch.num_rows, self.guid)
