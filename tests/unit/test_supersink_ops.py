"""Operator features on the embedded default: deadlines, forced loads, reconcile, quarantine retry, claims."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from eventindex.errors import AlreadyCommittedError
from eventindex.transport import open_consumer
from supersink.amend import NothingToAmendError, amend
from supersink.ledger import Ledger
from supersink.service import Supersink, reconcile_into
from supersink.warehouse import Warehouse
from tests.faultstore import Fault, FaultyStore
from tests.helpers import Pipeline, Recorder, assert_same_events, synthetic


def run_with_deadline(pipe: Pipeline, deadline: float) -> Supersink:
    ledger = Ledger(pipe.root / "ledger.db")
    sink = Supersink(ledger, pipe.store, Warehouse.from_url((pipe.root / "wh").as_uri()), task_deadline=deadline)
    with open_consumer(pipe.broker) as consumer:
        sink.run(consumer, threading.Event(), until_idle=0.3)
    ledger.close()
    return sink


def test_deadline_fails_the_task_naming_what_is_missing_and_late_data_still_loads(pipe: Pipeline) -> None:
    pipe.expect(3, events=9_000)
    pipe.produce("j1", 1)
    pipe.produce("j2", 2, die_after=2)
    run_with_deadline(pipe, 0.0)
    st = pipe.status()
    assert st["state"] == "failed"
    assert "not complete 0s after it was first seen" in st["detail"]
    assert "job j2 attempt 1: no manifest yet (2 chunks seen)" in st["detail"]
    assert "1 of 3 expected jobs not seen yet" in st["detail"]
    pipe.produce("j2", 2, attempt=2)
    pipe.produce("j3", 3)
    run_with_deadline(pipe, 3600)
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded(), synthetic(1, 2, 3))


def test_a_task_claimed_by_another_supersink_is_not_written_and_its_commit_is_adopted(
    pipe: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    pipe.produce("j1", 1)
    pipe.expect(1)
    warehouse = Warehouse.from_url((pipe.root / "wh").as_uri())
    warehouse.begin("ds", "task1")
    warehouse.claim("ds", "task1", "the-other-supersink")
    with caplog.at_level(logging.INFO):
        pipe.run_supersink()
        st = pipe.status()
        assert st["state"] == "claimed-elsewhere" and "the-other-supersink" in st["detail"]
        assert list(warehouse.parts("ds", "task1")) == []
        pipe.run_supersink()  # looked at again: still claimed
    warned = [r.message for r in caplog.records if r.levelno >= logging.WARNING and "claimed-elsewhere" in r.message]
    assert len(warned) == 1 and "the-other-supersink" in warned[0], "a warning (seen with --quiet), once"
    assert any("standing down" in r.message and r.levelno == logging.INFO for r in caplog.records)
    # The other supersink commits; ours adopts the commit on its next look.
    warehouse.write_marker_once("ds", "task1", {"task": "task1", "dataset": "ds", "rows": 3000, "files": []})
    with pytest.raises(AlreadyCommittedError):
        warehouse.write_marker_once("ds", "task1", {"rows": 1})
    pipe.run_supersink()
    st = pipe.status()
    assert (st["state"], st["events_loaded"]) == ("loaded", 3000)


def test_a_restarted_supersink_resumes_its_own_claim(pipe: Pipeline) -> None:
    pipe.produce("j1", 1)
    pipe.expect(1)
    ledger = Ledger(pipe.root / "ledger.db")
    owner = ledger.instance_id()
    ledger.close()
    warehouse = Warehouse.from_url((pipe.root / "wh").as_uri())
    warehouse.begin("ds", "task1")
    warehouse.claim("ds", "task1", owner)  # as if it crashed after claiming
    staged = Path(warehouse.staging_dir("ds", "task1"))
    (staged / "part-00007.parquet.staged").write_bytes(b"stray from the crashed load")
    pipe.task_dir().mkdir(parents=True)
    (pipe.task_dir() / "part-00008.parquet").write_bytes(b"moved in by a crash during the commit's moves")
    pipe.run_supersink()
    assert pipe.status()["state"] == "loaded"
    assert sorted(warehouse.parts("ds", "task1")) == ["part-00000.parquet"]
    assert sorted(p.name for p in staged.iterdir()) == ["_CLAIM.json"], "the crashed load's temporaries removed"
    assert_same_events(pipe.loaded(), synthetic(1))


def test_the_claim_of_a_supersink_lost_for_good_is_released_by_deleting_it(pipe: Pipeline) -> None:
    """The operator's procedure in the README: a supersink died with its ledger while it held a claim."""
    pipe.produce("j1", 1)
    pipe.expect(1)
    warehouse = Warehouse.from_url((pipe.root / "wh").as_uri())
    warehouse.begin("ds", "task1")
    warehouse.claim("ds", "task1", "a-supersink-lost-with-its-disk")
    staged = Path(warehouse.staging_dir("ds", "task1"))
    (staged / "part-00000.parquet.staged").write_bytes(b"half a part from the lost load")
    (staged / "part-00003.parquet.staged").write_bytes(b"another")
    pipe.run_supersink()
    st = pipe.status()
    assert st["state"] == "claimed-elsewhere" and "a-supersink-lost-with-its-disk" in st["detail"]
    assert not pipe.task_dir().exists(), "nothing of an uncommitted task is in the partition tree"
    Path(warehouse.claim_path("ds", "task1")).unlink()
    pipe.run_supersink()
    assert pipe.status()["state"] == "loaded"
    assert sorted(warehouse.parts("ds", "task1")) == ["part-00000.parquet"], "the lost load's parts replaced"
    assert_same_events(pipe.loaded(), synthetic(1))


