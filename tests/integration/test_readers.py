"""Real readers on a real warehouse: Spark (pyspark, local[2]) and DuckDB, pointed at the warehouse root.

The warehouse holds two committed tasks, a task amended after a partial load, and next to them a
task whose load died half-way (its claim and staged parts in `_staging`). Readers must discover
`dataset` and `task` columns, see exactly the committed events (compared event by event), nothing
of the uncommitted task, and `event_number` as a 64-bit signed integer. Spark also registers the
committed partitions from `ei-supersink committed --format spark-sql`. The trigger-bit expressions
docs/warehouse.md gives are checked here against the bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from eventindex.columns import EVENT_SCHEMA
from eventindex.transport import open_consumer
from supersink.amend import amend
from supersink.ledger import Ledger
from supersink.service import Supersink
from supersink.warehouse import Warehouse
from tests.helpers import SORT, Pipeline, synthetic
from tests.integration.conftest import server_unavailable

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DDL_ARGS = ("--format", "spark-sql", "--table", "ei_events")


def _sink(pipe: Pipeline) -> Supersink:
    return Supersink(Ledger(pipe.root / "ledger.db"), pipe.store, Warehouse.from_url((pipe.root / "wh").as_uri()))


def _run(pipe: Pipeline) -> None:
    sink = _sink(pipe)
    with open_consumer(pipe.broker) as consumer:
        sink.run(consumer, threading.Event(), until_idle=0.3)
    sink.ledger.close()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pipe = Pipeline(tmp_path_factory.mktemp("readers"))
    pipe.produce("j1", 1, events=2_000)
    pipe.produce("j2", 2, events=2_000)
    pipe.expect(2)
    pipe.produce("j1", 3, events=1_500, task="taskB")
    pipe.expect(1, task="taskB")
    _run(pipe)
    # taskC: partial load, then a late job amended in.
    pipe.expect(2, task="taskC")
    pipe.produce("j1", 4, events=1_000, task="taskC")
    _run(pipe)
    sink = _sink(pipe)
    sink.force_load("taskC")
    sink.ledger.close()
    pipe.produce("j2", 5, events=1_000, task="taskC")
    _run(pipe)
    sink = _sink(pipe)
    amend(sink.ledger, sink.warehouse, task="taskC", store=pipe.store, assembly=sink.intake.assembly, owner=sink.owner)
    sink.ledger.close()
    # taskD: a load that died half-way, staged only.
    wh = Warehouse.from_url((pipe.root / "wh").as_uri())
    wh.claim("ds", "taskD", "a-supersink-that-died")
    wh.begin("ds", "taskD")
    part = pipe.task_dir("task1") / "part-00000.parquet"
    shutil.copy(part, Path(wh.staging_dir("ds", "taskD")) / "part-00000.parquet.staged")
    expected = {
        ("ds", "task1"): synthetic(1, 2, events=2_000),
        ("ds", "taskB"): synthetic(3, events=1_500),
        ("ds", "taskC"): synthetic(4, 5, events=1_000),
    }
    return {"root": pipe.root / "wh", "expected": expected}


def _expected_all(warehouse: dict[str, Any]) -> pa.Table:
    tables = []
    for (dataset, task), table in sorted(warehouse["expected"].items()):
        n = table.num_rows
        tables.append(
            table.append_column("dataset", pa.array([dataset] * n)).append_column("task", pa.array([task] * n))
        )
    return pa.concat_tables(tables).sort_by([("dataset", "ascending"), ("task", "ascending"), *SORT])


def _same(seen: pa.Table, warehouse: dict[str, Any]) -> None:
    expected = _expected_all(warehouse)
    seen = seen.sort_by([("dataset", "ascending"), ("task", "ascending"), *SORT])
    assert seen.num_rows == expected.num_rows
    for name in ["dataset", "task", *EVENT_SCHEMA.names]:
        got = seen.column(name)
        want = expected.column(name)
        if got.type != want.type:
            got = got.cast(want.type)
        assert got.equals(want), f"column {name} differs"


# ---------------------------------------------------------------- pyarrow


# docs/warehouse.md's recipe: the partition keys are strings
KEYS = pads.partitioning(pa.schema([("dataset", pa.string()), ("task", pa.string())]), flavor="hive")


def test_pyarrow_hive_partitioning_sees_committed_events_only(warehouse: dict[str, Any]) -> None:
    seen = pads.dataset(str(warehouse["root"]), format="parquet", partitioning=KEYS).to_table()
    assert seen.schema.field("event_number").type == pa.int64()
    _same(seen, warehouse)
    _same(pq.read_table(str(warehouse["root"]), partitioning=KEYS), warehouse)


@pytest.fixture(scope="module")
def numeric(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A warehouse whose every task and dataset name looks like a number or a date: `7` and `007` in `2024-01-01`."""
    pipe = Pipeline(tmp_path_factory.mktemp("numeric-names"))
    for task, seed in (("007", 6), ("7", 7)):
        pipe.produce("j1", seed, events=500, task=task, dataset="2024-01-01")
        pipe.expect(1, task=task)
    _run(pipe)
    expected = {("2024-01-01", "007"): synthetic(6, events=500), ("2024-01-01", "7"): synthetic(7, events=500)}
    return {"root": pipe.root / "wh", "expected": expected}


def test_pyarrow_recipe_keeps_numeric_looking_names_apart(numeric: dict[str, Any]) -> None:
    with pytest.raises(pa.ArrowTypeError, match="Field task has incompatible types"):  # why the recipe names types
        pads.dataset(str(numeric["root"]), format="parquet", partitioning="hive").to_table()
    _same(pads.dataset(str(numeric["root"]), format="parquet", partitioning=KEYS).to_table(), numeric)
    _same(pq.read_table(str(numeric["root"]), partitioning=KEYS), numeric)


