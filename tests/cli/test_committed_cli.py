"""`ei-supersink committed` and `migrate-layout` as processes."""

from __future__ import annotations

import json

from tests.helpers import Pipeline, sink_cli


def test_committed_lists_the_marker_files_in_each_format(two_tasks: Pipeline) -> None:
    url = (two_tasks.root / "wh").as_uri()
    paths = sink_cli("committed", "--warehouse", url)
    assert paths.returncode == 0, paths.stderr
    assert paths.stdout.splitlines() == [f"file://{two_tasks.task_dir()}/part-00000.parquet"]
    listing = json.loads(sink_cli("committed", "--warehouse", url, "--format", "json").stdout)
    assert [(t["dataset"], t["task"], t["rows"], t["partial"]) for t in listing] == [("ds", "task1", 6_000, False)]
    ddl = sink_cli("committed", "--warehouse", url, "--format", "spark-sql", "--table", "ei.events").stdout
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS ei.events (")
    assert "PARTITIONED BY (dataset, task)" in ddl
    assert ddl.count("ALTER TABLE ei.events ADD IF NOT EXISTS PARTITION") == 1
    assert f"PARTITION (dataset='ds', task='task1') LOCATION 'file://{two_tasks.task_dir()}'" in ddl
    assert "`event_number` BIGINT" in ddl and "`attempt` INT" in ddl
    bad = sink_cli("committed", "--warehouse", url, "--format", "spark-sql", "--table", "x; DROP TABLE y")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_an_old_layout_warehouse_is_migrated_to_partitions(two_tasks: Pipeline) -> None:
    wh = two_tasks.root / "wh"
    old = wh / "ds" / "task1"
    old.parent.mkdir(parents=True)
    two_tasks.task_dir().rename(old)  # as the previous layout had it
    (wh / "dataset=ds").rmdir()
    (wh / "ds" / "task9").mkdir()
    (wh / "ds" / "task9" / "part-00000.parquet").write_bytes(b"an old load that never committed")
    done = sink_cli("migrate-layout", "--warehouse", wh.as_uri())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"moved": ["ds/task1"], "uncommitted": ["ds/task9"]}
    assert "ds/task9 has no commit marker" in done.stderr
    assert sorted(p.name for p in two_tasks.task_dir().iterdir()) == ["_SUCCESS.json", "part-00000.parquet"]
    assert not old.exists()
    again = sink_cli("migrate-layout", "--warehouse", wh.as_uri())
    assert json.loads(again.stdout)["moved"] == []
    listed = sink_cli("committed", "--warehouse", wh.as_uri()).stdout.splitlines()
    assert listed == [f"file://{two_tasks.task_dir()}/part-00000.parquet"]
