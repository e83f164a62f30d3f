"""ei-catalog on the remote warehouses the supersink writes: S3 (SeaweedFS) and WebHDFS (the test endpoint,
or a real cluster with EI_WEBHDFS_URL). The pipeline writes the same test warehouse there; there an
uncommitted task's parts sit in its partition directory without a marker (S3 does not rename) or in
`_staging` (HDFS). Every answer is checked against the events themselves.

Spark (local[2]) runs the same questions with its default reader for remote warehouses, pyarrow on the
executors (`--spark-reader arrow`), and gives DuckDB's answers byte for byte. Its Hadoop reader is not
run here: S3 needs the hadoop-aws connector, which pyspark does not ship, and the WebHDFS client in
pyspark's shaded Hadoop jars fails to load its Jersey runtime (ClassNotFoundException:
...shaded.org.glassfish.jersey.internal.RuntimeDelegateImpl); a cluster's Hadoop has both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from catalog.bits import parse_bits
from catalog.keys import request_table
from catalog.questions import Answer, count, dataset_overlap, duplicates, lookup
from catalog.selection import Range
from catalog.session import Session
from tests import catalog_expected as expected
from tests.catalog_warehouse import CatalogCase, build, synthetic_events
from tests.helpers import ROOT
from tests.integration.conftest import server_unavailable
from testservers import SeaweedFS

pytestmark = pytest.mark.integration
BITS = "l1_tav:7,l1_tbp:14,l1_tav:L1_ITEM_21,hlt_passed_physics:3"
#: Counted from the index: its bit counts are filled from the remote files by the first count.
STORED_BITS = "l1_tav:7,l1_tav:0,hlt_passed_physics:3"


def _uncommitted_keys() -> list[tuple[int, int]]:
    keys = []
    for seed in (9, 10):
        table = synthetic_events(seed).slice(0, 25)
        keys += list(zip(table.column("run_number").to_pylist(), table.column("event_number").to_pylist(), strict=True))
    return keys


def _questions(session: Session, case: CatalogCase) -> dict[str, Answer]:
    keys = expected.sample_keys(case, 11, 150) + _uncommitted_keys()
    return {
        "lookup": lookup(session, request_table(keys), ["*"]),
        "count": count(session, ["dsA"], parse_bits(BITS), Range(456_000, 456_000), None, overlap=True),
        "stored": count(session, ["*"], parse_bits(STORED_BITS), None, None, overlap=False),
        "overlap": dataset_overlap(session, ["dsA", "dsB"]),
        "duplicates": duplicates(session, ["*"]),
    }


def _check(answers: dict[str, Answer], case: CatalogCase) -> None:
    keys = expected.sample_keys(case, 11, 150) + _uncommitted_keys()
    want = expected.lookup(case, keys, ["dsA", "dsB"])
    document = answers["lookup"].document()
    found = {
        (e["run_number"], e["event_number"]): [{k: v for k, v in c.items() if k != "file"} for c in e["copies"]]
        for e in document["events"]
    }
    assert found == want["found"]
    assert [(m["run_number"], m["event_number"]) for m in document["not_found"]] == want["missing"]
    assert set(_uncommitted_keys()) <= set(want["missing"])
    bits: list[tuple[str, Any]] = [(s.mask, s.number if s.number is not None else s.name) for s in parse_bits(BITS)]
    counted = answers["count"].document()
    want_count = expected.count(case, ["dsA"], bits, (456_000, 456_000))
    assert (counted["scanned"], [b["events"] for b in counted["bits"]]) == (want_count["scanned"], want_count["counts"])
    assert counted["overlap"]["events"] == want_count["pairs"]
    stored_bits = [(s.mask, s.number) for s in parse_bits(STORED_BITS)]
    stored, want_stored = answers["stored"].document(), expected.count(case, ["dsA", "dsB"], stored_bits)
    assert stored["scanned"] == want_stored["scanned"]
    assert [b["events"] for b in stored["bits"]] == want_stored["counts"]
    matrix = expected.dataset_overlap(case, ["dsA", "dsB"])
    assert answers["overlap"].table.column("dsB").to_pylist() == [row[1] for row in matrix]
    held = answers["duplicates"].document()
    assert {(e["run_number"], e["event_number"]) for e in held["duplicates"]} == set(
        expected.duplicates(case, ["dsA", "dsB"])
    )


def test_s3_warehouse(seaweedfs: SeaweedFS, s3_env: str, tmp_path: Path) -> None:
    pytest.importorskip("duckdb")
    url = f"s3://{s3_env}/warehouse?endpoint={seaweedfs.endpoint}"
    case = build(tmp_path / "work", url)
    # On S3 the dead load's parts are in place, in the partition tree, without a marker.
    listed = case.warehouse.fs.get_file_info(pafs.FileSelector(case.warehouse.task_dir("dsA", "tU")))
    assert [info.base_name for info in listed] == ["part-00000.parquet"]
    with Session(url, index_path=tmp_path / "index.sqlite") as session:
        on_duckdb = _check_lazy(session, lambda: _questions(session, case))
    _check(on_duckdb, case)
    _same_on_spark(url, tmp_path, case, on_duckdb, seaweedfs.client_env())


def test_webhdfs_warehouse(webhdfs: str, tmp_path: Path) -> None:
    pytest.importorskip("duckdb")
    case = build(tmp_path / "work", webhdfs)
    with Session(webhdfs, index_path=tmp_path / "index.sqlite") as session:
        on_duckdb = _check_lazy(session, lambda: _questions(session, case))
    _check(on_duckdb, case)
    _same_on_spark(webhdfs, tmp_path, case, on_duckdb, {})


def _same_on_spark(
    url: str, tmp_path: Path, case: CatalogCase, on_duckdb: dict[str, Answer], env: Mapping[str, str]
) -> None:
    """Spark (local[2]), reading the remote part files with pyarrow on its executors, gives DuckDB's answers
    byte for byte (and so the events' own). `env` goes to the executors' Python workers: their credentials."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        server_unavailable("pyspark is not installed (the dev extra)")
    if shutil.which("java") is None:
        server_unavailable("no Java runtime for Spark (scripts/install-servers installs OpenJDK 17)")
    from catalog.engines.spark_engine import SparkEngine

    conf = {"spark.sql.shuffle.partitions": "2", **{f"spark.executorEnv.{k}": v for k, v in env.items()}}
    with Session(url, index_path=tmp_path / "spark.sqlite", engine="spark", master="local[2]", conf=conf) as session:
        engine = session.engine
        assert isinstance(engine, SparkEngine) and engine.arrow  # the default reader for a remote warehouse
        on_spark = _questions(session, case)
    _check(on_spark, case)
    for name, answer in on_spark.items():
        assert answer.table.equals(on_duckdb[name].table), name
        assert answer.document() == on_duckdb[name].document(), name


def _check_lazy(session: Session, ask: Callable[[], dict[str, Answer]]) -> dict[str, Answer]:
    """Building the index stores no bit count; the count from the index stores those of its mask columns."""
    session.refresh()
    stored = "SELECT DISTINCT mask FROM bit_counts"
    assert session.index.db.execute(stored).fetchall() == []
    answers = ask()
    assert sorted(mask for (mask,) in session.index.db.execute(stored)) == ["hlt_passed_physics", "l1_tav"]
    return answers


def test_a_bucket_that_does_not_exist_is_named_not_read_as_an_empty_warehouse(
    seaweedfs: SeaweedFS, s3_env: str, tmp_path: Path
) -> None:
    """Found on SeaweedFS: a misspelt bucket gave empty answers with exit 0 (`committed`, `migrate-layout`,
    `ei-catalog index`), as a `file://` typo no longer does."""
    missing = f"s3://no-such-{uuid.uuid4().hex[:8]}/warehouse?endpoint={seaweedfs.endpoint}"
    env = {**os.environ, **seaweedfs.client_env(), "PYTHONPATH": str(ROOT)}
    for tool, *args in (
        ("catalog.cli", "index", "--warehouse", missing, "--index", str(tmp_path / "i.sqlite")),
        ("catalog.cli", "lookup", "--warehouse", missing, "--index", str(tmp_path / "i.sqlite"), "--event", "1:2"),
        ("supersink.cli", "committed", "--warehouse", missing),
        ("supersink.cli", "migrate-layout", "--warehouse", missing),
    ):
        done = subprocess.run([sys.executable, "-m", tool, *args], capture_output=True, text=True, env=env, cwd=ROOT)
        assert done.returncode == 2 and done.stdout == "", (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "no such bucket 'no-such-" in done.stderr, done.stderr
    assert not (tmp_path / "i.sqlite").exists()
    existing = f"s3://{s3_env}/empty-{uuid.uuid4().hex[:8]}?endpoint={seaweedfs.endpoint}"
    done = subprocess.run([sys.executable, "-m", "supersink.cli", "committed", "--warehouse", existing],
                          capture_output=True, text=True, env=env, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0 and done.stdout == "", "an existing bucket with nothing committed is an empty answer"


def _commit(warehouse: Any, dataset: str, task: str, seeds: list[int]) -> list[str]:
    """A committed task written straight to the warehouse: a part per seed, then its marker; the part paths."""
    import json

    import pyarrow.parquet as pq

    from eventindex.warehouse import MARKER, part_name
    from tests.catalog_warehouse import _parts

    files, paths = [], []
    for i, seed in enumerate(seeds):
        table = _parts(synthetic_events(seed), task)
        paths.append(f"{warehouse.task_dir(dataset, task)}/{part_name(i)}")
        with warehouse.fs.open_output_stream(paths[-1]) as out:
            pq.write_table(table, out, compression="zstd")
        files.append({"name": part_name(i), "rows": table.num_rows})
    marker = {"task": task, "dataset": dataset, "files": files, "rows": sum(f["rows"] for f in files),
              "partial": False, "committed_at": uuid.uuid4().hex}  # fmt: skip
    with warehouse.fs.open_output_stream(f"{warehouse.task_dir(dataset, task)}/{MARKER}") as out:
        out.write(json.dumps(marker).encode())
    return paths


def test_s3_a_task_loaded_again_or_missing_a_part(
    seaweedfs: SeaweedFS, s3_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On S3 (directories without a modification time) a task deleted and loaded again under the same name is
    indexed again; a committed part file deleted is exit 4 naming it: found by the refresh, or, with --no-refresh,
    by DuckDB's scan through pyarrow (`count --scan` and `--overlap` were an internal error, exit 1)."""
    import json

    pytest.importorskip("duckdb")
    from catalog.cli import main
    from supersink.warehouse import Warehouse

    url = f"s3://{s3_env}/warehouse?endpoint={seaweedfs.endpoint}"
    warehouse = Warehouse.from_url(url)
    _commit(warehouse, "dsA", "t1", [1])
    [part, _] = _commit(warehouse, "dsB", "t2", [2, 3])
    listed = warehouse.fs.get_file_info(pafs.FileSelector(f"{warehouse.root}/dataset=dsA"))
    assert [info.mtime_ns for info in listed] == [None]  # what the refresh compares instead: the objects
    common = ["--warehouse", url, "--index", str(tmp_path / "i.sqlite"), "--format", "json"]

    def ask(*args: str) -> tuple[int, Any, str]:
        code = main([args[0], *common, *args[1:]])
        out, err = capsys.readouterr()
        return code, json.loads(out) if out else None, err

    assert ask("index")[1]["tasks"] == 2
    warehouse.fs.delete_dir(warehouse.task_dir("dsA", "t1"))
    _commit(warehouse, "dsA", "t1", [5])
    new = synthetic_events(5)
    code, document, err = ask("lookup", "--event", f"{new.column('run_number')[0]}:{new.column('event_number')[0]}")
    assert code == 0 and document["found"] == 1, err  # was not found: the index still held the old task

    warehouse.fs.delete_file(part)
    for question in (["--scan"], ["--overlap"]):
        code, document, err = ask("count", "--dataset", "dsB", "--bits", "l1_tav:7,l1_tav:1", "--no-refresh", *question)
        assert code == 4 and err.count("\n") == 1, (question, err)
        assert err.startswith("ei-catalog: warehouse: DuckDB cannot read a data file: ") and part in err, err
    code, _, err = ask("count", "--dataset", "dsB", "--bits", "l1_tav:7")
    assert code == 4 and "task t2 of dsB cannot be read" in err and f"{part}: it is missing" in err, err
    code, document, err = ask("count", "--dataset", "dsA", "--bits", "l1_tav:7")
    assert code == 0 and document["scanned"] == new.num_rows, err