# ---------------------------------------------------------------- DuckDB


@pytest.fixture(scope="module")
def duckdb_connection() -> Iterator[Any]:
    try:
        import duckdb
    except ImportError:
        server_unavailable("duckdb is not installed (the dev extra)")
    con = duckdb.connect()
    yield con
    con.close()


def test_duckdb_hive_partitioning_sees_committed_events_only(warehouse: dict[str, Any], duckdb_connection: Any) -> None:
    glob = f"{warehouse['root']}/**/*.parquet"
    query = f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, hive_types_autocast = false)"
    described = duckdb_connection.execute(f"DESCRIBE {query}").fetchall()
    types = {row[0]: row[1] for row in described}
    assert types["event_number"] == "BIGINT" and types["dataset"] == "VARCHAR" and types["task"] == "VARCHAR"
    _same(duckdb_connection.sql(query).to_arrow_table(), warehouse)


def test_duckdb_recipe_keeps_numeric_looking_names_apart(numeric: dict[str, Any], duckdb_connection: Any) -> None:
    glob = f"{numeric['root']}/**/*.parquet"
    guessed = f"SELECT DISTINCT typeof(dataset) FROM read_parquet('{glob}', hive_partitioning = true)"
    assert duckdb_connection.execute(guessed).fetchall() == [("DATE",)]
    query = f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, hive_types_autocast = false)"
    _same(duckdb_connection.sql(query).to_arrow_table(), numeric)


def test_duckdb_trigger_bit_expression_matches_pyarrow(warehouse: dict[str, Any], duckdb_connection: Any) -> None:
    glob = f"{warehouse['root']}/**/*.parquet"
    bits = [0, 5, 17, 100, 511]
    selects = ", ".join(f"count(*) FILTER (get_bit(l1_tav::BIT, {b // 8 * 8 + 7 - b % 8}) = 1)" for b in bits)
    query = f"SELECT {selects} FROM read_parquet('{glob}', hive_partitioning = true, hive_types_autocast = false)"
    counts = duckdb_connection.execute(query).fetchone()
    assert list(counts) == _bit_counts(_expected_all(warehouse), "l1_tav", bits)


def _bit_counts(table: pa.Table, column: str, bits: list[int]) -> list[int]:
    """Events with bit i set, computed from the bytes: bit i is bit i % 8 of byte i // 8."""
    masks = [m for m in table.column(column).to_pylist() if m is not None]
    matrix = np.frombuffer(b"".join(masks), dtype=np.uint8).reshape(len(masks), -1)
    return [int(((matrix[:, b // 8] >> (b % 8)) & 1).sum()) for b in bits]


# ---------------------------------------------------------------- Spark


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        server_unavailable("pyspark is not installed (the dev extra)")
    if shutil.which("java") is None:
        server_unavailable("no Java runtime for Spark (scripts/install-servers installs OpenJDK 17)")
    work = tmp_path_factory.mktemp("spark")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("eventindex-readers-test")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.warehouse.dir", str(work / "spark-warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={work}")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()


def test_spark_discovers_dataset_and_task_and_sees_committed_events_only(warehouse: dict[str, Any], spark: Any) -> None:
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")  # docs/warehouse.md
    frame = spark.read.parquet(str(warehouse["root"]))
    types = dict(frame.dtypes)
    assert types["event_number"] == "bigint" and types["dataset"] == "string" and types["task"] == "string"
    assert types["run_number"] == "bigint" and types["attempt"] == "int"
    _same(frame.toArrow(), warehouse)


def test_spark_recipe_keeps_numeric_looking_names_apart(numeric: dict[str, Any], spark: Any) -> None:
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "true")  # Spark's default: it guesses
    guessed = spark.read.parquet(str(numeric["root"]))
    assert dict(guessed.dtypes)["task"] == "int" and guessed.select("task").distinct().count() == 1, "7 and 007 merged"
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")  # docs/warehouse.md
    frame = spark.read.parquet(str(numeric["root"]))
    assert dict(frame.dtypes)["task"] == "string" and dict(frame.dtypes)["dataset"] == "string"
    _same(frame.toArrow(), numeric)


def test_spark_trigger_bit_expression_and_big_event_literals(warehouse: dict[str, Any], spark: Any) -> None:
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
    frame = spark.read.parquet(str(warehouse["root"]))
    frame.createOrReplaceTempView("events")
    bits = [0, 5, 17, 100, 511]
    selects = ", ".join(
        f"count_if((cast(conv(hex(substring(l1_tav, {b // 8 + 1}, 1)), 16, 10) AS INT) >> {b % 8}) & 1 = 1)"
        for b in bits
    )
    row = spark.sql(f"SELECT {selects} FROM events").collect()[0]
    assert list(row) == _bit_counts(_expected_all(warehouse), "l1_tav", bits)
    # The largest event number the producer accepts is a plain bigint literal.
    assert spark.sql("SELECT count(*) FROM events WHERE event_number = 9223372036854775807").collect()[0][0] == 0


def test_spark_registers_the_committed_partitions_from_the_ddl(warehouse: dict[str, Any], spark: Any) -> None:
    ddl = subprocess.run(
        [sys.executable, "-m", "supersink.cli", "committed", "--warehouse", warehouse["root"].as_uri(), *DDL_ARGS],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    ).stdout
    for statement in filter(str.strip, ddl.split(";\n")):
        spark.sql(statement)
    partitions = sorted(r[0] for r in spark.sql("SHOW PARTITIONS ei_events").collect())
    assert partitions == ["dataset=ds/task=task1", "dataset=ds/task=taskB", "dataset=ds/task=taskC"]
    _same(spark.table("ei_events").toArrow(), warehouse)
