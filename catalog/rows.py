"""Reading rows by their position in a part file, with pyarrow: only the row groups holding them, with the
strings the loader writes as dictionaries read as dictionaries (no string is built for a row not taken)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from eventindex.columns import PROVENANCE_STRINGS, WAREHOUSE_SCHEMA

#: Columns read as dictionaries: the loader's dictionary columns (supersink.loader.DICTIONARY_COLUMNS).
READ_DICTIONARY = ["task", "job", "input_guid"] + [f"provenance.list.element.{name}" for name, _ in PROVENANCE_STRINGS]


def take_rows(fs: pafs.FileSystem, path: str, numbers: Sequence[int], columns: Sequence[str]) -> pa.Table:
    """Rows `numbers` (positions in the file, ascending) of a part file: their `columns`, as the warehouse
    schema types them (dictionaries decoded)."""
    wanted = np.asarray(numbers, dtype=np.int64)
    with fs.open_input_file(path) as stream:
        parquet = pq.ParquetFile(stream, read_dictionary=READ_DICTIONARY)
        meta = parquet.metadata
        ends = np.cumsum([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        if len(wanted) and (wanted[0] < 0 or wanted[-1] >= (ends[-1] if len(ends) else 0)):
            raise ValueError(f"{path}: rows {wanted[0]}..{wanted[-1]} are not all in the file")
        group_of = np.searchsorted(ends, wanted, side="right")
        pieces = []
        for group in np.unique(group_of).tolist():
            first = int(ends[group - 1]) if group else 0
            table = parquet.read_row_group(group, columns=list(columns))
            pieces.append(_decoded(table.take(pa.array(wanted[group_of == group] - first))))
    schema = pa.schema([WAREHOUSE_SCHEMA.field(name) for name in columns])
    return pa.concat_tables(pieces) if pieces else schema.empty_table()


def _decoded(table: pa.Table) -> pa.Table:
    return pa.Table.from_arrays(
        [table.column(f.name).cast(WAREHOUSE_SCHEMA.field(f.name).type) for f in table.schema],
        names=table.schema.names,
    )
