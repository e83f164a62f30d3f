"""Trigger counts from the index's stored per-row-group bit counts, against counts done with numpy on the
rows the test wrote: ranges that take whole row groups and ranges that cut them (files read), masks all
null and partly null, rows without a lumi block, an uncommitted task, and a task committed after the index
was built (the next refresh stores its counts)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.bits import parse_bits
from catalog.questions import count
from catalog.selection import Range
from catalog.session import Session
from eventindex.columns import WAREHOUSE_SCHEMA
from eventindex.warehouse import MARKER, part_name, partition
from tests.catalog_warehouse import synthetic_events

pytest.importorskip("duckdb")

BITS = "l1_tav:0,l1_tav:7,l1_tap:14,l1_tbp:21,hlt_passed_physics:3,hlt_passed_through:3,l1_tav:500"
ROW_GROUP = 128


def _rows(seed: int, task: str, run: int, *, null_l1: bool = False, null_lumi: bool = False) -> pa.Table:
    """A seed's events as task rows: the first half in run `run`, the rest in `run + 1`, lumi blocks of 50
    rows (so row groups of 128 span runs and lumi blocks), some masks and lumi blocks null if asked."""
    table = synthetic_events(seed)
    n = table.num_rows
    runs = np.where(np.arange(n) < n // 2, run, run + 1)
    lumi = pa.array(1 + np.arange(n) // 50, pa.int64(), mask=(np.arange(n) % 7 == 3) if null_lumi else None)
    table = table.set_column(table.schema.get_field_index("run_number"), "run_number", pa.array(runs, pa.int64()))
    table = table.set_column(table.schema.get_field_index("lumi_block"), "lumi_block", lumi)
    if null_l1:
        for mask in ("l1_tav", "l1_tbp"):
            table = table.set_column(table.schema.get_field_index(mask), mask, pa.nulls(n, pa.binary()))
    return (
        table.append_column("task", pa.array([task] * n))
        .append_column("job", pa.array(["j1"] * n))
        .append_column("attempt", pa.array(np.ones(n, np.int32)))
        .cast(WAREHOUSE_SCHEMA)
    )


def _write(root: Path, dataset: str, task: str, tables: Sequence[pa.Table], *, marker: bool = True) -> None:
    directory = root / partition(dataset, task)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i, table in enumerate(tables):
        pq.write_table(table, directory / part_name(i), row_group_size=ROW_GROUP, compression="zstd")
        files.append({"name": part_name(i), "rows": table.num_rows})
    if marker:
        record = {"task": task, "dataset": dataset, "files": files, "rows": sum(f["rows"] for f in files)}
        (directory / MARKER).write_text(json.dumps({**record, "partial": False}))


def _expected(tables: Sequence[pa.Table], runs: Range | None, lumi: Range | None) -> dict[str, Any]:
    """Rows in the ranges and rows with each bit set, with numpy on the rows themselves."""
    rows = pa.concat_tables(tables)
    keep = np.ones(rows.num_rows, dtype=bool)
    if runs is not None:
        run = rows.column("run_number").to_numpy()
        keep &= (run >= runs.low) & (run <= runs.high)
    if lumi is not None:
        block = rows.column("lumi_block").to_numpy(zero_copy_only=False)
        valid = rows.column("lumi_block").is_valid().to_numpy(zero_copy_only=False)
        keep &= valid & (np.nan_to_num(block, nan=-1) >= lumi.low) & (np.nan_to_num(block, nan=-1) <= lumi.high)
    counts = []
    for spec in parse_bits(BITS):
        assert spec.number is not None
        masks = rows.column(spec.mask).to_pylist()
        byte, bit = spec.number // 8, spec.number % 8
        hit = [m is not None and len(m) > byte and bool(m[byte] >> bit & 1) for m in masks]
        counts.append(int(np.count_nonzero(np.array(hit, dtype=bool) & keep)))
    return {"scanned": int(keep.sum()), "counts": counts}


RANGES = [
    (None, None),  # whole row groups: nothing read
    (Range(1000, 1000), None),  # cuts the row group holding the end of run 1000
    (Range(1000, 1001), None),  # takes t1 and t2 whole
    (None, Range(3, 6)),  # cuts row groups: lumi blocks are 50 rows
    (Range(999, 5000), Range(1, 10**6)),  # wider than everything, but t1's rows without a lumi block: t1 read
]


@pytest.mark.parametrize(("runs", "lumi"), RANGES)
def test_counts_from_the_index_equal_counts_of_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: Range | None, lumi: Range | None
) -> None:
    root = tmp_path / "wh"
    committed = [_rows(1, "t1", 1000, null_lumi=True), _rows(2, "t1", 1000)]
    _write(root, "dsA", "t1", committed)
    committed.append(_rows(3, "t2", 1000, null_l1=True))  # L1 TAV and TBP masks all null
    _write(root, "dsA", "t2", committed[-1:])
    _write(root, "dsA", "tV", [_rows(10, "tV", 1000)], marker=False)  # parts without a marker: not committed
    read: list[str] = []
    with Session(root.as_uri(), index_path=tmp_path / "index.sqlite") as session:
        use_data = session.engine.use_data

        def spy(files: Any) -> None:
            read.extend(f.name for f in files)
            use_data(files)

        monkeypatch.setattr(session.engine, "use_data", spy)

        def ask(scan: bool = False) -> dict[str, Any]:
            document: dict[str, Any] = count(session, ["*"], parse_bits(BITS), runs, lumi, False, scan).document()
            return {"scanned": document["scanned"], "counts": [b["events"] for b in document["bits"]]}

        want = _expected(committed, runs, lumi)
        assert ask() == want == ask(scan=True)
        assert want["scanned"] > 0 and want["counts"][1] > 0 and want["counts"][4] > 0
        read.clear()
        ask()
        cut = (runs is not None and runs.high == 1000) or lumi is not None
        assert bool(read) == cut, read
        # A task committed after the index was built: the session's next refresh stores its counts.
        committed.append(_rows(4, "t3", 1000))
        _write(root, "dsB", "t3", committed[-1:])
        session.refresh()
        read.clear()
        assert ask() == _expected(committed, runs, lumi) == ask(scan=True)


def test_stored_counts_are_those_of_each_row_group(tmp_path: Path) -> None:
    root = tmp_path / "wh"
    tables = [_rows(1, "t1", 1000), _rows(3, "t2", 1000, null_l1=True)]
    _write(root, "dsA", "t1", tables[:1])
    _write(root, "dsA", "t2", tables[1:])
    with Session(root.as_uri(), index_path=tmp_path / "index.sqlite", engine="duckdb") as session:
        view = session.view()
        for mask, bits in (("l1_tav", [0, 7, 8, 100, 511]), ("hlt_passed_physics", [3, 40, 8191])):
            present, stored = view.stored_counts(mask, bits)
            assert present.all()
            for group in range(len(view.rg_file)):
                entry = view.files[view.rg_file[group]]
                ordinal = int(np.count_nonzero(view.rg_file[:group] == view.rg_file[group]))
                path = root / partition(entry.task.dataset, entry.task.task) / entry.name
                masks = pq.ParquetFile(path).read_row_group(ordinal, columns=[mask]).column(0).to_pylist()
                want = [sum(m is not None and len(m) > b // 8 and bool(m[b // 8] >> b % 8 & 1) for m in masks)
                        for b in bits]  # fmt: skip
                assert stored[group].tolist() == want
        assert view.stored_counts("l1_tav", [7])[1][view.rg_rows > 0].sum() > 0
