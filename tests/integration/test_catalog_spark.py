"""ei-catalog on Spark (pyspark, local[2]) gives DuckDB's answers, byte for byte, and both are the answers
the events themselves give (tests.catalog_expected), on the test warehouse: duplicates across and
within tasks, a partial task, an amended task, and uncommitted parts next to them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from catalog.bits import parse_bits
from catalog.cli import main
from catalog.keys import request_table
from catalog.questions import Answer, count, dataset_overlap, duplicates, lookup
from catalog.selection import Range
from catalog.session import Session
from tests import catalog_expected as expected
from tests.catalog_fixtures import catalog_case, duckdb_session
from tests.catalog_warehouse import CatalogCase, synthetic_events
from tests.helpers import ROOT
from tests.integration.conftest import server_unavailable

__all__ = ["catalog_case", "duckdb_session"]  # fixtures
pytestmark = pytest.mark.integration
SPARK_CONF = {"spark.sql.shuffle.partitions": "2"}


@pytest.fixture(scope="module")
def spark_session(catalog_case: CatalogCase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        server_unavailable("pyspark is not installed (the dev extra)")
    if shutil.which("java") is None:
        server_unavailable("no Java runtime for Spark (scripts/install-servers installs OpenJDK 17)")
    index = tmp_path_factory.mktemp("spark-index") / "index.sqlite"
    with Session(catalog_case.url, index_path=index, engine="spark", master="local[2]", conf=SPARK_CONF) as session:
        yield session


def _same(on_spark: Answer, on_duckdb: Answer) -> dict[str, Any]:
    assert on_spark.table.equals(on_duckdb.table)
    document = on_duckdb.document()
    assert on_spark.document() == document
    return document


def test_lookup(catalog_case: CatalogCase, duckdb_session: Session, spark_session: Session) -> None:
    uncommitted = synthetic_events(9).slice(0, 20).to_pylist() + synthetic_events(10).slice(0, 20).to_pylist()
    keys = expected.sample_keys(catalog_case, 21, 300) + [(r["run_number"], r["event_number"]) for r in uncommitted]
    requests = request_table([*keys, (5, 5)])
    document = _same(lookup(spark_session, requests, ["*"]), lookup(duckdb_session, requests, ["*"]))
    want = expected.lookup(catalog_case, [*keys, (5, 5)], ["dsA", "dsB"])
    found = {
        (e["run_number"], e["event_number"]): [{k: v for k, v in c.items() if k != "file"} for c in e["copies"]]
        for e in document["events"]
    }
    assert found == want["found"] and len(found) > 200
    assert [(m["run_number"], m["event_number"]) for m in document["not_found"]] == want["missing"]
    one = request_table(keys[:1])
    _same(lookup(spark_session, one, ["dsA"]), lookup(duckdb_session, one, ["dsA"]))


@pytest.mark.parametrize(
    ("bits", "globs", "runs", "lumi"),
    [
        ("l1_tav:7,l1_tap:14,l1_tbp:21,l1_tav:1,hlt_passed_physics:3,hlt_passed_through:3", ["*"], None, None),
        ("l1_tav:L1_ITEM_7,l1_tav:L1_ITEM_14,l1_tav:7", ["dsA"], (456_000, 456_000), (40, 42)),
        ("l1_tav:7", ["ds?"], (1, 2), None),
    ],
)
def test_count(
    catalog_case: CatalogCase,
    duckdb_session: Session,
    spark_session: Session,
    bits: str,
    globs: list[str],
    runs: Any,
    lumi: Any,
) -> None:
    def ask(session: Session) -> Answer:
        return count(session, globs, parse_bits(bits), Range(*runs) if runs else None,
                     Range(*lumi) if lumi else None, overlap=True)  # fmt: skip

    document = _same(ask(spark_session), ask(duckdb_session))
    datasets = ["dsA"] if globs == ["dsA"] else ["dsA", "dsB"]
    specs = [(s.mask, s.number if s.number is not None else s.name) for s in parse_bits(bits)]
    want = expected.count(catalog_case, datasets, specs, runs, lumi)
    assert document["scanned"] == want["scanned"]
    assert [b["events"] for b in document["bits"]] == want["counts"]
    assert document["overlap"]["events"] == want["pairs"]


@pytest.mark.parametrize(("runs", "lumi"), [(None, None), ((456_000, 456_001), (40, 100))])
def test_counts_from_the_index_and_from_scans_agree_on_both_engines(
    catalog_case: CatalogCase, duckdb_session: Session, spark_session: Session, runs: Any, lumi: Any
) -> None:
    bits = "l1_tav:7,l1_tap:14,l1_tbp:21,hlt_passed_physics:3,l2_passed_physics:5"

    def ask(session: Session, scan: bool) -> Answer:
        return count(session, ["*"], parse_bits(bits), Range(*runs) if runs else None,
                     Range(*lumi) if lumi else None, overlap=False, scan=scan)  # fmt: skip

    document = _same(ask(spark_session, False), ask(duckdb_session, False))
    assert _same(ask(spark_session, True), ask(duckdb_session, True)) == document
    specs = [(s.mask, s.number) for s in parse_bits(bits)]
    want = expected.count(catalog_case, ["dsA", "dsB"], specs, runs, lumi)
    assert document["scanned"] == want["scanned"] > 0
    assert [b["events"] for b in document["bits"]] == want["counts"]


def test_dataset_overlap(catalog_case: CatalogCase, duckdb_session: Session, spark_session: Session) -> None:
    document = _same(dataset_overlap(spark_session, ["dsB", "dsA"]), dataset_overlap(duckdb_session, ["dsB", "dsA"]))
    matrix = expected.dataset_overlap(catalog_case, ["dsB", "dsA"])
    assert document["events"] == {"dsB": matrix[0][0], "dsA": matrix[1][1]}
    assert document["pairs"] == [{"a": "dsB", "b": "dsA", "events": matrix[0][1]}]


def test_duplicates(catalog_case: CatalogCase, duckdb_session: Session, spark_session: Session) -> None:
    for globs, datasets in ((["*"], ["dsA", "dsB"]), (["dsA"], ["dsA"])):
        document = _same(duplicates(spark_session, globs), duplicates(duckdb_session, globs))
        seen = {
            (e["run_number"], e["event_number"]): sorted(
                (c["dataset"], c["task"], c["job"], c["attempt"], c["input_guid"], c["lumi_block"], c["loaded"])
                for c in e["copies"]
            )
            for e in document["duplicates"]
        }
        assert seen == expected.duplicates(catalog_case, datasets)


def test_the_command_line_with_engine_spark(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, spark_session: Session, tmp_path: Any
) -> None:
    key = expected.sample_keys(catalog_case, 5, 1)[0]
    args = ["--warehouse", catalog_case.url, "--index", str(tmp_path / "i.sqlite"), "--format", "json"]
    code = main(["lookup", *args, "--event", f"{key[0]}:{key[1]}", "--engine", "spark", "--master", "local[2]"])
    on_spark = json.loads(capsys.readouterr().out)
    code_duckdb = main(["lookup", *args, "--event", f"{key[0]}:{key[1]}"])
    assert (code, code_duckdb) == (0, 0)
    assert on_spark == json.loads(capsys.readouterr().out) and on_spark["found"] == 1


def test_a_damaged_data_file_is_the_warehouses_error_on_spark_too(
    capsys: pytest.CaptureFixture[str], catalog_case: CatalogCase, spark_session: Session, tmp_path: Any
) -> None:
    """A part file overwritten after it was indexed: exit 4 and one line, as with DuckDB; on the command line,
    only the JVM's few start-up lines besides (Spark's executor no longer logs the failure with its stacks)."""
    root = tmp_path / "wh"
    shutil.copytree(catalog_case.warehouse.root, root)
    index = str(tmp_path / "i.sqlite")
    assert main(["index", "--warehouse", root.as_uri(), "--index", index]) == 0
    capsys.readouterr()
    for part in root.rglob("*.parquet"):
        part.write_bytes(b"not parquet any more" * 100)
    key = expected.sample_keys(catalog_case, 3, 1)[0]
    code = main(["lookup", "--warehouse", root.as_uri(), "--index", index, "--event", f"{key[0]}:{key[1]}",
                 "--engine", "spark", "--master", "local[2]"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 4 and out == "" and err.count("\n") == 1, (code, err)
    assert "ei-catalog: warehouse: Spark cannot read a data file: " in err and ".parquet" in err, err
    done = subprocess.run(
        [sys.executable, "-m", "catalog.cli", "lookup", "--warehouse", root.as_uri(), "--index", index,
         "--event", f"{key[0]}:{key[1]}", "--engine", "spark", "--master", "local[1]"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 4 and lines[-1].startswith("ei-catalog: warehouse: Spark cannot read a data file: ")
    assert len(lines) <= 4 and not any("Exception" in line for line in lines[:-1]), done.stderr[-3000:]
