"""Fault injection: every scenario must end with each produced event in the warehouse exactly once.

Each scenario runs on the embedded default and on the real servers (SeaweedFS S3 for chunks and
warehouse, ActiveMQ STOMP for pointers), with `ei-supersink run` as a real process. The terminal
summary prints, per scenario, events expected / loaded / duplicated / lost.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from supersink.warehouse import Warehouse
from tests.integration.faultkit import (
    DATASET,
    Backend,
    assert_exactly_once,
    check_warehouse,
    kill,
    produce_task,
    run_sink,
    start_sink,
    tail,
    task_state,
    wait_for,
)
from testservers import ActiveMQ, SeaweedFS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

#: (crash point, which pass of it): inside intake, and many places inside the load.
CRASHES = [
    ("intake.fetched", 1),
    ("intake.fetched", 9),
    ("intake.recorded", 1),
    ("intake.recorded", 17),
    ("intake.recorded", 31),
    ("load.claimed", 1),
    ("load.row_group", 1),
    ("load.row_group", 5),
    ("load.row_group", 12),
    ("load.part_closed", 1),
    ("load.part_closed", 3),
    ("load.parts_done", 1),
    ("load.committed", 1),
]


#: The fault scenarios run on the WebHDFS warehouse too.
ALL_BACKENDS = pytest.mark.parametrize("backend", ["embedded", "servers", "webhdfs"], indirect=True)


@ALL_BACKENDS
@pytest.mark.parametrize(("point", "nth"), CRASHES, ids=[f"{p}:{n}" for p, n in CRASHES])
def test_sigkill_at_a_crash_point_then_restart(
    backend: Backend, tmp_path: Path, point: str, nth: int, fault_report: Callable[[str], None]
) -> None:
    produced = produce_task(backend, twice=True)
    state = tmp_path / "ledger.db"
    crashed = run_sink(backend, state, 2.0, f"{point}:{nth}")
    assert crashed.returncode == -9, (
        f"expected a SIGKILL at {point}:{nth}, got {crashed.returncode}\n{tail(crashed.stderr)}"
    )
    restarted = run_sink(backend, state, 2.0)
    assert restarted.returncode == 0, tail(restarted.stderr)
    outcome = check_warehouse(backend, produced)
    fault_report(outcome.line(f"{backend.name} SIGKILL at {point}:{nth}"))
    assert_exactly_once(outcome)
    st = task_state(state, produced.task, backend.env)
    assert (st["state"], st["events_loaded"]) == ("loaded", outcome.expected)
    assert st["superseded"] == [{"job": "job2", "attempt": 1, "complete": False}]


@ALL_BACKENDS
def test_repeated_random_sigkills(backend: Backend, tmp_path: Path, fault_report: Callable[[str], None]) -> None:
    produced = produce_task(backend, jobs=6)
    state = tmp_path / "ledger.db"
    rng = random.Random(20261124)
    kills = 0
    for _ in range(6):
        proc = start_sink(backend, state, 2.0)
        time.sleep(rng.uniform(0.8, 2.5))
        if proc.poll() is not None:
            proc.communicate()
            break
        kill(proc)
        kills += 1
    final = run_sink(backend, state, 2.0)
    assert final.returncode == 0, tail(final.stderr)
    outcome = check_warehouse(backend, produced)
    fault_report(outcome.line(f"{backend.name} {kills} random SIGKILLs"))
    assert kills >= 1
    assert_exactly_once(outcome)


def test_duplicated_and_reordered_delivery(
    backend: Backend, tmp_path: Path, fault_report: Callable[[str], None]
) -> None:
    # Every pointer twice; all of them in reverse: manifests before their chunks, the expectation last.
    produced = produce_task(backend, twice=True, reverse=True, expectation_last=True)
    state = tmp_path / "ledger.db"
    ran = run_sink(backend, state, 2.0)
    assert ran.returncode == 0, tail(ran.stderr)
    counters = json.loads(ran.stdout.strip().splitlines()[-1])
    assert counters["quarantined"] == 0
    outcome = check_warehouse(backend, produced)
    fault_report(outcome.line(f"{backend.name} every pointer twice, in reverse order"))
    assert_exactly_once(outcome)


@ALL_BACKENDS
def test_two_supersinks_on_one_queue_and_warehouse(
    backend: Backend, tmp_path: Path, fault_report: Callable[[str], None]
) -> None:
    tasks = [produce_task(backend, seed_base=100 * i) for i in range(3)]
    args = ("--rescan-seconds", "1")
    one = start_sink(backend, tmp_path / "one.db", 8.0, *args)
    two = start_sink(backend, tmp_path / "two.db", 8.0, *args)
    for proc in (one, two):
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, tail(err)
    warehouse = Warehouse.from_url(backend.warehouse) if backend.name == "embedded" else None
    for produced in tasks:
        outcome = check_warehouse(backend, produced)
        fault_report(outcome.line(f"{backend.name} two supersinks, {produced.task}"))
        assert_exactly_once(outcome)
        if warehouse is not None:
            claim = json.loads(Path(warehouse.claim_path(DATASET, produced.task)).read_text())
            marker = warehouse.read_marker(DATASET, produced.task)
            assert marker is not None and marker["loaded_by"] == claim["owner"]


@pytest.mark.parametrize("backend", ["servers"], indirect=True)
def test_broker_restart_mid_run(
    backend: Backend, tmp_path: Path, activemq: ActiveMQ, fault_report: Callable[[str], None]
) -> None:
    state = tmp_path / "ledger.db"
    proc = start_sink(backend, state, 20.0)
    first = produce_task(backend, jobs=3)
    wait_for(lambda: state.exists() and task_state(state, first.task, backend.env)["state"] == "loaded", 120,
             "the first task to load")  # fmt: skip
    activemq.restart()
    second = produce_task(backend, jobs=3, seed_base=50)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, tail(err)
    for produced in (first, second):
        outcome = check_warehouse(backend, produced)
        fault_report(outcome.line(f"broker restarted mid-run, {produced.task}"))
        assert_exactly_once(outcome)
    connections = err.count(") is up, heartbeats")
    assert 2 <= connections <= 3, f"one reconnect after the restart, no storm: {connections} connections"
    assert "STOMP consumer reconnected" in err


@pytest.mark.parametrize("backend", ["servers"], indirect=True)
def test_object_store_outage_mid_run(
    backend: Backend, tmp_path: Path, seaweedfs: SeaweedFS, fault_report: Callable[[str], None]
) -> None:
    produced = produce_task(backend, jobs=3)
    state = tmp_path / "ledger.db"
    seaweedfs.stop()
    try:
        proc = start_sink(backend, state, 15.0)
        time.sleep(8)
        assert proc.poll() is None, "the supersink must keep running while the store is down"
    finally:
        seaweedfs.start()
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, tail(err)
    assert "store failure" in err or "postponed" in err
    outcome = check_warehouse(backend, produced)
    fault_report(outcome.line("object store down at start, back after 8 s"))
    assert_exactly_once(outcome)
