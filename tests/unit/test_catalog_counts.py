"""Trigger counts from the index's stored per-row-group bit counts, against counts done with numpy on the
rows the test wrote: ranges that take whole row groups and ranges that cut them (files read), masks all
null and partly null, rows without a lumi block, an uncommitted task, and a task committed after the index
was built. The counts are filled lazily: building the index reads no mask; the first count that needs a
mask column's counts of a file reads that column of that file and stores them; later counts reuse them;
a file rewritten since it was indexed is refused, a task dropped loses its counts."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from catalog.bits import parse_bits
from catalog.cli import main
from catalog.errors import CatalogIndexError
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


def _expected(tables: Sequence[pa.Table], runs: Range | None, lumi: Range | None, bits: str = BITS) -> dict[str, Any]:
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
    for spec in parse_bits(bits):
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


# ---------------------------------------------------------------- lazily filled counts


class _Reads:
    """The columns pyarrow reads from Parquet data pages (footers are not data), and the files the engine scans."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.columns: list[str] = []
        self.scanned: list[str] = []
        for method in ("read_row_group", "read_row_groups", "read", "iter_batches"):
            original = getattr(pq.ParquetFile, method)

            def spy(parquet: pq.ParquetFile, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                self.columns.extend(kwargs.get("columns") or ["<all>"])
                return _original(parquet, *args, **kwargs)

            monkeypatch.setattr(pq.ParquetFile, method, spy)

    def watch(self, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
        use_data = session.engine.use_data

        def spy(files: Any) -> None:
            self.scanned.extend(f"{f.task.task}/{f.name}" for f in files)
            use_data(files)

        monkeypatch.setattr(session.engine, "use_data", spy)

    def clear(self) -> None:
        self.columns.clear()
        self.scanned.clear()


def _stored(session: Session) -> dict[str, set[str]]:
    """mask column -> the files (task/name) the index holds bit counts of, each for every row group."""
    rows = session.index.db.execute(
        "SELECT b.mask, t.task, f.name, count(*), (SELECT count(*) FROM row_groups r WHERE r.file_id = f.id) "
        "FROM bit_counts b JOIN files f ON f.id = b.file_id JOIN tasks t ON t.id = f.task_id "
        "GROUP BY b.mask, f.id"
    ).fetchall()
    assert all(groups == every for *_, groups, every in rows)
    found: dict[str, set[str]] = {}
    for mask, task, name, _, _ in rows:
        found.setdefault(mask, set()).add(f"{task}/{name}")
    return found


def _ask(session: Session, datasets: list[str], bits: str) -> dict[str, Any]:
    document: dict[str, Any] = count(session, datasets, parse_bits(bits), None, None, False).document()
    return {"scanned": document["scanned"], "counts": [b["events"] for b in document["bits"]]}


def test_counts_are_filled_by_the_first_count_that_needs_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "wh"
    a = [_rows(1, "t1", 1000, null_lumi=True), _rows(2, "t1", 1000)]
    _write(root, "dsA", "t1", a)
    b = [_rows(3, "t2", 1000)]
    _write(root, "dsB", "t2", b)
    _write(root, "dsA", "tV", [_rows(10, "tV", 1000)], marker=False)  # not committed
    reads = _Reads(monkeypatch)
    with Session(root.as_uri(), index_path=tmp_path / "index.sqlite") as session:
        assert session.refresh().files == 3
        # Building the index reads footers only: no data page, no stored count.
        assert reads.columns == [] and _stored(session) == {}
        reads.watch(session, monkeypatch)
        l1 = "l1_tav:0,l1_tav:7,l1_tav:100"
        assert _ask(session, ["dsA"], l1) == _expected(a, None, None, l1)
        groups = {t: pq.ParquetFile(root / partition(d, t.split("/")[0]) / t.split("/")[1]).num_row_groups
                  for d, t in (("dsA", "t1/part-00000.parquet"), ("dsA", "t1/part-00001.parquet"),
                               ("dsB", "t2/part-00000.parquet"))}  # fmt: skip
        t1_groups = groups["t1/part-00000.parquet"] + groups["t1/part-00001.parquet"]
        assert Counter(reads.columns) == {"l1_tav": t1_groups} and reads.scanned == []
        assert _stored(session) == {"l1_tav": {"t1/part-00000.parquet", "t1/part-00001.parquet"}}
        # Later counts of that column in those files read nothing, whatever the bits.
        reads.clear()
        assert _ask(session, ["dsA"], "l1_tav:3,l1_tav:21") == _expected(a, None, None, "l1_tav:3,l1_tav:21")
        assert reads.columns == [] and reads.scanned == []
        # Another column, and another dataset: only what the index lacks is read.
        reads.clear()
        both = "l1_tav:7,hlt_passed_physics:3"
        assert _ask(session, ["*"], both) == _expected(a + b, None, None, both)
        t2_groups = groups["t2/part-00000.parquet"]
        assert Counter(reads.columns) == {"hlt_passed_physics": t1_groups + t2_groups, "l1_tav": t2_groups}
        assert reads.scanned == []
        assert _stored(session) == {
            "l1_tav": {"t1/part-00000.parquet", "t1/part-00001.parquet", "t2/part-00000.parquet"},
            "hlt_passed_physics": {"t1/part-00000.parquet", "t1/part-00001.parquet", "t2/part-00000.parquet"},
        }
        # A task committed after those counts gets its own at the next count; nothing else is read again.
        c = [_rows(4, "t3", 1000)]
        _write(root, "dsA", "t3", c)
        session.refresh()
        assert "t3/part-00000.parquet" not in _stored(session).get("l1_tav", set())
        reads.clear()
        assert _ask(session, ["dsA"], l1) == _expected(a + c, None, None, l1)
        assert reads.columns == ["l1_tav"] * pq.ParquetFile(root / partition("dsA", "t3") / part_name(0)).num_row_groups
        assert "t3/part-00000.parquet" in _stored(session)["l1_tav"] and reads.scanned == []
        assert not any("tV/" in name for names in _stored(session).values() for name in names)


def test_a_file_rewritten_since_it_was_indexed_is_not_counted(tmp_path: Path) -> None:
    root = tmp_path / "wh"
    _write(root, "dsA", "t1", [_rows(1, "t1", 1000)])
    with Session(root.as_uri(), index_path=tmp_path / "index.sqlite") as session:
        session.refresh()
        # The task deleted and loaded again under the same name, other rows: the index still describes the old file.
        shutil.rmtree(root / partition("dsA", "t1"))
        again = [_rows(5, "t1", 1000)]
        _write(root, "dsA", "t1", again)
        with pytest.raises(CatalogIndexError, match=r"changed since it was indexed.*--rebuild"):
            _ask(session, ["dsA"], "l1_tav:7")
        assert _stored(session) == {}
    with Session(root.as_uri(), index_path=tmp_path / "index.sqlite") as session:
        session.index.clear()  # ei-catalog index --rebuild
        assert _ask(session, ["dsA"], "l1_tav:7,l1_tav:0") == _expected(again, None, None, "l1_tav:7,l1_tav:0")


def test_a_task_dropped_from_the_index_drops_its_counts(tmp_path: Path) -> None:
    root = tmp_path / "wh"
    first = [_rows(1, "t1", 1000)]
    _write(root, "dsA", "t1", first)
    _write(root, "dsA", "t2", [_rows(2, "t2", 1000)])
    with Session(root.as_uri(), index_path=tmp_path / "index.sqlite") as session:
        assert _ask(session, ["dsA"], "l1_tav:7")["counts"][0] > 0
        old = {fid for (fid,) in session.index.db.execute("SELECT id FROM files")}
        shutil.rmtree(root / partition("dsA", "t1"))
        assert session.refresh().dropped == 1
        assert _stored(session) == {"l1_tav": {"t2/part-00000.parquet"}}
        # Loaded again under the same name: a new file row (ids are never reused), counted afresh.
        again = [_rows(5, "t1", 1000)]
        _write(root, "dsA", "t1", again)
        session.refresh()
        new = {fid for (fid,) in session.index.db.execute("SELECT id FROM files")} - old
        assert len(new) == 1 and min(new) > max(old)
        assert _ask(session, ["dsA"], "l1_tav:7,l1_tav:1") == _expected(
            [*again, _rows(2, "t2", 1000)], None, None, "l1_tav:7,l1_tav:1"
        )


def test_the_index_command_and_lookups_store_no_counts_and_a_count_stores_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "wh"
    rows = [_rows(1, "t1", 1000)]
    _write(root, "dsA", "t1", rows)
    index = tmp_path / "index.sqlite"
    common = ["--warehouse", root.as_uri(), "--index", str(index), "--format", "json"]

    def stored() -> list[str]:
        with sqlite3.connect(index) as db:
            return [mask for (mask,) in db.execute("SELECT DISTINCT mask FROM bit_counts ORDER BY mask")]

    assert main(["index", *common]) == 0
    key = f"{rows[0].column('run_number')[0]}:{rows[0].column('event_number')[0]}"
    assert main(["lookup", *common, "--event", key]) == 0
    assert stored() == []
    capsys.readouterr()
    assert main(["count", *common, "--dataset", "dsA", "--bits", "l1_tbp:21,l1_tbp:3"]) == 0
    document = json.loads(capsys.readouterr().out)
    want = _expected(rows, None, None, "l1_tbp:21,l1_tbp:3")
    assert [b["events"] for b in document["bits"]] == want["counts"] and document["scanned"] == want["scanned"]
    assert stored() == ["l1_tbp"]


# ---------------------------------------------------------------- found by fault-hunting (hunt-cat)


def test_a_task_loaded_again_under_the_same_name_is_indexed_again(tmp_path: Path, capsys: Any) -> None:
    """A task deleted and loaded again under the same name (a new marker, other events), the index only refreshed:
    stored counts were the old task's and its new events were not found, with exit 0. The refresh finds the
    task's directory changed and its marker another, and indexes it again (its old counts dropped)."""
    root = tmp_path / "wh"
    first = [_rows(1, "t1", 1000)]
    _write(root, "dsA", "t1", first)
    _write(root, "dsB", "t2", [_rows(2, "t2", 1000)])
    common = ["--warehouse", root.as_uri(), "--index", str(tmp_path / "index.sqlite"), "--format", "json"]

    def counted(*more: str) -> dict[str, Any]:
        assert main(["count", *common, "--dataset", "dsA", "--bits", "l1_tav:7,l1_tav:1", *more]) == 0
        document = json.loads(capsys.readouterr().out)
        return {"scanned": document["scanned"], "counts": [b["events"] for b in document["bits"]]}

    assert counted() == _expected(first, None, None, "l1_tav:7,l1_tav:1")
    shutil.rmtree(root / partition("dsA", "t1"))
    again = [_rows(5, "t1", 1000)]
    _write(root, "dsA", "t1", again)
    assert counted() == _expected(again, None, None, "l1_tav:7,l1_tav:1") == counted("--scan")
    key = f"{again[0].column('run_number')[0]}:{again[0].column('event_number')[0]}"
    assert main(["lookup", *common, "--event", key]) == 0
    assert json.loads(capsys.readouterr().out)["found"] == 1
    assert main(["index", *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["added"], report["reindexed"], report["tasks"]) == (0, 0, 2)


def test_a_file_rewritten_after_its_counts_were_stored_is_refused(tmp_path: Path) -> None:
    """A part file rewritten in place under the same marker after its counts were stored: they were added as the
    file's, silently (only a file whose counts were still to be filled was checked). Each file whose stored counts
    a count adds must still have the size and time it was indexed with (docs/catalog.md)."""
    root = tmp_path / "wh"
    _write(root, "dsA", "t1", [_rows(1, "t1", 1000)])
    with Session(root.as_uri(), index_path=tmp_path / "index.sqlite") as session:
        assert _ask(session, ["dsA"], "l1_tav:7")["counts"][0] > 0
    part = root / partition("dsA", "t1") / part_name(0)
    with part.open("r+b") as out:  # in place: the directory does not change
        out.truncate(0)
        pq.write_table(_rows(5, "t1", 1000), out, row_group_size=ROW_GROUP, compression="zstd")
    with Session(root.as_uri(), index_path=tmp_path / "index.sqlite") as session:
        with pytest.raises(CatalogIndexError, match=rf"{part} changed since it was indexed.*--rebuild"):
            _ask(session, ["dsA"], "l1_tav:7")
        session.refresh(rebuild=True)
        assert _ask(session, ["dsA"], "l1_tav:7") == _expected([_rows(5, "t1", 1000)], None, None, "l1_tav:7")


class _ObjectStore(pafs.FileSystemHandler):  # type: ignore[misc]
    """The local filesystem as an object store lists it: directories without a modification time (S3)."""

    def __init__(self) -> None:
        self.fs = pafs.LocalFileSystem()

    def _info(self, info: pafs.FileInfo) -> pafs.FileInfo:
        if info.type == pafs.FileType.Directory:
            return pafs.FileInfo(info.path, info.type)
        return info

    def get_type_name(self) -> str:
        return "object-store"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return [self._info(info) for info in self.fs.get_file_info(paths)]

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return [self._info(info) for info in self.fs.get_file_info(selector)]

    def open_input_stream(self, path: str) -> Any:
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        return self.fs.open_input_file(path)

    def equals(self, other: Any) -> bool:
        return self is other

    def _unused(self, *args: Any) -> Any:
        raise NotImplementedError

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _unused
    move = copy_file = open_output_stream = open_append_stream = _unused


def _object_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions opened on `root` read it as an object store (S3) lists it, and through pyarrow as DuckDB reads a
    remote warehouse (an Arrow dataset it scans)."""
    from eventindex.store.local import LocalStore
    from eventindex.warehouse import WarehouseReader

    opened = WarehouseReader.from_url

    def from_url(url: str, **options: Any) -> WarehouseReader:
        if url != root.as_uri():
            return opened(url, **options)
        fs = pafs.PyFileSystem(_ObjectStore())
        return WarehouseReader(url, fs, str(root), LocalStore(root), renames=False)

    monkeypatch.setattr(WarehouseReader, "from_url", staticmethod(from_url))


def test_a_task_loaded_again_is_found_on_an_object_store_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where directories have no modification time (S3), the refresh compares the names, sizes and times of the
    objects under each task's directory."""
    root = tmp_path / "wh"
    _write(root, "dsA", "t1", [_rows(1, "t1", 1000)])
    _write(root, "dsA", "t2", [_rows(2, "t2", 1000)])
    _object_store(root, monkeypatch)
    with Session(root.as_uri(), index_path=tmp_path / "index.sqlite") as session:
        assert not isinstance(session.reader.fs, pafs.LocalFileSystem)
        assert _ask(session, ["dsA"], "l1_tav:7")["counts"][0] > 0
        read: list[str] = []
        committed = session.reader.committed

        def reading(dataset: str, task: str) -> Any:
            read.append(task)
            return committed(dataset, task)

        monkeypatch.setattr(session.reader, "committed", reading)
        report = session.refresh()  # nothing changed: no marker read again
        assert (report.added, report.amended, report.dropped, report.tasks) == (0, 0, 0, 2)
        assert read == []
        shutil.rmtree(root / partition("dsA", "t1"))
        again = [_rows(5, "t1", 1000)]
        _write(root, "dsA", "t1", again)
        report = session.refresh()
        assert _ask(session, ["dsA"], "l1_tav:7,l1_tav:1") == _expected(
            [*again, _rows(2, "t2", 1000)], None, None, "l1_tav:7,l1_tav:1"
        )
        assert report.reindexed == 1 and read == ["t1"]


def test_a_part_file_pyarrow_cannot_open_is_the_warehouses_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On S3 a committed part file deleted gave `internal error: OSError ... reading the stream registered as
    'ei_files' failed` (exit 1) for count --scan and --overlap on DuckDB: pyarrow's IOError is an OSError, not an
    ArrowException. It is the warehouse's error (exit 4), naming the file."""
    from eventindex.errors import WarehouseError

    root = tmp_path / "wh"
    _write(root, "dsA", "t1", [_rows(1, "t1", 1000), _rows(2, "t1", 1000)])
    _object_store(root, monkeypatch)
    with Session(root.as_uri(), index_path=tmp_path / "index.sqlite") as session:
        session.view()
        part = root / partition("dsA", "t1") / part_name(1)
        part.unlink()  # after the index was read: the engine finds it missing
        for scan, overlap in ((True, False), (False, True)):
            with pytest.raises(WarehouseError, match=rf"DuckDB cannot read a data file: .*{part}"):
                count(session, ["dsA"], parse_bits("l1_tav:7,l1_tav:1"), None, None, overlap, scan)
