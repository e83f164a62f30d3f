"""Rows by position (catalog.rows): the same rows as reading the whole file, across row groups, from files
whose strings are dictionaries (as the loader writes) or plain (as catalogues written before)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from catalog.rows import take_rows
from eventindex.columns import WAREHOUSE_SCHEMA
from supersink.loader import PARQUET_OPTIONS
from tests.catalog_warehouse import synthetic_events

COLUMNS = ["run_number", "event_number", "task", "job", "input_guid", "lumi_block", "provenance", "attempt"]


@pytest.mark.parametrize("dictionaries", [True, False])
def test_taken_rows_are_those_of_the_file(tmp_path: Path, dictionaries: bool) -> None:
    table = synthetic_events(1)
    n = table.num_rows
    table = (
        table.append_column("task", pa.array(["t1"] * n))
        .append_column("job", pa.array([f"j{i % 3}" for i in range(n)]))
        .append_column("attempt", pa.array(np.ones(n, np.int32)))
        .cast(WAREHOUSE_SCHEMA)
    )
    path = tmp_path / "part-00000.parquet"
    options = PARQUET_OPTIONS if dictionaries else {"compression": "zstd", "use_dictionary": False}
    pq.write_table(table, path, row_group_size=256, **options)
    numbers = [0, 1, 255, 256, 700, n - 1]
    taken = take_rows(pafs.LocalFileSystem(), str(path), numbers, COLUMNS)
    assert [f.type for f in taken.schema] == [WAREHOUSE_SCHEMA.field(c).type for c in COLUMNS]
    assert taken.to_pylist() == table.select(COLUMNS).take(pa.array(numbers)).to_pylist()
    assert take_rows(pafs.LocalFileSystem(), str(path), [], COLUMNS).num_rows == 0
    with pytest.raises(ValueError, match="not all in the file"):
        take_rows(pafs.LocalFileSystem(), str(path), [n], COLUMNS)
