"""`ei-catalog` on the command line: the three formats agree, 100,000 events in one call, bad input gets
one line and exit 2, an empty answer exits 0."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

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
