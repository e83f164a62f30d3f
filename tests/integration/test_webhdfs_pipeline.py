"""The whole pipeline into a WebHDFS warehouse, through the real `hdfs` client (HdfsCLI).

By default the warehouse is the WebHDFS test endpoint (testservers.webhdfs: two namenodes and a
datanode on loopback, over a local directory); with EI_WEBHDFS_URL set, the tests that do not steer
the namenodes run against that real cluster. SIGKILLs during the load and two supersinks racing for
the claim run in the fault-injection suite (tests/integration/test_faults.py, "webhdfs" backend).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from eventindex.columns import EVENT_SCHEMA
from eventindex.transport import open_consumer
from supersink.ledger import Ledger
from supersink.loader import FileLayout
from supersink.service import Supersink
from supersink.warehouse import Warehouse
from tests.helpers import SORT, Pipeline, sink_cli, synthetic
from testservers.webhdfs import Fault, WebHdfsEndpoint

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _load(pipe: Pipeline, url: str, layout: FileLayout | None = None) -> Supersink:
    warehouse = Warehouse.from_url(url)
    sink = Supersink(Ledger(pipe.root / "ledger.db"), pipe.store, warehouse, layout=layout or FileLayout())
    with open_consumer(pipe.broker) as consumer:
        sink.run(consumer, threading.Event(), until_idle=0.3)
    return sink


def _committed_events(url: str, task: str = "task1") -> pa.Table:
    warehouse = Warehouse.from_url(url)
    try:
        committed = warehouse.committed("ds", task)
        assert committed is not None, "no commit marker"
        files = [f"{committed.directory}/{name}" for name in committed.files]
        table = pads.dataset(files, format="parquet", filesystem=warehouse.fs).to_table()
        listed = sorted(warehouse.parts("ds", task))
    finally:
        warehouse.close()
    assert listed == sorted(committed.files), "part files next to the commit that it does not list"
    return table.sort_by(SORT).select(EVENT_SCHEMA.names)


def test_pipeline_into_webhdfs_loads_every_event_once(tmp_path: Path, webhdfs: str) -> None:
    pipe = Pipeline(tmp_path)
    for job in range(1, 4):
        pipe.produce(f"j{job}", job)
    pipe.expect(3)
    sink = _load(pipe, webhdfs, FileLayout(row_group_rows=1_000, rows_per_file=4_000))
    sink.ledger.close()
    st = pipe.status()
    assert (st["state"], st["events_loaded"]) == ("loaded", 9_000)
    assert st["location"] == f"{webhdfs}/dataset=ds/task=task1"
    assert _committed_events(webhdfs).equals(synthetic(1, 2, 3))
    listing = sink_cli("committed", "--warehouse", webhdfs)
    assert listing.returncode == 0, listing.stderr
    assert len(listing.stdout.splitlines()) == 3 and all(
        line.startswith("webhdfs://") and "/dataset=ds/task=task1/part-0000" in line
        for line in listing.stdout.splitlines()
    )


def test_namenode_failovers_during_the_load_lose_and_duplicate_nothing(
    tmp_path: Path, webhdfs_endpoint: WebHdfsEndpoint
) -> None:
    url = webhdfs_endpoint.url_for("/failover")
    pipe = Pipeline(tmp_path)
    for job in range(1, 5):  # enough events for the load to take a few seconds, even on a quiet machine
        pipe.produce(f"j{job}", job, events=12_000)
    pipe.expect(4)
    stop = threading.Event()
    switched = 0

    def flip() -> None:  # the active namenode changes every 0.1 s while the supersink works
        nonlocal switched
        while not stop.wait(0.1):
            active = webhdfs_endpoint.active()
            webhdfs_endpoint.failover(1 - (active or 0))
            switched += 1

    flipper = threading.Thread(target=flip)
    flipper.start()
    # A failover in the middle of a part's upload fails that load (a streamed upload is not retried);
    # the supersink retries the load, as a restarted one would, until it commits.
    attempts = 0
    try:
        while attempts < 30:
            attempts += 1
            _load(pipe, url, FileLayout(row_group_rows=500, rows_per_file=2_000)).ledger.close()
            if pipe.status()["state"] == "loaded":
                break
    finally:
        stop.set()
        flipper.join()
    assert switched >= 5, f"only {switched} failovers happened during the run"
    st = pipe.status()
    assert (st["state"], st["events_loaded"]) == ("loaded", 48_000), st
    assert _committed_events(url).equals(synthetic(1, 2, 3, 4, events=12_000))


def test_a_namenode_down_mid_load_fails_over_to_the_other(tmp_path: Path, webhdfs_endpoint: WebHdfsEndpoint) -> None:
    url = webhdfs_endpoint.url_for("/down")
    pipe = Pipeline(tmp_path)
    pipe.produce("j1", 1, events=20_000)
    pipe.expect(1)
    # Each part file's upload is slowed down, so that the load (10 parts) is under way when nn0 goes.
    webhdfs_endpoint.inject(Fault(node="datanode", op="CREATE", count=10_000, delay=0.3))
    loading = threading.Event()

    def take_down() -> None:
        loading.wait(60)
        time.sleep(1.0)
        webhdfs_endpoint.failover(1)
        webhdfs_endpoint.stop_namenode(0)

    killer = threading.Thread(target=take_down)
    killer.start()
    started = time.monotonic()
    loading.set()
    sink = _load(pipe, url, FileLayout(row_group_rows=500, rows_per_file=2_000))
    killer.join()
    assert time.monotonic() - started > 1.5, "the load ended before the namenode went down"
    sink.ledger.close()
    st = pipe.status()
    assert (st["state"], st["events_loaded"]) == ("loaded", 20_000), st
    assert _committed_events(url).equals(synthetic(1, events=20_000))


def test_a_commit_marker_refused_by_a_quota_leaves_no_part_in_the_partition_tree(
    tmp_path: Path, webhdfs_endpoint: WebHdfsEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parts are moved in right before the marker is written; a namenode that refuses the marker's
    CREATE (a space quota) must not leave them visible to readers of the root while the quota holds."""
    url = webhdfs_endpoint.url_for("/quota")
    pipe = Pipeline(tmp_path)
    pipe.produce("j1", 1)
    pipe.expect(1)
    write_marker = Warehouse.write_marker_once

    def over_quota(self: Warehouse, dataset: str, task: str, marker: dict[str, object]) -> None:
        webhdfs_endpoint.inject(Fault(node="namenode", op="CREATE", count=100, exception="DSQuotaExceededException"))
        write_marker(self, dataset, task, marker)

    monkeypatch.setattr(Warehouse, "write_marker_once", over_quota)
    _load(pipe, url).ledger.close()
    assert pipe.status()["state"] == "load-failed"
    warehouse = Warehouse.from_url(url)
    try:
        assert list(warehouse.parts("ds", "task1")) == [], "uncommitted parts in the partition tree"
        seen = pads.dataset(f"{warehouse.root}", format="parquet", partitioning="hive", filesystem=warehouse.fs)
        assert seen.count_rows() == 0
    finally:
        warehouse.close()
    monkeypatch.setattr(Warehouse, "write_marker_once", write_marker)
    webhdfs_endpoint.clear_faults()
    _load(pipe, url).ledger.close()
    assert pipe.status()["state"] == "loaded"
    assert _committed_events(url).equals(synthetic(1))


