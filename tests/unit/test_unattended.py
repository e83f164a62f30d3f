"""Issue 8, isolation: one bad object, message or load stops one task alone, in a named state with
its reason; every other task flows, and a new attempt (or the object restored) heals the task."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

import supersink.fetch
import supersink.loader
from eventindex.codec import decode_manifest, encode_manifest
from eventindex.errors import StoreAccessError
from eventindex.names import chunk_key, manifest_key
from eventindex.pointers import CONTENT_TYPE, object_pointer, parse_pointer
from eventindex.schema import eventindex_pb2 as pb
from eventindex.transport import open_consumer, open_publisher
from producer.inputs.synthetic import SyntheticInput
from producer.job import JobSpec
from producer.mq import MqJobRunner
from supersink.ledger import Ledger
from supersink.service import StuckTask, Supersink
from supersink.warehouse import Warehouse
from tests.faultstore import Fault, FaultyStore
from tests.helpers import Pipeline, Recorder, assert_same_events, synthetic


def run(pipe: Pipeline, **options: Any) -> tuple[Supersink, list[StuckTask]]:
    """One supersink run until idle, in process, as `ei-supersink run --until-idle` does."""
    ledger = Ledger(pipe.root / "ledger.db")
    sink = Supersink(ledger, pipe.store, Warehouse.from_url((pipe.root / "wh").as_uri()), **options)
    try:
        with open_consumer(pipe.broker) as consumer:
            sink.run(consumer, threading.Event(), until_idle=0.3)
        return sink, sink.stuck()
    finally:
        ledger.close()


def chunk_path(pipe: Pipeline, task: str, job: str, attempt: int, seq: int) -> Path:
    return pipe.root / "store" / chunk_key(task, job, attempt, seq)


def two_tasks_recorded_not_loaded(pipe: Pipeline) -> None:
    """task1 (job j1, seed 1) and task2 (job j1, seed 2): every chunk verified and recorded, nothing
    loaded yet (the expectations come later)."""
    pipe.produce("j1", 1, task="task1")
    pipe.produce("j1", 2, task="task2")
    _, stuck = run(pipe)
    assert stuck == []
    assert pipe.status("task1")["state"] == pipe.status("task2")["state"] == "waiting"


def test_a_chunk_corrupted_after_intake_damages_its_task_alone_and_a_new_attempt_heals_it(pipe: Pipeline) -> None:
    two_tasks_recorded_not_loaded(pipe)
    bad = chunk_path(pipe, "task1", "j1", 1, 1)
    bad.write_bytes(bad.read_bytes()[:-10] + b"corrupted!")
    pipe.expect(1, task="task1")
    pipe.expect(1, task="task2")
    _, stuck = run(pipe)  # the load of task1 meets the corrupt chunk: no exception, task2 loads

    assert pipe.status("task2")["state"] == "loaded"
    assert_same_events(pipe.loaded("task2"), synthetic(2))
    st = pipe.status("task1")
    assert st["state"] == "damaged"
    key = chunk_key("task1", "j1", 1, 1)
    assert f"chunk {key}: at load: changed since it was verified" in st["detail"]
    assert [s.task for s in stuck] == ["task1"] and key in stuck[0].line()
    assert not pipe.task_dir("task1").exists(), "nothing of the damaged task is visible"

    pipe.produce("j1", 1, task="task1", attempt=2)  # the job rerun: no manual step
    _, stuck = run(pipe)
    assert stuck == []
    st = pipe.status("task1")
    assert (st["state"], st["chosen"]) == ("loaded", {"j1": 2})
    assert st["superseded"] == [{"job": "j1", "attempt": 1, "complete": False}]
    assert_same_events(pipe.loaded("task1"), synthetic(1))


def test_a_chunk_deleted_after_intake_heals_when_the_object_is_restored(pipe: Pipeline) -> None:
    two_tasks_recorded_not_loaded(pipe)
    gone = chunk_path(pipe, "task1", "j1", 1, 2)
    kept = gone.read_bytes()
    gone.unlink()
    pipe.expect(1, task="task1")
    pipe.expect(1, task="task2")
    run(pipe)
    st = pipe.status("task1")
    assert st["state"] == "damaged" and "gone from the store since it was verified" in st["detail"]
    assert pipe.status("task2")["state"] == "loaded"

    gone.write_bytes(kept)  # an operator restores the object: the next rescan verifies it again
    _, stuck = run(pipe, rescan_seconds=0.01)
    assert stuck == []
    assert pipe.status("task1")["state"] == "loaded"
    assert_same_events(pipe.loaded("task1"), synthetic(1))


def test_a_warehouse_write_failure_is_its_task_load_failed_retried_and_the_others_flow(pipe: Pipeline) -> None:
    pipe.produce("j1", 1, task="task1")
    pipe.produce("j1", 2, task="task2")
    blocker = pipe.root / "wh" / "_staging" / "dataset=ds" / "task=task1"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the load needs a directory")
    pipe.expect(1, task="task1")
    pipe.expect(1, task="task2")
    _, stuck = run(pipe)
    st = pipe.status("task1")
    assert st["state"] == "load-failed"
    assert "failure 1, next try in" in st["detail"] and "task=task1" in st["detail"]
    assert [(s.task, s.state) for s in stuck] == [("task1", "load-failed")]
    assert pipe.status("task2")["state"] == "loaded"

    blocker.unlink()
    _, stuck = run(pipe)  # a restart retries at once; a running service after its backoff
    assert stuck == []
    assert_same_events(pipe.loaded("task1"), synthetic(1))


def test_an_unforeseen_error_in_one_load_is_that_tasks_load_failed(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = supersink.loader.load_task

    def load_task(plan: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if plan.task == "task1":
            raise ZeroDivisionError("a bug that only task1's data triggers")
        return real(plan, *args, **kwargs)

    monkeypatch.setattr("supersink.service.load_task", load_task)
    pipe.produce("j1", 1, task="task1")
    pipe.produce("j1", 2, task="task2")
    pipe.expect(1, task="task1")
    pipe.expect(1, task="task2")
    _, stuck = run(pipe)
    assert [(s.task, s.state) for s in stuck] == [("task1", "load-failed")]
    assert "unexpected ZeroDivisionError: a bug that only task1's data triggers" in stuck[0].detail
    assert pipe.status("task2")["state"] == "loaded"


def test_an_unforeseen_error_handling_a_message_quarantines_that_message(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = supersink.fetch.verify_chunk

    def verify_chunk(store: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        if key == chunk_key("task1", "j1", 1, 0):
            raise KeyError("a bug this one object triggers")
        return real(store, key, *args, **kwargs)

    monkeypatch.setattr("supersink.intake.verify_chunk", verify_chunk)
    pipe.produce("j1", 2, task="task2")
    pipe.expect(1, task="task2")
    rec = Recorder()
    pipe.produce("j1", 1, task="task1", publisher=rec)
    first_chunk = rec.sent[0]
    with open_publisher(pipe.broker) as pub:
        pub.send(*first_chunk)
    sink, _ = run(pipe)
    assert sink.counters.quarantined == 1
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        [entry] = ledger.quarantined()
    finally:
        ledger.close()
    assert entry.reason.startswith("unexpected KeyError handling this message")
    assert entry.body == first_chunk[0]
    assert pipe.status("task2")["state"] == "loaded"


def queue_rows(pipe: Pipeline, *rows: tuple[object, object]) -> None:
    """Messages put into the sqlite queue behind the publisher's back: (body, headers) as stored."""
    pipe.send_raw(b"")  # creates the queue's table
    db = sqlite3.connect(pipe.root / "queue.db")
    with db:
        db.execute("DELETE FROM messages")
        db.executemany(
            "INSERT INTO messages (queue, body, headers, enqueued) VALUES ('eventindex', ?, ?, 0)", list(rows)
        )
    db.close()


