"""`ei-catalog` on the command line: the three formats agree, 100,000 events in one call, bad input gets
one line and exit 2, an empty answer exits 0."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from catalog.cli import main
from supersink.ledger import Ledger
from tests import catalog_expected as expected
from tests.catalog_fixtures import catalog_case
from tests.catalog_warehouse import CatalogCase

__all__ = ["catalog_case"]  # fixture
ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("duckdb")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-index") / "index.sqlite"


def ask(capsys: pytest.CaptureFixture[str], case: CatalogCase, index: Path, *args: str) -> tuple[int, str, str]:
    code = main([args[0], "--warehouse", case.url, "--index", str(index), *args[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def test_lookup_in_three_formats(capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, index: Path) -> None:
    keys = expected.sample_keys(catalog_case, 7, 5)
    events = [f"{r}:{e}" for r, e in keys] + ["1:1"]
    code, out, err = ask(capsys, catalog_case, index, "lookup", "--event", *events, "--format", "json")
    assert code == 0 and err == ""
    document = json.loads(out)
    want = expected.lookup(catalog_case, keys, ["dsA", "dsB"])
    assert {(e["run_number"], e["event_number"]) for e in document["events"]} == set(want["found"])
    assert document["not_found"] == [{"run_number": 1, "event_number": 1}]
    code, out, _ = ask(capsys, catalog_case, index, "lookup", "--event", *events, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    references = [
        (int(r["run_number"]), int(r["event_number"]), r["task"], r["stream"], r["guid"], int(r["oid2"]))
        for r in rows
        if r["status"] == "found"
    ]
    assert sorted(references) == sorted(
        (e["run_number"], e["event_number"], c["task"], p["stream"], p["guid"], p["oid2"])
        for e in document["events"]
        for c in e["copies"]
        for p in c["provenance"]
    )
    assert [r["status"] for r in rows].count("not found") == 1
    code, out, _ = ask(capsys, catalog_case, index, "lookup", "--event", ",".join(events))
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["status", "run_number", "event_number"]
    assert len(lines) == 2 + len(rows)


def test_a_pick_of_100000_events_in_one_call(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, index: Path, tmp_path: Path
) -> None:
    committed = catalog_case.events()
    keys = set(
        zip(committed.column("run_number").to_pylist(), committed.column("event_number").to_pylist(), strict=True)
    )
    rng = np.random.default_rng(3)
    runs, events = rng.integers(1, 400_000, 100_000 - len(keys)), rng.integers(0, 2**62, 100_000 - len(keys))
    wanted = sorted(keys | {(int(r), int(e)) for r, e in zip(runs, events, strict=True)})
    listing = tmp_path / "events.txt"
    listing.write_text("# run:event\n" + "\n".join(f"{r}:{e}" for r, e in wanted) + "\n")
    code, out, err = ask(capsys, catalog_case, index, "lookup", "--events-file", str(listing), "--format", "json")
    assert code == 0 and err == ""
    document = json.loads(out)
    assert document["requested"] == len(wanted) == 100_000
    want = expected.lookup(catalog_case, wanted, ["dsA", "dsB"])
    assert document["found"] == len(want["found"]) and len(document["not_found"]) == len(want["missing"])
    assert document["copies"] == sum(len(c) for c in want["found"].values())


def test_count_overlap_and_duplicates_formats_agree(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, index: Path
) -> None:
    args = ["count", "--dataset", "ds*", "--bits", "l1_tav:7,l1_tbp:14", "--overlap"]
    _, out, _ = ask(capsys, catalog_case, index, *args, "--format", "json")
    document = json.loads(out)
    _, out, _ = ask(capsys, catalog_case, index, *args, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["events"]) for r in rows] == [b["events"] for b in document["bits"]]
    assert [[int(r["l1_tav:7"]), int(r["l1_tbp:14"])] for r in rows] == document["overlap"]["events"]
    want = expected.count(catalog_case, ["dsA", "dsB"], [("l1_tav", 7), ("l1_tbp", 14)])
    assert document["overlap"]["events"] == want["pairs"]
    counts = [ask(capsys, catalog_case, index, *args[:-1], *scan, "--format", "json") for scan in ([], ["--scan"])]
    assert [(code, json.loads(out)["bits"]) for code, out, _ in counts] == [(0, document["bits"])] * 2
    code, out, _ = ask(capsys, catalog_case, index, "overlap", "--datasets", "dsA,dsB", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    matrix = [[int(r["events"]), int(r["dsA"]), int(r["dsB"])] for r in rows]
    want_matrix = expected.dataset_overlap(catalog_case, ["dsA", "dsB"])
    assert code == 0 and matrix == [[want_matrix[i][i], *want_matrix[i]] for i in range(2)]
    code, out, _ = ask(capsys, catalog_case, index, "duplicates", "--dataset", "dsA", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len({(r["run_number"], r["event_number"]) for r in rows}) == 1_500 + 250
    assert {r["loaded"] for r in rows} == {"true", "false"}


def test_the_index_command(capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, tmp_path: Path) -> None:
    code, out, _ = ask(capsys, catalog_case, tmp_path / "i.sqlite", "index", "--format", "json")
    report = json.loads(out)
    assert code == 0 and (report["added"], report["tasks"]) == (7, 7)
    code, out, _ = ask(capsys, catalog_case, tmp_path / "i.sqlite", "index", "--rebuild", "--format", "json")
    assert json.loads(out)["added"] == 7


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lookup", "--event", "12"], "is not RUN:EVENT"),
        (["lookup", "--event", "-1:5"], "'-1:5' is not RUN:EVENT"),
        (["lookup", "--event", ""], "'' is not RUN:EVENT"),
        (["lookup", "--event", "1:2,,3:4"], "'' is not RUN:EVENT"),
        (["lookup", "--event", "\u0661:\u0662"], "is not RUN:EVENT"),
        (["lookup", "--event", "1:2", "-3:-4"], "'-3:-4' is not RUN:EVENT"),
        (["lookup", "--event", "1:99999999999999999999"], "out of range"),
        (["lookup", "--event", "4294967296:1"], "out of range"),
        (["lookup"], "give --event"),
        (["lookup", "--event", "1:1", "--dataset", "nope*"], "no committed task"),
        (["count", "--dataset", "dsA", "--bits", "l1_tav:600"], "out of range"),
        (["count", "--dataset", "dsA", "--bits", "l1_tav:-1"], "out of range"),
        (["count", "--dataset", "dsA", "--bits", "l1_tav:1", "--runs", "9-3"], "--runs"),
        (["count", "--dataset", "dsA", "--bits", "l1_tav:1", "--lumi", "x"], "--lumi"),
        (["count", "--dataset", "dsA", "--bits", "l1_tav:1", "--runs", "\u0663-\u0665"], "--runs"),
        (["count", "--dataset", "dsZ", "--bits", "l1_tav:1"], "no committed task"),
        (["overlap", "--datasets", "dsA,dsQ"], "dsQ"),
        (["duplicates", "--dataset", "x"], "no committed task"),
        (["lookup", "--event", "1:1", "--master", "local[2]"], "--engine spark"),
        (["lookup", "--event", "1:1", "--spark-reader", "arrow"], "--engine spark"),
        (["lookup", "--event", "1:1", "--engine", "spark", "--spark-reader", "jdbc"], "invalid choice"),
        (["lookup", "--event", "1:1", "--format", "xml"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, index: Path, args: list[str], message: str
) -> None:
    code, out, err = ask(capsys, catalog_case, index, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err


def test_a_malformed_events_file_names_its_line(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, index: Path, tmp_path: Path
) -> None:
    listing = tmp_path / "events.txt"
    listing.write_text("1:1\n\n2:2  # a comment\nthree:3\n")
    code, _, err = ask(capsys, catalog_case, index, "lookup", "--events-file", str(listing))
    assert code == 2 and "line 4" in err and err.count("\n") == 1
    code, _, err = ask(capsys, catalog_case, index, "lookup", "--events-file", str(tmp_path / "none.txt"))
    assert code == 2 and "cannot read" in err
    binary = tmp_path / "events.bin"
    binary.write_bytes(b"1:1\n\xff\xfe\x00")
    code, _, err = ask(capsys, catalog_case, index, "lookup", "--events-file", str(binary))
    assert code == 2 and err.count("\n") == 1 and "not a text file (byte 4 is not UTF-8)" in err, err


def test_empty_answers_exit_0(capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, index: Path) -> None:
    code, out, _ = ask(capsys, catalog_case, index, "lookup", "--event", "1:1", "--format", "json")
    assert code == 0 and json.loads(out)["found"] == 0
    code, out, _ = ask(capsys, catalog_case, index, "count", "--dataset", "*", "--bits", "l1_tav:7", "--runs", "1-9",
                       "--format", "json")  # fmt: skip
    assert code == 0 and json.loads(out)["scanned"] == 0
    code, out, _ = ask(capsys, catalog_case, index, "duplicates", "--dataset", "dsB", "--format", "csv")
    assert code == 0 and out.strip().startswith('"run_number"') and len(out.splitlines()) == 1


def test_a_missing_or_empty_warehouse_is_named_and_nothing_is_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "typo"
    for command in (["lookup", "--event", "1:2"], ["index"]):
        code = main([command[0], "--warehouse", missing.as_uri(), "--index", str(tmp_path / "i.sqlite"), *command[1:]])
        _, err = capsys.readouterr()
        assert code == 2 and err.count("\n") == 1 and "no such directory" in err, err
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["lookup", "--warehouse", empty.as_uri(), "--index", str(tmp_path / "i.sqlite"), "--event", "1:2"])
    _, err = capsys.readouterr()
    assert code == 2 and "holds no committed task" in err and "dataset '*'" not in err, err


def test_a_damaged_data_file_is_the_warehouses_error_in_every_question(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, tmp_path: Path
) -> None:
    """A part file overwritten after it was indexed: lookup and count both exit 4 with one line."""
    import shutil

    root = tmp_path / "wh"
    shutil.copytree(Path(catalog_case.warehouse.root), root)
    index = str(tmp_path / "i.sqlite")
    assert main(["index", "--warehouse", root.as_uri(), "--index", index]) == 0
    capsys.readouterr()
    for part in root.rglob("*.parquet"):
        part.write_bytes(b"not parquet any more" * 100)
    run, event = expected.sample_keys(catalog_case, 3, 1)[0]
    for question in (["lookup", "--event", f"{run}:{event}"], ["count", "--dataset", "*", "--bits", "l1_tav:1",
                                                                "--scan"]):  # fmt: skip
        code = main([question[0], "--warehouse", root.as_uri(), "--index", index, *question[1:]])
        out, err = capsys.readouterr()
        assert code == 4 and out == "" and err.count("\n") == 1, (question, code, err)


def test_the_console_script_gives_one_line_not_a_traceback(catalog_case: CatalogCase, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "catalog.cli", "lookup", "--warehouse", "http://example.org/x", "--event", "1:1"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert run.returncode == 2 and run.stdout == "" and run.stderr.count("\n") == 1, run.stderr
    assert "scheme" in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "catalog.cli", "count", "--warehouse", catalog_case.url, "--index",
         str(tmp_path / "i.sqlite"), "--dataset", "dsA", "--bits", "hlt_passed_physics:3", "--format", "json"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (
        json.loads(run.stdout)["bits"][0]["events"]
        == expected.count(catalog_case, ["dsA"], [("hlt_passed_physics", 3)])["counts"][0]
    )


def test_an_index_path_that_is_not_an_index_is_refused_unchanged(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, tmp_path: Path
) -> None:
    """`--index` pointed at a supersink ledger (or any SQLite file of other tables) is refused before anything
    is written into it (it used to gain the index's tables, and lose its own `tasks` at an index-format change);
    a directory that does not exist is not created."""
    ledger_path = tmp_path / "ledger.db"
    Ledger(ledger_path).close()
    before = ledger_path.read_bytes()
    for command in (["index"], ["lookup", "--event", "1:1"], ["index", "--rebuild"]):
        code, out, err = ask(capsys, catalog_case, ledger_path, *command)
        assert code == 2 and out == "", err
        assert err.count("\n") == 1 and f"{ledger_path} is not an ei-catalog index (it holds the tables " in err
        assert ledger_path.read_bytes() == before
    assert not ledger_path.with_name("ledger.db-wal").exists()

    code, _, err = ask(capsys, catalog_case, tmp_path / "typo" / "i.sqlite", "index")
    assert code == 2 and "directory" in err and "does not exist" in err
    assert not (tmp_path / "typo").exists()

    code, out, err = ask(capsys, catalog_case, tmp_path / "i.sqlite", "index", "--format", "json")
    assert code == 0 and json.loads(out)["added"] == 7, err
    code, out, err = ask(capsys, catalog_case, tmp_path / "i.sqlite", "index", "--format", "json")
    assert code == 0 and json.loads(out)["tasks"] == 7, "an index of its own is opened again"


# ---------------------------------------------------------------- found by fault-hunting (hunt-cat)


def _copy(case: CatalogCase, tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "wh"
    shutil.copytree(Path(case.warehouse.root), root)
    return root


def _in(case: CatalogCase, dataset: str) -> tuple[int, int]:
    """A key held in `dataset` only."""
    events = case.events().to_pylist()
    elsewhere = {(r["run_number"], r["event_number"]) for r in events if r["dataset"] != dataset}
    return next(
        (r["run_number"], r["event_number"])
        for r in events
        if r["dataset"] == dataset and (r["run_number"], r["event_number"]) not in elsewhere
    )


def test_a_damaged_task_fails_only_the_questions_over_its_dataset(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, tmp_path: Path
) -> None:
    """One damaged committed task (its marker not JSON; another with a listed part file missing) failed every
    question with exit 4, about other datasets too: the refresh stopped at the first task it could not read. Now
    the others are indexed and answered; a question over its dataset exits 4 naming it, never a partial answer."""
    import shutil

    root = _copy(catalog_case, tmp_path)
    dsb = root / "dataset=dsB"
    shutil.copytree(dsb / "task=t7", dsb / "task=t8")
    (dsb / "task=t8" / "_SUCCESS.json").write_text('{"files": [\n')
    shutil.copytree(dsb / "task=t7", dsb / "task=t9")
    (dsb / "task=t9" / "part-00000.parquet").unlink()
    index = tmp_path / "i.sqlite"

    def run(*args: str) -> tuple[int, str, str]:
        code = main([args[0], "--warehouse", root.as_uri(), "--index", str(index), *args[1:]])
        out, err = capsys.readouterr()
        return code, out, err

    run_a, event_a = _in(catalog_case, "dsA")
    refused = [
        ["lookup", "--event", f"{run_a}:{event_a}"],  # every dataset
        ["count", "--dataset", "ds*", "--bits", "l1_tav:7"],
        ["overlap", "--datasets", "dsA,dsB"],
        ["duplicates", "--dataset", "dsB"],
    ]
    for no_refresh in ([], ["--no-refresh"]):  # as refreshed now, then as the index recorded it
        code, out, err = run("lookup", "--dataset", "dsA", "--event", f"{run_a}:{event_a}", "--format", "json",
                             *no_refresh)  # fmt: skip
        assert (code, err, json.loads(out)["found"]) == (0, "", 1), err
        code, out, err = run("count", "--dataset", "dsA", "--bits", "l1_tav:7", "--format", "json", *no_refresh)
        want = expected.count(catalog_case, ["dsA"], [("l1_tav", 7)])
        assert (code, json.loads(out)["bits"][0]["events"]) == (0, want["counts"][0]), err
        code, out, err = run("duplicates", "--dataset", "dsA", "--format", "json", *no_refresh)
        assert code == 0 and json.loads(out)["events"] == 1_500 + 250, err
        for question in refused:
            code, out, err = run(*question, *no_refresh)
            assert code == 4 and out == "" and err.count("\n") == 1, (question, code, err)
            assert "task t8 of dsB cannot be read" in err and "is not JSON" in err, err
            assert "(and 1 more damaged task)" in err, err
        code, out, err = run("index", "--format", "json")
        assert code == 4 and out == "" and err.count("\n") == 1 and "task t8 of dsB" in err, err
    # Repaired (the damaged tasks deleted): every question is answered again.
    shutil.rmtree(dsb / "task=t8")
    shutil.rmtree(dsb / "task=t9")
    code, out, err = run("index", "--format", "json")
    assert code == 0 and (json.loads(out)["damaged"], json.loads(out)["tasks"]) == (0, 7), err
    code, out, err = run("lookup", "--event", f"{run_a}:{event_a}", "--format", "json")
    assert code == 0 and json.loads(out)["found"] == 1, err


def test_a_missing_part_file_of_an_indexed_task_is_named(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, tmp_path: Path
) -> None:
    """A committed part file deleted after its counts were stored: they were still added, exit 0, as if the file
    were there. The refresh finds the task's directory changed and the file missing (the task is damaged), and
    without a refresh the count finds it missing: exit 4 naming it; the other dataset is answered."""
    root = _copy(catalog_case, tmp_path)
    common = ["--warehouse", root.as_uri(), "--index", str(tmp_path / "i.sqlite")]
    assert main(["count", *common, "--dataset", "dsB", "--bits", "l1_tav:7"]) == 0
    part = root / "dataset=dsB" / "task=t7" / "part-00000.parquet"
    part.unlink()
    capsys.readouterr()
    for no_refresh, reason in ((["--no-refresh"], f"committed part file {part} is missing"),
                               ([], f"task t7 of dsB cannot be read, so no answer over dsB would be whole: cannot "
                                    f"index the Parquet file {part}: it is missing")):  # fmt: skip
        code = main(["count", *common, "--dataset", "dsB", "--bits", "l1_tav:7", *no_refresh])
        out, err = capsys.readouterr()
        assert code == 4 and out == "" and err.count("\n") == 1 and reason in err, err
    code = main(["count", *common, "--dataset", "dsA", "--bits", "l1_tav:7"])
    assert code == 0, capsys.readouterr().err


def test_a_rebuild_that_fails_keeps_the_index(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`index --rebuild` emptied the index and committed that before reading the warehouse: a rebuild that then
    failed left an empty index, and readers with --no-refresh saw none of the warehouse meanwhile. The rebuild is
    one transaction: readers see the old index until the new one is complete."""
    import sqlite3

    from eventindex.errors import WarehouseError
    from eventindex.warehouse import WarehouseReader

    index = tmp_path / "i.sqlite"
    common = ["--warehouse", catalog_case.url, "--index", str(index)]
    assert main(["index", *common]) == 0
    seen: list[int] = []
    committed = WarehouseReader.committed

    def reading(reader: WarehouseReader, dataset: str, task: str) -> Any:
        if not seen:  # what a reader sees while the rebuild reads the warehouse
            with contextlib.closing(sqlite3.connect(index)) as other:
                seen.append(other.execute("SELECT count(*) FROM tasks").fetchone()[0])
        return committed(reader, dataset, task)

    monkeypatch.setattr(WarehouseReader, "committed", reading)
    assert main(["index", *common, "--rebuild"]) == 0
    assert seen and set(seen) == {7}  # (read on several threads)

    def unlisted(reader: WarehouseReader) -> list[str]:
        raise WarehouseError(f"cannot list {reader.root}: connection refused")

    monkeypatch.setattr(WarehouseReader, "datasets", unlisted)
    capsys.readouterr()
    assert main(["index", *common, "--rebuild"]) == 4
    assert "connection refused" in capsys.readouterr().err
    key = expected.sample_keys(catalog_case, 2, 1)[0]
    code = main(["lookup", *common, "--no-refresh", "--event", f"{key[0]}:{key[1]}", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["found"] == 1, err


def test_no_refresh_on_an_index_never_built_says_so(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, tmp_path: Path
) -> None:
    """It said "the warehouse holds no committed task" (exit 2), and created the file."""
    index = tmp_path / "i.sqlite"
    code, out, err = ask(capsys, catalog_case, index, "lookup", "--no-refresh", "--event", "1:1")
    assert code == 4 and out == "" and err.count("\n") == 1, err
    assert f"index {index} was never built: build it with ei-catalog index" in err, err
    assert not index.exists()


@pytest.fixture
def read_only(tmp_path: Path) -> Any:
    """Makes a file read-only for this process (root too: immutable), and writable again at the end."""
    made: list[Path] = []

    def make(path: Path) -> None:
        path.chmod(0o444)
        made.append(path)
        root = os.access(path, os.W_OK)  # permissions do not apply to root: the file is made immutable
        if root and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a file read-only for root here (chattr)")

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        path.chmod(0o644)


def test_no_refresh_answers_from_a_read_only_index(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, tmp_path: Path, read_only: Any
) -> None:
    """A read-only index file was an internal error (exit 1, "attempt to write a readonly database") even with
    --no-refresh: opening it wrote. Now --no-refresh answers from it (counts it holds none of are read from the
    files, not stored), and a refresh is refused in one line (exit 4)."""
    index = tmp_path / "i.sqlite"
    assert ask(capsys, catalog_case, index, "index")[0] == 0
    read_only(index)
    key = _in(catalog_case, "dsB")
    code, out, err = ask(capsys, catalog_case, index, "lookup", "--no-refresh", "--event", f"{key[0]}:{key[1]}",
                         "--format", "json")  # fmt: skip
    assert code == 0 and json.loads(out)["found"] == 1, err
    code, out, err = ask(capsys, catalog_case, index, "count", "--no-refresh", "--dataset", "*", "--bits",
                         "l1_tav:7,l1_tbp:14", "--format", "json")  # fmt: skip
    want = expected.count(catalog_case, ["dsA", "dsB"], [("l1_tav", 7), ("l1_tbp", 14)])
    assert code == 0 and [b["events"] for b in json.loads(out)["bits"]] == want["counts"], err
    for command in (["lookup", "--event", "1:1"], ["index"]):
        code, out, err = ask(capsys, catalog_case, index, *command)
        assert code == 4 and out == "" and err.count("\n") == 1, err
        assert f"index {index} is read-only: it cannot be brought up to date" in err, err


def test_bit_numbers_are_ascii_digits(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, index: Path
) -> None:
    """`l1_tav:²` was an internal error (int() refused what str.isdigit took) and `l1_tav:٣` counted bit 3."""
    for bits in ("l1_tav:\u00b2", "l1_tav:\u0663", "l1_tav:+\u0663"):
        code, out, err = ask(capsys, catalog_case, index, "count", "--dataset", "dsA", "--bits", bits)
        assert code == 2 and out == "" and err.count("\n") == 1 and "digits 0-9" in err, (bits, err)


def test_a_bit_asked_for_several_times_is_counted_once(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, index: Path
) -> None:
    """The same bit three times with --overlap gave a matrix with a column too few (the labels collided)."""
    args = ["count", "--dataset", "*", "--bits", "l1_tav:7,l1_tav:7,l1_tav:07,l1_tav:0", "--overlap"]
    code, out, err = ask(capsys, catalog_case, index, *args, "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0] == ["bit", "mask", "position", "events", "scanned", "l1_tav:7", "l1_tav:0"], err
    assert [row[0] for row in rows[1:]] == ["l1_tav:7", "l1_tav:0"] and all(len(row) == 7 for row in rows)
    want = expected.count(catalog_case, ["dsA", "dsB"], [("l1_tav", 7), ("l1_tav", 0)])
    assert [[int(v) for v in row[5:]] for row in rows[1:]] == want["pairs"]
    code, out, _ = ask(capsys, catalog_case, index, *args, "--format", "json")
    assert json.loads(out)["overlap"] == {"bits": ["l1_tav:7", "l1_tav:0"], "events": want["pairs"]}


def test_an_events_file_may_start_with_a_byte_order_mark(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, index: Path, tmp_path: Path
) -> None:
    key = expected.sample_keys(catalog_case, 4, 1)[0]
    listing = tmp_path / "events.txt"
    listing.write_bytes(f"\ufeff{key[0]}:{key[1]}\n".encode())
    code, out, err = ask(capsys, catalog_case, index, "lookup", "--events-file", str(listing), "--format", "json")
    assert code == 0 and json.loads(out)["found"] == 1, err
