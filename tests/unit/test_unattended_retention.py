"""Issue 8, retention: after a commit and its grace period the transit objects go (only the attempts
the commit accounted for, only under the store), the ledger is compacted to a summary that keeps a
late duplicate harmless, summaries are forgotten later and quarantine entries expire."""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from eventindex.errors import StoreUnavailableError
from eventindex.names import chunk_key
from eventindex.store.local import LocalStore
from eventindex.transport import open_consumer, open_publisher
from supersink.amend import amend
from supersink.ledger import Ledger
from supersink.retention import RetentionPolicy
from supersink.service import Supersink, reconcile_into
from supersink.status import render, status
from supersink.warehouse import Warehouse
from tests.helpers import Pipeline, Recorder, assert_same_events, synthetic

NOW = RetentionPolicy(transit=0.0, forget=None, quarantine=None)


def run(pipe: Pipeline, policy: RetentionPolicy | None = NOW, **options: Any) -> Supersink:
    ledger = Ledger(pipe.root / "ledger.db")
    sink = Supersink(ledger, pipe.store, warehouse(pipe), retention=policy, **options)
    try:
        with open_consumer(pipe.broker) as consumer:
            sink.run(consumer, threading.Event(), until_idle=0.3)
    finally:
        ledger.close()
    return sink


def warehouse(pipe: Pipeline) -> Warehouse:
    return Warehouse.from_url((pipe.root / "wh").as_uri())


def objects(pipe: Pipeline, task: str = "task1") -> list[str]:
    root = pipe.root / "store"
    return sorted(str(p.relative_to(root)) for p in (root / task).rglob("*") if p.is_file())


def rows(pipe: Pipeline, table: str, task: str = "task1") -> int:
    db = sqlite3.connect(pipe.root / "ledger.db")
    try:
        return int(db.execute(f"SELECT count(*) FROM {table} WHERE task = ?", (task,)).fetchone()[0])
    finally:
        db.close()


def committed_events(pipe: Pipeline, task: str = "task1") -> pa.Table:
    """The task as a reader following the reading rule sees it: its marker's files and its amendments'."""
    found = warehouse(pipe).committed("ds", task)
    assert found is not None
    return pads.dataset([f"{found.directory}/{name}" for name in found.files], format="parquet").to_table()