def test_messages_malformed_in_any_part_are_quarantined_with_their_raw_bytes(pipe: Pipeline) -> None:
    rec = Recorder()
    pipe.produce("j1", 5, task="task1", publisher=rec)
    good = [(body, json.dumps(headers | ({"JMSXGroupID": g} if g else {}))) for body, headers, g in rec.sent]
    chunk_body, chunk_headers = rec.sent[0][0], rec.sent[0][1]
    pointer = pb.Pointer.FromString(chunk_body)
    outside = object_pointer(
        pb.POINTER_KIND_CHUNK, "file:///etc/passwd", 10, b"\0" * 32, 1, "task1", "j1", 1, "ds"
    ).SerializeToString()
    bad: list[tuple[object, object]] = [
        (b"\x00\xffnot a protobuf", "{}"),  # body
        (chunk_body[:-3], "{}"),  # truncated pointer (in its last field)
        (b"x" * (5 * 1024 * 1024), "{}"),  # size: above the pointer limit (kept: the first 4 MiB)
        (chunk_body, "{not json"),  # headers that are not JSON
        (chunk_body, '["a", "list"]'),  # headers that are not an object of strings
        (chunk_body, b"\xff\xfe{}"),  # headers that are not UTF-8 (a BLOB)
        (chunk_body, json.dumps({**chunk_headers, "ei-task": "another-task"})),  # headers contradict the body
        (chunk_body, json.dumps({**chunk_headers, "ei-kind": "manifest"})),
        (outside, "{}"),  # a pointer out of the store
    ]
    queue_rows(pipe, *bad, *good)
    db = sqlite3.connect(pipe.root / "queue.db")
    with db:  # encoding: a body stored as TEXT that is not UTF-8
        db.execute(
            "INSERT INTO messages (queue, body, headers, enqueued) VALUES ('eventindex', CAST(? AS TEXT), '{}', 0)",
            (b"\xc3\x28 not utf-8",),
        )
    db.close()
    pipe.expect(1, task="task1")
    sink, stuck = run(pipe)

    assert sink.counters.quarantined == len(bad) + 1
    assert pipe.status("task1")["state"] == "loaded", "the good messages after the bad ones still load"
    assert_same_events(pipe.loaded("task1"), synthetic(5))
    assert stuck == []
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        entries = ledger.quarantined()
    finally:
        ledger.close()
    reasons = [e.reason for e in entries]
    assert "message body is not a protobuf Pointer" in reasons[0]
    assert "too large to be a pointer" in reasons[2]
    assert "headers are not JSON" in reasons[3] and "not a JSON object of strings" in reasons[4]
    assert "headers are not JSON" in reasons[5]
    assert "header ei-task 'another-task' but the body names task 'task1'" in reasons[6]
    assert "header ei-kind 'manifest' but the body is a chunk pointer" in reasons[7]
    assert "lies outside the store" in reasons[8]
    assert entries[9].body == b"\xc3\x28 not utf-8"
    for entry, (body, _headers) in zip(entries, bad, strict=False):
        assert isinstance(body, bytes)
        assert entry.body == body[: 4 * 1024 * 1024], "the raw bytes are kept"
        assert entry.size == len(body)
    assert entries[3].headers == {"raw-headers": "{not json"}
    assert (entries[6].task, entries[6].job, entries[6].attempt) == ("task1", pointer.job, 1)


