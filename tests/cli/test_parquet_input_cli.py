"""Parquet inputs through the CLIs as processes: into the warehouse, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from tests.helpers import index_into_warehouse, produce_cli
from tests.unit.test_parquet_input import GUID, write
from tests.unit.test_root_input import assert_same_columns, sorted_events


def test_parquet_file_round_trips_into_the_warehouse(tmp_path: Path, events: pa.Table) -> None:
    path = write(tmp_path / "ev.parquet", events, guid=GUID)
    loaded = index_into_warehouse(tmp_path, str(path), len(events))
    assert_same_columns(loaded, sorted_events(events))


def test_cli_reports_an_incompatible_column_in_one_line(tmp_path: Path, events: pa.Table) -> None:
    bad = events.set_column(0, "run_number", events.column("run_number").cast(pa.float64()))
    path = write(tmp_path / "bad.parquet", bad)
    proc = produce_cli(tmp_path, str(path))
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "run_number" in lines[0], proc.stderr