def test_reconcile_with_a_warehouse_loads_what_it_recovered_reading_each_chunk_once(pipe: Pipeline) -> None:
    for job, seed in (("j1", 1), ("j2", 2)):
        pipe.produce(job, seed, publisher=Recorder())  # every pointer lost
    pipe.expect(2)
    pipe.run_supersink()
    assert pipe.status()["state"] == "waiting"
    chunks = Fault("get", "delay", key="*/chunk-*")
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        report = reconcile_into(
            ledger, FaultyStore(pipe.store, chunks), "", Warehouse.from_url((pipe.root / "wh").as_uri())
        )
    finally:
        ledger.close()
    assert (report.manifests_recorded, sorted(report.tasks)) == (2, ["task1"])
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded(), synthetic(1, 2))
    assert chunks.seen == 6, "each chunk read once: verified by the reconcile, loaded from the bytes kept"


def test_reconcile_rebuilding_a_lost_ledger_adopts_the_commits_the_warehouse_holds(pipe: Pipeline) -> None:
    """The expectations are gone with the old ledger: a committed task is loaded, not `waiting` for one."""
    pipe.produce("j1", 1)
    pipe.produce("j1", 2, task="task2")  # never expected, never committed
    pipe.expect(1)
    pipe.run_supersink()
    assert pipe.status()["state"] == "loaded"
    marker = (pipe.task_dir() / "_SUCCESS.json").read_bytes()
    for suffix in ("", "-wal", "-shm"):
        (pipe.root / f"ledger.db{suffix}").unlink(missing_ok=True)
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        report = reconcile_into(ledger, pipe.store, "", Warehouse.from_url((pipe.root / "wh").as_uri()))
    finally:
        ledger.close()
    assert (report.manifests_recorded, sorted(report.tasks)) == (2, ["task1", "task2"])
    st = pipe.status()
    assert (st["state"], st["events_loaded"], st["chosen"]) == ("loaded", 3_000, {"j1": 1}), st
    assert (pipe.task_dir() / "_SUCCESS.json").read_bytes() == marker, "adopted, not loaded again"
    assert pipe.status("task2")["state"] == "waiting"
    assert_same_events(pipe.loaded(), synthetic(1))


def test_reconcile_rebuilding_a_lost_ledger_adopts_a_commit_with_its_amendments(pipe: Pipeline) -> None:
    """A partial commit completed by an amendment is adopted whole: loaded, both jobs, no late job to amend."""
    pipe.expect(2)
    pipe.produce("j1", 1)
    pipe.run_supersink()
    ledger = Ledger(pipe.root / "ledger.db")
    sink = Supersink(ledger, pipe.store, Warehouse.from_url((pipe.root / "wh").as_uri()))
    sink.force_load("task1")
    ledger.close()
    pipe.produce("j2", 2, die_after=1)  # the late job's first attempt dies
    pipe.produce("j2", 2, attempt=2)
    pipe.run_supersink()
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        amend(ledger, sink.warehouse, task="task1", store=pipe.store, assembly=sink.intake.assembly, owner=sink.owner)
    finally:
        ledger.close()
    before = pipe.status()
    for suffix in ("", "-wal", "-shm"):
        (pipe.root / f"ledger.db{suffix}").unlink(missing_ok=True)
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        reconcile_into(ledger, pipe.store, "", Warehouse.from_url((pipe.root / "wh").as_uri()))
    finally:
        ledger.close()
    st = pipe.status()
    assert (st["state"], st["events_loaded"], st["chosen"], st["late_jobs"]) == (
        "loaded",
        6_000,
        {"j1": 1, "j2": 2},
        [],
    )
    assert st["superseded"] == before["superseded"] == [{"job": "j2", "attempt": 1, "complete": False}]
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        with pytest.raises(NothingToAmendError):
            amend(
                ledger, sink.warehouse, task="task1", store=pipe.store, assembly=sink.intake.assembly, owner=sink.owner
            )
    finally:
        ledger.close()
    assert not list(pipe.task_dir().glob("_AMEND-0002*")), "adopted, not amended again"