@pytest.mark.parametrize("carried", [True, False], ids=["bytes-in-the-pointer", "pointer-without-bytes"])
def test_a_quarantined_manifest_names_its_job_in_the_tasks_problems(pipe: Pipeline, carried: bool) -> None:
    """A damaged manifest: the bytes its pointer carries, or (a pointer as older producers send it, without
    them) the stored object."""
    rec = Recorder()
    pipe.produce("j1", 6, task="task1", publisher=rec)
    with open_publisher(pipe.broker) as pub:
        for body, headers, group in rec.sent:
            pointer = parse_pointer(body)
            if pointer.kind == pb.POINTER_KIND_MANIFEST:
                assert len(pointer.payload) == pointer.size > 0, "a small manifest travels in its pointer"
                if carried:
                    pointer.payload = pointer.payload[:-1] + bytes([pointer.payload[-1] ^ 1])
                else:
                    pointer.ClearField("payload")
                    manifest = pipe.root / "store" / manifest_key("task1", "j1", 1)
                    data = manifest.read_bytes()
                    manifest.unlink()
                    manifest.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
                body = pointer.SerializeToString()
            pub.send(body, headers, group)
    pipe.expect(1, task="task1")
    _, stuck = run(pipe)
    st = pipe.status("task1")
    assert st["state"] == "damaged"
    assert any("job j1 attempt 1: message quarantined" in p and "sha256" in p for p in st["problems"])
    assert [s.task for s in stuck] == ["task1"]


def test_late_duplicates_of_a_committed_task_are_recognised_not_fetched(pipe: Pipeline) -> None:
    rec = Recorder()
    pipe.produce("j1", 7, task="task1", publisher=rec)
    with open_publisher(pipe.broker) as pub:
        for body, headers, group in rec.sent:
            pub.send(body, headers, group)
    pipe.expect(1, task="task1")
    run(pipe)
    assert pipe.status("task1")["state"] == "loaded"
    for path in (pipe.root / "store" / "task1").rglob("*.e*"):
        path.unlink()  # gone, as after retention: a late duplicate must not need them
    with open_publisher(pipe.broker) as pub:
        for body, headers, group in rec.sent:
            pub.send(body, headers, group)
    sink, stuck = run(pipe)
    assert (sink.counters.after_commit, sink.counters.quarantined) == (len(rec.sent), 0)
    assert stuck == [] and pipe.status("task1")["state"] == "loaded"


