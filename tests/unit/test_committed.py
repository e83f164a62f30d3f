"""What readers see: committed tasks only, from the partition tree or from `ei-supersink committed`;
the migration of an old-layout warehouse."""

from __future__ import annotations

import pyarrow.dataset as pads

from eventindex.columns import EVENT_SCHEMA
from supersink.committed import spark_sql
from supersink.warehouse import Warehouse
from tests.helpers import SORT, Pipeline, synthetic


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
