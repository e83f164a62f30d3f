"""The catalogue's index: committed tasks only (from markers, never from listings of part files), row-group
ranges that hold every key, and incremental refreshes (new commits, amendments, deleted tasks)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.errors import CatalogIndexError
from catalog.index import CatalogIndex, default_index_path
from catalog.keys import pack
from catalog.selection import match_datasets
from eventindex.columns import WAREHOUSE_SCHEMA
from eventindex.warehouse import AMEND_TEMPLATE, MARKER, WarehouseReader, part_name, partition
from tests.catalog_warehouse import synthetic_events


def _rows(seed: int, task: str) -> pa.Table:
    table = synthetic_events(seed)
    n = table.num_rows
    return (
        table.append_column("task", pa.array([task] * n))
        .append_column("job", pa.array(["j1"] * n))
        .append_column("attempt", pa.array(np.ones(n, np.int32)))
        .cast(WAREHOUSE_SCHEMA)
    )


def _write(directory: Path, name: str, table: pa.Table) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / name, row_group_size=256, compression="zstd")
    return {"name": name, "rows": table.num_rows}


def commit(root: Path, dataset: str, task: str, seeds: list[int], *, partial: bool = False) -> None:
    """A committed task, as the loader leaves it: its parts, then its marker."""
    directory = root / partition(dataset, task)
    files = [_write(directory, part_name(i), _rows(seed, task)) for i, seed in enumerate(seeds)]
    marker = {
        "task": task,
        "dataset": dataset,
        "files": files,
        "rows": sum(f["rows"] for f in files),
        "partial": partial,
    }
    (directory / MARKER).write_text(json.dumps(marker))


def amend(root: Path, dataset: str, task: str, number: int, seed: int, *, partial: bool) -> None:
    directory = root / partition(dataset, task)
    files = [_write(directory, part_name(0, number), _rows(seed, task))]
    amendment = {"task": task, "files": files, "rows": files[0]["rows"], "partial": partial, "amendment": number}
    (directory / AMEND_TEMPLATE.format(number)).write_text(json.dumps(amendment))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "wh"
    commit(root, "dsA", "t1", [1, 2])
    commit(root, "dsA", "t2", [3], partial=True)
    # Not committed: parts in place without a marker, and a staged load.
    _write(root / partition("dsA", "tV"), part_name(0), _rows(10, "tV"))
    _write(root / "_staging" / partition("dsA", "tU"), "part-00000.parquet.staged", _rows(9, "tU"))
    return root


def _index(tmp_path: Path, root: Path) -> tuple[CatalogIndex, WarehouseReader]:
    reader = WarehouseReader.from_url(root.as_uri())
    return CatalogIndex(tmp_path / "index.sqlite", reader.url), reader


def _files(index: CatalogIndex) -> set[tuple[str, str, str]]:
    return {(f.task.dataset, f.task.task, f.name) for f in index.load().files}


def test_only_committed_tasks_and_their_listed_files_are_indexed(tmp_path: Path, root: Path) -> None:
    index, reader = _index(tmp_path, root)
    report = index.refresh(reader)
    assert (report.added, report.tasks, report.files) == (2, 2, 3)
    assert _files(index) == {("dsA", "t1", "part-00000.parquet"), ("dsA", "t1", "part-00001.parquet"),
                             ("dsA", "t2", "part-00000.parquet")}  # fmt: skip
    # A part file the marker does not list is not indexed either.
    _write(root / partition("dsA", "t1"), "part-00009.parquet", _rows(11, "t1"))
    index.refresh(reader)
    assert ("dsA", "t1", "part-00009.parquet") not in _files(index)


def test_row_group_ranges_hold_every_key_of_their_row_group(tmp_path: Path, root: Path) -> None:
    index, reader = _index(tmp_path, root)
    index.refresh(reader)
    view = index.load()
    assert len(view.rg_file) == sum(pq.ParquetFile(root / partition("dsA", f.task.task) / f.name).num_row_groups
                                    for f in view.files) > 10  # fmt: skip
    ordinal: dict[int, int] = {}
    for i, file_index in enumerate(view.rg_file.tolist()):
        entry = view.files[file_index]
        group = ordinal.get(file_index, 0)
        ordinal[file_index] = group + 1
        path = root / partition(entry.task.dataset, entry.task.task) / entry.name
        table = pq.ParquetFile(path).read_row_group(group, columns=["run_number", "event_number", "lumi_block"])
        keys = pack(table.column(0).to_numpy(), table.column(1).to_numpy())
        assert view.rg_rows[i] == table.num_rows
        assert all(view.rg_lo[i] <= key <= view.rg_hi[i] for key in keys.tolist())
        assert view.rg_min_run[i] <= table.column(0).to_numpy().min() <= view.rg_max_run[i]
        lumi = table.column(2).to_numpy()
        assert view.rg_min_lumi[i] == lumi.min() and view.rg_max_lumi[i] == lumi.max()


def test_refresh_adds_new_commits_and_amendments_and_drops_deleted_tasks(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, reader = _index(tmp_path, root)
    index.refresh(reader)
    commit(root, "dsB", "t3", [4])
    amend(root, "dsA", "t2", 1, 5, partial=False)
    shutil.rmtree(root / partition("dsA", "t1"))
    report = index.refresh(reader)
    assert (report.added, report.amended, report.dropped) == (1, 1, 1)
    assert _files(index) == {("dsA", "t2", "part-00000.parquet"), ("dsA", "t2", "part-a0001-00000.parquet"),
                             ("dsB", "t3", "part-00000.parquet")}  # fmt: skip
    assert {t.task: t.partial for t in index.load().tasks} == {"t2": False, "t3": False}
    # Nothing new: no committed task's marker is read again (complete tasks cannot change); the
    # uncommitted task is asked for its marker again, as it may have committed since.
    read: list[tuple[str, str]] = []
    committed = reader.committed

    def counted(dataset: str, task: str) -> Any:
        read.append((dataset, task))
        return committed(dataset, task)

    monkeypatch.setattr(reader, "committed", counted)
    report = index.refresh(reader)
    assert (report.added, report.amended, report.dropped, read) == (0, 0, 0, [("dsA", "tV")])


def test_a_partial_task_is_probed_for_amendments_until_it_is_complete(tmp_path: Path, root: Path) -> None:
    index, reader = _index(tmp_path, root)
    index.refresh(reader)
    amend(root, "dsA", "t2", 1, 5, partial=True)
    assert index.refresh(reader).amended == 1
    amend(root, "dsA", "t2", 2, 6, partial=False)
    assert index.refresh(reader).amended == 1
    view = index.load()
    assert [g.number for g in view.tasks[1].generations] == [0, 1, 2]
    assert sorted(f.name for f in view.files if f.task.task == "t2") == [
        "part-00000.parquet", "part-a0001-00000.parquet", "part-a0002-00000.parquet"]  # fmt: skip


def test_refreshes_that_race_do_not_index_a_task_twice(tmp_path: Path, root: Path) -> None:
    index, reader = _index(tmp_path, root)
    stale = CatalogIndex(index.path, reader.url)
    stale._known = lambda: {}  # type: ignore[method-assign]  # it listed before the other refresh committed
    index.refresh(reader)
    stale.refresh(reader)
    assert len(index.load().files) == 3


def test_an_index_belongs_to_one_warehouse(tmp_path: Path, root: Path) -> None:
    index, _ = _index(tmp_path, root)
    index.close()
    with pytest.raises(CatalogIndexError, match="belongs to warehouse"):
        CatalogIndex(tmp_path / "index.sqlite", (tmp_path / "other").as_uri())
    assert default_index_path("file:///a") != default_index_path("file:///b")


def test_an_index_of_another_version_is_rebuilt(tmp_path: Path, root: Path) -> None:
    index, reader = _index(tmp_path, root)
    index.refresh(reader)
    index.close()
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        db.execute("UPDATE meta SET value = '0' WHERE key = 'version'")
    index, reader = _index(tmp_path, root)
    assert index.load().files == []
    assert index.refresh(reader).added == 2


def test_an_index_of_an_older_layout_is_rebuilt_in_the_new_one(tmp_path: Path, root: Path) -> None:
    index, reader = _index(tmp_path, root)
    index.refresh(reader)
    index.close()
    with sqlite3.connect(tmp_path / "index.sqlite") as db:  # version 2: no lumi null counts, no bit counts
        db.execute("DROP TABLE bit_counts")
        db.execute("ALTER TABLE row_groups DROP COLUMN lumi_nulls")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'version'")
    index, reader = _index(tmp_path, root)
    assert index.refresh(reader).added == 2
    view = index.load()
    assert (view.rg_lumi_nulls == 0).all() and view.stored_counts("l1_tav", [7])[0].all()


def _damaged(index: CatalogIndex) -> list[tuple[str, str, str]]:
    return [(d.dataset, d.task, d.reason) for d in index.load().damaged]


def test_a_marker_with_a_malformed_file_list_is_an_index_error(tmp_path: Path, root: Path) -> None:
    commit(root, "dsA", "t9", [7])
    (root / partition("dsA", "t9") / MARKER).write_text(json.dumps({"files": [{"name": "../x"}]}))
    index, reader = _index(tmp_path, root)
    assert index.refresh(reader).damaged == 1
    [(dataset, task, reason)] = _damaged(index)
    assert (dataset, task) == ("dsA", "t9") and "malformed" in reason
    with pytest.raises(CatalogIndexError, match=r"task t9 of dsA cannot be read.*malformed"):
        match_datasets(index.load(), ["dsA"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("[]", "is not a JSON object"),
        (json.dumps({"rows": 5_000}), "its list of part files is missing or malformed"),
        (json.dumps({"files": "oops"}), "its list of part files is missing or malformed"),
        (json.dumps({"files": [{"rows": 3}]}), "its list of part files is missing or malformed"),
    ],
    ids=["a-list", "no-files", "files-not-a-list", "a-file-without-a-name"],
)
def test_a_marker_that_is_not_a_commit_record_is_the_warehouses_error(
    tmp_path: Path, root: Path, marker: str, message: str
) -> None:
    """Found by fault-hunting: `[]` was an internal error (exit 1) in every question, and a marker without
    `files` was indexed as an empty task, its events gone from every answer with exit 0. The task is recorded as
    damaged (the others are indexed) and a question over its dataset is refused naming it."""
    commit(root, "dsA", "t9", [7])
    (root / partition("dsA", "t9") / MARKER).write_text(marker)
    index, reader = _index(tmp_path, root)
    assert index.refresh(reader).damaged == 1
    assert [(d, t) for d, t, _ in _damaged(index)] == [("dsA", "t9")] and message in _damaged(index)[0][2]
    with pytest.raises(CatalogIndexError, match=message):
        match_datasets(index.load(), ["dsA"])