def test_message_with_unparsable_headers_from_the_queue_carries_a_problem(pipe: Pipeline) -> None:
    queue_rows(pipe, (b"body", "{oops"), (b"body", json.dumps({"content-type": CONTENT_TYPE})))
    with open_consumer(pipe.broker) as consumer:
        first, second = consumer.receive(1), consumer.receive(1)
    assert first is not None and second is not None
    assert first.problem is not None and "not JSON" in first.problem
    assert second.problem is None and second.headers == {"content-type": CONTENT_TYPE}
    assert hashlib.sha256(first.body).digest() == hashlib.sha256(b"body").digest()


def test_a_chunk_that_fails_verification_at_intake_is_named_once_per_problem(pipe: Pipeline) -> None:
    pipe.expect(1, task="task1")
    pipe.produce("j1", 1, task="task1")
    bad = chunk_path(pipe, "task1", "j1", 1, 1)
    bad.write_bytes(bad.read_bytes()[:-10] + b"corrupted!")
    run(pipe)
    st = pipe.status("task1")
    key = chunk_key("task1", "j1", 1, 1)
    assert st["state"] == "damaged"
    named = [p for p in st["problems"] if key in p]
    assert named and all(p.count(key) == 1 for p in named), named
    assert any("sha256" in p for p in named), named


def _sent_with(pipe: Pipeline, sent: list[tuple[bytes, dict[str, str], str | None]], change: Any) -> None:
    """Send what a producer sent, each pointer passed through `change` (which edits it in place)."""
    with open_publisher(pipe.broker) as pub:
        for body, headers, group in sent:
            pointer = parse_pointer(body)
            change(pointer)
            pub.send(pointer.SerializeToString(), headers, group)


def _quarantined(pipe: Pipeline) -> list[Any]:
    ledger = Ledger(pipe.root / "ledger.db")
    try:
        return ledger.quarantined()
    finally:
        ledger.close()


def test_a_manifest_listing_a_chunk_twice_is_quarantined_and_the_service_goes_on(pipe: Pipeline) -> None:
    """Found by fault-hunting: the ledger's uniqueness constraint stopped the service (exit 6) at every
    restart, with every message behind it waiting."""
    rec = Recorder()
    pipe.produce("j1", 11, task="task1", publisher=rec)

    def listed_twice(pointer: pb.Pointer) -> None:
        if pointer.kind == pb.POINTER_KIND_MANIFEST:
            manifest = decode_manifest(pointer.payload)
            manifest.chunks.append(manifest.chunks[0])
            manifest.total_events += manifest.chunks[0].events
            pointer.payload = encode_manifest(manifest).data
            pointer.size, pointer.sha256 = len(pointer.payload), hashlib.sha256(pointer.payload).digest()

    _sent_with(pipe, rec.sent, listed_twice)
    pipe.expect(1, task="task1")
    pipe.produce("j1", 12, task="task2")
    pipe.expect(1, task="task2")
    _, stuck = run(pipe)

    [entry] = _quarantined(pipe)
    assert "manifest task1/j1/1/manifest.eim lists chunk 0 twice" in entry.reason
    assert (entry.task, entry.job, entry.attempt) == ("task1", "j1", 1)
    assert pipe.status("task1")["state"] == "damaged" and [s.task for s in stuck] == ["task1"]
    assert pipe.status("task2")["state"] == "loaded", "the messages behind it flow"
    assert_same_events(pipe.loaded("task2"), synthetic(12))


