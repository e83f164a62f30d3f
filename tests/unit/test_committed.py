"""What readers see: committed tasks only, from the partition tree or from `ei-supersink committed`;
the migration of an old-layout warehouse."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as pads
import pytest

from eventindex.columns import EVENT_SCHEMA
from supersink.committed import spark_sql
from supersink.warehouse import Warehouse
from tests.helpers import SORT, Pipeline, synthetic

ROOT = Path(__file__).resolve().parents[2]


def committed_and_half_loaded(tmp_path: Path) -> Pipeline:
    """task1 committed; task2 complete but claimed by a supersink that died mid-load (staged parts)."""
    pipe = Pipeline(tmp_path)
    pipe.produce("j1", 1)
    pipe.produce("j2", 2)
    pipe.expect(2)
    pipe.run_supersink()
    warehouse = Warehouse.from_url((tmp_path / "wh").as_uri())
    warehouse.claim("ds", "task2", "a-supersink-that-died")
    warehouse.begin("ds", "task2")
    staged = Path(warehouse.staging_dir("ds", "task2"))
    (staged / "part-00000.parquet.staged").write_bytes((pipe.task_dir() / "part-00000.parquet").read_bytes())
    return pipe


@pytest.fixture
def two_tasks(tmp_path: Path) -> Pipeline:
    return committed_and_half_loaded(tmp_path)


def test_the_partition_tree_holds_committed_tasks_only(two_tasks: Pipeline) -> None:
    seen = pads.dataset(str(two_tasks.root / "wh"), format="parquet", partitioning="hive").to_table()
    assert seen.column("task").unique().to_pylist() == ["task1"]
    assert seen.sort_by(SORT).select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA).equals(synthetic(1, 2))
    assert [p.name for p in (two_tasks.root / "wh").rglob("*.parquet")] == ["part-00000.parquet"], (
        "no staged file ends in .parquet (DuckDB's ** glob enters _staging)"
    )


def test_spark_sql_names_every_warehouse_column_once() -> None:
    warehouse = Warehouse.from_url("file:///nonexistent-warehouse")
    ddl = spark_sql(warehouse, [])
    columns = [line.split("`")[1] for line in ddl.splitlines() if line.startswith("  `")]
    assert sorted(columns) == sorted([*EVENT_SCHEMA.names, "job", "attempt", "dataset", "task"])