def test_reconcile_force_amend_and_status_on_webhdfs(tmp_path: Path, webhdfs: str) -> None:
    """The operator's commands on a WebHDFS warehouse: reconcile a ledger from the store, force a partial
    load, amend it with the late job, and read the state back."""
    pipe = Pipeline(tmp_path)
    pipe.produce("j1", 1)
    pipe.produce("j2", 2)
    state = str(tmp_path / "rebuilt.db")
    store = (tmp_path / "store").as_uri()
    rebuilt = sink_cli("reconcile", "--store", store, "--state", state)
    assert rebuilt.returncode == 0, rebuilt.stderr
    forced = sink_cli("load", "--task", "task1", "--store", store, "--warehouse", webhdfs, "--state", state, "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["rows"] == 6_000 and json.loads(forced.stdout)["partial"] is True
    pipe.produce("j3", 3)
    assert sink_cli("reconcile", "--store", store, "--state", state).returncode == 0
    status = json.loads(sink_cli("status", "--state", state, "--json").stdout)["tasks"][0]
    assert status["late_jobs"] == [{"job": "j3", "attempt": 1, "events": 3_000}]
    amended = sink_cli("load", "--task", "task1", "--store", store, "--warehouse", webhdfs, "--state", state, "--amend")
    assert amended.returncode == 0, amended.stderr
    assert json.loads(amended.stdout)["amendment"] == 1
    status = json.loads(sink_cli("status", "--state", state, "--json").stdout)["tasks"][0]
    assert (status["events_loaded"], status["late_jobs"]) == (9_000, [])
    assert _committed_events(webhdfs).equals(synthetic(1, 2, 3))