def test_a_constraint_the_ledger_enforces_is_the_messages_failure_not_the_services(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a message holds that the intake's checks miss but a ledger constraint refuses: its
    transaction is rolled back and the message quarantined; a ledger that fails otherwise still stops it."""
    real = Ledger.record_attempt

    def record_attempt(self: Ledger, task: str, *args: Any, **kwargs: Any) -> None:
        if task == "task1":
            raise sqlite3.IntegrityError("UNIQUE constraint failed: a check the intake lacks")
        real(self, task, *args, **kwargs)

    monkeypatch.setattr(Ledger, "record_attempt", record_attempt)
    pipe.produce("j1", 13, task="task1")
    pipe.expect(1, task="task1")
    pipe.produce("j1", 14, task="task2")
    pipe.expect(1, task="task2")
    _, stuck = run(pipe)
    [entry] = _quarantined(pipe)
    assert entry.reason.startswith("unexpected IntegrityError handling this message: UNIQUE constraint failed")
    assert (entry.task, entry.job, entry.attempt) == ("task1", "j1", 1)
    assert pipe.status("task1")["state"] == "damaged" and [s.task for s in stuck] == ["task1"]
    assert pipe.status("task2")["state"] == "loaded"

    def broken(self: Ledger, *args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Ledger, "record_attempt", broken)
    pipe.produce("j1", 15, task="task3")
    with pytest.raises(sqlite3.OperationalError):
        run(pipe)


def test_broker_only_events_the_schema_cannot_hold_damage_their_task(pipe: Pipeline) -> None:
    """An event message whose event does not fit (an event number of 2^64-1, a 100-byte L1 mask): quarantined
    under its task, which is damaged (and `run --until-idle` names it), not left waiting for ever."""
    for job, change in (("j1", "event_number"), ("j2", "l1_tav")):
        rec = Recorder()
        spec = JobSpec(task="task1", job=job, attempt=1, dataset="ds", chunk_events=1_000)
        MqJobRunner(spec, rec).run([SyntheticInput(300, 20 + len(job))])
        edited = [False]

        def unfit(pointer: pb.Pointer, change: str = change, edited: list[bool] = edited) -> None:
            if pointer.kind == pb.POINTER_KIND_EVENTS and not edited[0]:
                batch = pb.EventBatch.FromString(pointer.payload)
                if change == "event_number":
                    batch.events[0].event_number = 2**64 - 1
                else:
                    batch.events[0].l1_tav = b"\x01" * 100
                pointer.payload = batch.SerializeToString()
                pointer.size, pointer.sha256 = len(pointer.payload), hashlib.sha256(pointer.payload).digest()
                edited[0] = True

        _sent_with(pipe, rec.sent, unfit)
    pipe.expect(2, task="task1")
    _, stuck = run(pipe)
    entries = _quarantined(pipe)
    assert [(e.task, e.job) for e in entries] == [("task1", "j1"), ("task1", "j2")]
    assert all(e.reason.startswith("events messages of input file 0: ") for e in entries), entries
    st = pipe.status("task1")
    assert st["state"] == "damaged" and [s.task for s in stuck] == ["task1"]
    assert sum("message quarantined" in p for p in st["problems"]) == 2


def test_a_store_that_refuses_the_supersinks_credentials_stops_it_with_the_message_put_back(pipe: Pipeline) -> None:
    """Found on SeaweedFS with a wrong secret key: every GET answered 403, and `run --until-idle` put each
    message back and retried for ever. A store that refuses this client ends the run (exit 4 on the command
    line) with nothing lost: the message goes back to the queue, and a run with the right credentials loads it."""
    pipe.produce("j1", 16, task="task1")
    pipe.expect(1, task="task1")
    ledger = Ledger(pipe.root / "ledger.db")
    refused = FaultyStore(
        pipe.store, Fault("get", "denied", message="cannot read {key}: SignatureDoesNotMatch (HTTP 403)")
    )
    sink = Supersink(ledger, refused, Warehouse.from_url((pipe.root / "wh").as_uri()))
    try:
        with open_consumer(pipe.broker) as consumer, pytest.raises(StoreAccessError, match="HTTP 403"):
            sink.run(consumer, threading.Event(), until_idle=0.3)
    finally:
        ledger.close()
    _, stuck = run(pipe)
    assert stuck == [] and pipe.status("task1")["state"] == "loaded"
    assert_same_events(pipe.loaded("task1"), synthetic(16))


def test_an_expectation_that_changes_is_reported(pipe: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    """Two announcements for one task that disagree: the last one counts, and the change is a problem
    line an operator sees (a redelivered announcement, the same again, is not)."""
    pipe.produce("j1", 17, task="task1")
    pipe.expect(2, task="task1")
    pipe.expect(2, task="task1")
    pipe.expect(1, 3_000, task="task1")
    with caplog.at_level("WARNING"):
        _, stuck = run(pipe)
    changes = [r.getMessage() for r in caplog.records if "expectation changed" in r.getMessage()]
    assert changes == ["task task1: expectation changed from 2 jobs to 1 jobs of 3000 events"]
    assert stuck == [] and pipe.status("task1")["state"] == "loaded"
    pipe.expect(3, task="task1")
    with caplog.at_level("WARNING"):
        run(pipe)
    assert "task task1: expectation changed from 1 jobs of 3000 events to 3 jobs (after its commit, state loaded)" in [
        r.getMessage() for r in caplog.records
    ]