def test_transit_objects_of_the_committed_attempts_go_a_later_attempt_stays_and_is_reported(
    pipe: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    pipe.expect(2)
    rec = Recorder()
    pipe.produce("j1", 1, die_after=1, publisher=rec)  # attempt 1 dies: superseded, its chunk is transit too
    pipe.produce("j1", 1, attempt=2, publisher=rec)
    pipe.produce("j2", 2, publisher=rec)
    pipe.produce("j1", 3, task="task2")  # another task, not committed: untouched
    with open_publisher(pipe.broker) as pub:
        for body, headers, group in rec.sent:
            pub.send(body, headers, group)
    run(pipe, policy=None)
    assert pipe.status()["state"] == "loaded"
    pipe.produce("j2", 2, attempt=4)  # arrives after the commit: not loaded, so never deleted
    other = objects(pipe, "task2")
    assert rows(pipe, "chunks") > 0

    with caplog.at_level(logging.INFO):
        sink = run(pipe)  # the sweep at start-up purges the task (grace 0)
    assert sink.retention is not None and sink.retention.counters.tasks_purged == 1
    late = [chunk_key("task1", "j2", 4, s) for s in range(3)] + ["task1/j2/4/manifest.eim"]
    assert objects(pipe) == sorted(late)
    assert not (pipe.root / "store" / "task1" / "j1").exists(), "emptied directories go too"
    assert objects(pipe, "task2") == other
    st = pipe.status()
    assert st["state"] == "loaded" and st["purged_at"] is not None
    assert (
        "kept 4 object(s) the commit did not account for" in st["purge_note"] and "job j2 attempt 4" in st["purge_note"]
    )
    assert any("job j2 attempt 4" in r.message for r in caplog.records if r.levelno == logging.WARNING)
    assert st["late_attempts"] == [{"job": "j2", "attempt": 4}]
    assert (st["jobs_resolved"], st["chosen"], st["events"]) == (2, {"j1": 2, "j2": 1}, 6_000)
    assert (st["missing"], st["failure"]) == ([], None)
    for table in ("chunks", "attempts", "listed_chunks", "seen_jobs"):
        remaining = rows(pipe, table)
        assert remaining == (3 if table in ("chunks", "listed_chunks") else 1), table  # only attempt 4's
    assert_same_events(pipe.loaded(), synthetic(1, 2))
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        assert "retention (" in render(status(ledger))
    finally:
        ledger.close()

    with open_publisher(pipe.broker) as pub:  # every pointer again, long after: harmless
        for body, headers, group in rec.sent:
            pub.send(body, headers, group)
    again = run(pipe)
    assert (again.counters.after_commit, again.counters.quarantined) == (len(rec.sent), 0)
    st = pipe.status()
    assert (st["state"], st["events_loaded"], st["quarantined"]) == ("loaded", 6_000, 0)


def test_nothing_is_deleted_before_the_grace_period_or_without_the_commit_marker(pipe: Pipeline) -> None:
    pipe.expect(1)
    pipe.produce("j1", 1)
    pipe.produce("j1", 2, task="task2")  # waiting for its expectation: never purged
    run(pipe, policy=RetentionPolicy(transit=3600.0))
    before = objects(pipe)
    assert len(before) == 4
    run(pipe, policy=RetentionPolicy(transit=3600.0))
    assert objects(pipe) == before, "within the grace period"

    (pipe.task_dir() / "_SUCCESS.json").unlink()  # the ledger says committed, the warehouse does not
    sink = run(pipe)
    assert objects(pipe) == before and len(objects(pipe, "task2")) == 4
    assert sink.retention is not None and sink.retention.counters.not_purged == ["task1"]
    assert pipe.status()["purge_note"] == "not purged: the warehouse has no commit marker for it"
    assert rows(pipe, "chunks") == 3, "rows are not compacted either"
    run(pipe, policy=RetentionPolicy(transit=0.0, forget=0.0))
    assert pipe.status()["purge_note"].startswith("not purged"), "never forgotten: an operator must look at it"
    assert objects(pipe) == before, "not tried again within the retry interval"


def test_a_task_left_alone_is_tried_again_and_purged_once_its_marker_is_back(pipe: Pipeline) -> None:
    """A warehouse that was not mounted (or a marker restored from a backup) must not switch retention off."""
    pipe.expect(1)
    pipe.produce("j1", 1)
    run(pipe, policy=None)
    marker = pipe.task_dir() / "_SUCCESS.json"
    saved = marker.read_bytes()
    marker.unlink()
    run(pipe, policy=RetentionPolicy(transit=0.0, forget=None, quarantine=None, retry=0.0))
    assert pipe.status()["purge_note"] == "not purged: the warehouse has no commit marker for it"
    assert len(objects(pipe)) == 4
    marker.write_bytes(saved)
    sink = run(pipe, policy=RetentionPolicy(transit=0.0, forget=None, quarantine=None, retry=0.0))
    assert sink.retention is not None and sink.retention.counters.tasks_purged == 1
    st = pipe.status()
    assert (st["state"], st["purge_note"], st["events_loaded"]) == ("loaded", None, 3_000)
    assert st["purged_at"] is not None and objects(pipe) == [] and rows(pipe, "chunks") == 0
    assert_same_events(pipe.loaded(), synthetic(1))


def test_a_warehouse_that_does_not_answer_pauses_retention_and_marks_nothing(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pipe.expect(1)
    pipe.produce("j1", 1)
    pipe.produce("j1", 2, task="task2")
    pipe.expect(1, task="task2")
    run(pipe, policy=None)
    before = objects(pipe) + objects(pipe, "task2")

    def unavailable(self: object, key: str, max_bytes: int = 0) -> bytes:
        raise StoreUnavailableError(f"GET {key}: 503 Slow Down, after 5 attempts")

    with monkeypatch.context() as patch:
        patch.setattr(LocalStore, "get", unavailable)  # the warehouse's control files (the chunk store is not read)
        with caplog.at_level(logging.WARNING):
            sink = run(pipe)
    assert sink.retention is not None and sink.retention.counters.not_purged == []
    assert any("retention paused 60s" in r.message and "503" in r.message for r in caplog.records), caplog.text
    assert objects(pipe) + objects(pipe, "task2") == before
    assert (pipe.status()["purged_at"], pipe.status("task2")["purged_at"]) == (None, None), "nothing marked"
    run(pipe)
    assert objects(pipe) == [] and objects(pipe, "task2") == []
    assert pipe.status()["purge_note"] is None and pipe.status("task2")["purge_note"] is None


def partial_load(pipe: Pipeline) -> Supersink:
    """Task task1 of two jobs, loaded with --force when only j1 is there."""
    pipe.expect(2)
    pipe.produce("j1", 1)
    run(pipe, policy=None)
    ledger = Ledger(pipe.root / "ledger.db")
    sink = Supersink(ledger, pipe.store, warehouse(pipe))
    sink.force_load("task1")
    ledger.close()
    return sink


def test_a_partial_load_keeps_its_rows_and_late_jobs_still_amend_then_go_too(pipe: Pipeline) -> None:
    sink = partial_load(pipe)
    run(pipe)
    st = pipe.status()
    assert st["state"] == "loaded-partial" and st["purged_at"] is not None
    assert objects(pipe) == [] and rows(pipe, "chunks") == 3, "objects gone, rows kept for an amendment"

    pipe.produce("j2", 2)
    run(pipe, policy=None)
    assert pipe.status()["late_jobs"] == [{"job": "j2", "attempt": 1, "events": 3_000}]
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        amend(ledger, warehouse(pipe), task="task1", store=pipe.store, assembly=sink.intake.assembly, owner=sink.owner)
    finally:
        ledger.close()
    assert pipe.status()["purged_at"] is None, "an amendment starts the grace period again"
    run(pipe)
    st = pipe.status()
    assert st["state"] == "loaded" and st["purged_at"] is not None and st["purge_note"] is None
    assert objects(pipe) == [] and rows(pipe, "chunks") == 0
    assert_same_events(committed_events(pipe).sort_by([("run_number", "ascending"), ("event_number", "ascending")]),
                       synthetic(1, 2))  # fmt: skip


def test_a_late_jobs_dead_attempt_is_superseded_by_the_amendment_and_its_objects_go(pipe: Pipeline) -> None:
    """An amendment accounts for the attempts its late jobs superseded, as a commit does: status lists
    them, and retention deletes their objects (they were kept for ever when the amendment said none)."""
    sink = partial_load(pipe)
    rec = Recorder()
    pipe.produce("j2", 2, die_after=1, publisher=rec)  # the late job's first attempt dies
    pipe.produce("j2", 2, attempt=2, publisher=rec)
    with open_publisher(pipe.broker) as pub:
        for body, headers, group in rec.sent:
            pub.send(body, headers, group)
    run(pipe, policy=None)
    assert pipe.status()["late_jobs"] == [{"job": "j2", "attempt": 2, "events": 3_000}]
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        amendment = amend(
            ledger, warehouse(pipe), task="task1", store=pipe.store, assembly=sink.intake.assembly, owner=sink.owner
        )
    finally:
        ledger.close()
    assert amendment["superseded"] == [{"job": "j2", "attempt": 1, "complete": False}]
    st = pipe.status()
    assert (st["state"], st["chosen"]) == ("loaded", {"j1": 1, "j2": 2})
    assert st["superseded"] == [{"job": "j2", "attempt": 1, "complete": False}]
    run(pipe)
    st = pipe.status()
    assert st["purged_at"] is not None and st["purge_note"] is None, st["purge_note"]
    assert objects(pipe) == [], "the dead attempt's chunk goes with the rest"
    assert st["superseded"] == [{"job": "j2", "attempt": 1, "complete": False}]
    assert_same_events(committed_events(pipe).sort_by([("run_number", "ascending"), ("event_number", "ascending")]),
                       synthetic(1, 2))  # fmt: skip


def test_summaries_are_forgotten_and_quarantine_entries_expire(pipe: Pipeline) -> None:
    pipe.expect(1)
    pipe.produce("j1", 1)
    pipe.send_raw(b"garbage")
    run(pipe, policy=RetentionPolicy(transit=0.0, forget=3600.0, quarantine=3600.0))
    run(pipe, policy=RetentionPolicy(transit=0.0, forget=3600.0, quarantine=3600.0))
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        assert ledger.task("task1") is not None and len(ledger.quarantined()) == 1
    finally:
        ledger.close()
    sink = run(pipe, policy=RetentionPolicy(transit=0.0, forget=0.0, quarantine=0.0))
    assert sink.retention is not None
    assert (sink.retention.counters.tasks_forgotten, sink.retention.counters.quarantine_expired) == (1, 1)
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        assert ledger.tasks() == [] and ledger.quarantined(None) == []
    finally:
        ledger.close()
    assert_same_events(pipe.loaded(), synthetic(1))


def test_the_quarantine_entries_of_a_task_not_loaded_do_not_expire(pipe: Pipeline) -> None:
    """The raw message of a damaged task's entry may be what heals it (`quarantine retry`); expiring it made
    the task look merely `waiting`, and its exit-3 line named an entry that was gone."""
    pipe.expect(1)
    pipe.produce("j1", 1)
    chunk = pipe.root / "store" / chunk_key("task1", "j1", 1, 1)
    chunk.write_bytes(b"\0" * 64 + chunk.read_bytes()[64:])  # damaged after its producer stored it
    pipe.send_raw(b"garbage")
    keep = RetentionPolicy(transit=0.0, forget=None, quarantine=3600.0)
    run(pipe, policy=keep)
    assert pipe.status()["state"] == "damaged"
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        entries = {entry.task for entry in ledger.quarantined(None)}
    finally:
        ledger.close()
    assert entries == {None, "task1"}

    sink = run(pipe, policy=RetentionPolicy(transit=0.0, forget=0.0, quarantine=0.0))
    assert sink.retention is not None and sink.retention.counters.quarantine_expired == 1, "the garbage only"
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        assert [entry.task for entry in ledger.quarantined(None)] == ["task1"]
    finally:
        ledger.close()
    st = pipe.status()
    assert (st["state"], st["quarantined"]) == ("damaged", 1), st


def test_reconcile_after_retention_does_not_record_an_attempt_the_commit_accounted_for(pipe: Pipeline) -> None:
    """A rerun of a loaded job (same attempt) after its rows were compacted: its objects are a late duplicate
    for reconcile as for the intake, not a new attempt that would make status say j1 is chosen and superseded."""
    pipe.expect(1)
    pipe.produce("j1", 1)
    run(pipe, policy=None)
    run(pipe)  # purged
    assert objects(pipe) == [] and rows(pipe, "attempts") == 0
    pipe.produce("j1", 1)  # the same attempt again: identical data
    pipe.produce("j1", 1, attempt=2)  # and a later attempt, after the commit
    run(pipe, policy=None)
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        report = reconcile_into(ledger, pipe.store, "", None)
    finally:
        ledger.close()
    assert (report.manifests_seen, report.manifests_recorded, report.already_known) == (2, 0, 2)
    st = pipe.status()
    assert (st["state"], st["chosen"], st["events_loaded"]) == ("loaded", {"j1": 1}, 3_000)
    assert st["superseded"] == [] and st["late_attempts"] == [{"job": "j1", "attempt": 2}], st
    assert st["purged_at"] is None, "the rerun's pointers made the task due for retention again"
    run(pipe)
    late = [chunk_key("task1", "j1", 2, seq) for seq in range(3)] + ["task1/j1/2/manifest.eim"]
    assert objects(pipe) == sorted(late), "the rerun's copies of attempt 1 go; the late attempt 2 is kept"
    st = pipe.status()
    assert st["purged_at"] is not None and "job j1 attempt 2" in st["purge_note"]
