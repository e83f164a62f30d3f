"""What readers see: committed tasks only, from the partition tree or from `ei-supersink committed`;
the migration of an old-layout warehouse."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from eventindex.columns import EVENT_SCHEMA
from supersink.committed import spark_sql
from supersink.warehouse import Warehouse
from tests.helpers import SORT, Pipeline, sink_cli, synthetic

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pipe(tmp_path: Path) -> Pipeline:
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


def test_the_partition_tree_holds_committed_tasks_only(pipe: Pipeline) -> None:
    seen = pads.dataset(str(pipe.root / "wh"), format="parquet", partitioning="hive").to_table()
    assert seen.column("task").unique().to_pylist() == ["task1"]
    assert seen.sort_by(SORT).select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA).equals(synthetic(1, 2))
    assert [p.name for p in (pipe.root / "wh").rglob("*.parquet")] == ["part-00000.parquet"], (
        "no staged file ends in .parquet (DuckDB's ** glob enters _staging)"
    )


def test_committed_lists_the_marker_files_in_each_format(pipe: Pipeline) -> None:
    url = (pipe.root / "wh").as_uri()
    paths = sink_cli("committed", "--warehouse", url)
    assert paths.returncode == 0, paths.stderr
    assert paths.stdout.splitlines() == [f"file://{pipe.task_dir()}/part-00000.parquet"]
    listing = json.loads(sink_cli("committed", "--warehouse", url, "--format", "json").stdout)
    assert [(t["dataset"], t["task"], t["rows"], t["partial"]) for t in listing] == [("ds", "task1", 6_000, False)]
    ddl = sink_cli("committed", "--warehouse", url, "--format", "spark-sql", "--table", "ei.events").stdout
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS ei.events (")
    assert "PARTITIONED BY (dataset, task)" in ddl
    assert ddl.count("ALTER TABLE ei.events ADD IF NOT EXISTS PARTITION") == 1
    assert f"PARTITION (dataset='ds', task='task1') LOCATION 'file://{pipe.task_dir()}'" in ddl
    assert "`event_number` BIGINT" in ddl and "`attempt` INT" in ddl
    bad = sink_cli("committed", "--warehouse", url, "--format", "spark-sql", "--table", "x; DROP TABLE y")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_spark_sql_names_every_warehouse_column_once() -> None:
    warehouse = Warehouse.from_url("file:///nonexistent-warehouse")
    ddl = spark_sql(warehouse, [])
    columns = [line.split("`")[1] for line in ddl.splitlines() if line.startswith("  `")]
    assert sorted(columns) == sorted([*EVENT_SCHEMA.names, "job", "attempt", "dataset", "task"])


def test_an_old_layout_warehouse_is_migrated_to_partitions(pipe: Pipeline) -> None:
    wh = pipe.root / "wh"
    old = wh / "ds" / "task1"
    old.parent.mkdir(parents=True)
    pipe.task_dir().rename(old)  # as the previous layout had it
    (wh / "dataset=ds").rmdir()
    (wh / "ds" / "task9").mkdir()
    (wh / "ds" / "task9" / "part-00000.parquet").write_bytes(b"an old load that never committed")
    done = sink_cli("migrate-layout", "--warehouse", wh.as_uri())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"moved": ["ds/task1"], "uncommitted": ["ds/task9"]}
    assert "ds/task9 has no commit marker" in done.stderr
    assert sorted(p.name for p in pipe.task_dir().iterdir()) == ["_SUCCESS.json", "part-00000.parquet"]
    assert not old.exists()
    again = sink_cli("migrate-layout", "--warehouse", wh.as_uri())
    assert json.loads(again.stdout)["moved"] == []
    listed = sink_cli("committed", "--warehouse", wh.as_uri()).stdout.splitlines()
    assert listed == [f"file://{pipe.task_dir()}/part-00000.parquet"]
