"""Producer -> embedded queue + file store -> supersink -> Parquet, in process, on the embedded default."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest

from eventindex.errors import StoreError, WarehouseError
from eventindex.names import chunk_key
from eventindex.pointers import object_pointer
from eventindex.schema import eventindex_pb2 as pb
from eventindex.store.local import LocalStore
from eventindex.transport import open_consumer, open_publisher
from supersink.ledger import Ledger
from supersink.service import Supersink
from supersink.status import status
from supersink.warehouse import ClaimedElsewhereError, Warehouse
from tests.helpers import SORT, Pipeline, Recorder, assert_same_events, synthetic


def test_dead_attempt_is_superseded_and_all_events_load_once(pipe: Pipeline) -> None:
    pipe.expect(3)
    pipe.produce("j1", 1)
    pipe.produce("j2", 2, die_after=1)
    pipe.produce("j2", 2, attempt=2)
    pipe.produce("j3", 3)
    sink = pipe.run_supersink()
    st = pipe.status()
    assert st["state"] == "loaded"
    assert st["chosen"] == {"j1": 1, "j2": 2, "j3": 1}
    assert st["superseded"] == [{"job": "j2", "attempt": 1, "complete": False}]
    loaded = pipe.loaded()
    assert_same_events(loaded, synthetic(1, 2, 3))
    assert set(loaded.column("attempt").to_pylist()) == {1, 2}
    assert loaded.filter(pc.equal(loaded.column("job"), "j2")).column("attempt").to_pylist() == [2] * 3000
    assert sink.counters.tasks_loaded == 1 and sink.counters.quarantined == 0


def test_duplicated_and_reordered_delivery_gives_the_same_result(pipe: Pipeline) -> None:
    rec = Recorder()
    for job, seed in (("a", 11), ("b", 12)):
        pipe.produce(job, seed, publisher=rec)
    assert len(rec.sent) == 8
    # Manifests first, every pointer twice, the expectation after all its jobs.
    replay = list(reversed(rec.sent)) + rec.sent
    with open_publisher(pipe.broker) as pub:
        for body, headers, group in replay:
            pub.send(body, headers, group)
    pipe.expect(2)
    sink = pipe.run_supersink()
    assert sink.counters.messages == 17
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded(), synthetic(11, 12))


def test_highest_complete_attempt_wins(pipe: Pipeline) -> None:
    pipe.produce("j1", 21, attempt=1)
    pipe.produce("j1", 22, attempt=3)  # a different input: visible if the wrong attempt loads
    pipe.expect(1)
    pipe.run_supersink()
    st = pipe.status()
    assert st["chosen"] == {"j1": 3}
    assert st["superseded"] == [{"job": "j1", "attempt": 1, "complete": True}]
    assert_same_events(pipe.loaded(), synthetic(22))


def test_missing_chunk_keeps_the_job_unresolved_and_is_named(pipe: Pipeline) -> None:
    rec = Recorder()
    pipe.produce("j1", 31, publisher=rec)
    (pipe.root / "store" / chunk_key("task1", "j1", 1, 1)).unlink()
    with open_publisher(pipe.broker) as pub:
        for body, headers, group in rec.sent:
            if b"chunk-000001" not in body:
                pub.send(body, headers, group)
    pipe.expect(1)
    pipe.run_supersink()
    st = pipe.status()
    assert st["state"] == "damaged", "a chunk known to be missing is named as the task's problem, not awaited"
    assert "chunk task1/j1/1/chunk-000001.eic: pointer to a missing object" in st["detail"]
    assert st["jobs_resolved"] == 0
    assert any("job j1 attempt 1: chunk-000001 missing" in m and "not found" in m for m in st["missing"])
    assert not (pipe.task_dir() / "_SUCCESS.json").exists()


def test_task_stays_waiting_until_expected_jobs_are_resolved(pipe: Pipeline) -> None:
    pipe.produce("j1", 41)
    pipe.run_supersink()
    assert "no task expectation" in pipe.status()["missing"][0]
    pipe.expect(2)
    pipe.run_supersink()
    st = pipe.status()
    assert st["state"] == "waiting" and "1 of 2 expected jobs not seen yet" in st["missing"]
    pipe.produce("j2", 42)
    pipe.run_supersink()
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded(), synthetic(41, 42))


def test_event_total_mismatch_fails_the_task(pipe: Pipeline) -> None:
    pipe.produce("j1", 51)
    pipe.expect(1, events=3_001)
    pipe.run_supersink()
    st = pipe.status()
    assert st["state"] == "failed"
    assert st["failure"] == "chosen attempts hold 3000 events, 3001 expected (-1)"


def test_duplicate_events_are_loaded_once_and_reported(pipe: Pipeline) -> None:
    pipe.produce("j1", 61)
    pipe.produce("j2", 61)  # the same input indexed twice
    pipe.expect(2)
    pipe.run_supersink()
    st = pipe.status()
    assert st["state"] == "loaded"
    assert st["duplicates"]["count"] == 3_000
    assert len(st["duplicates"]["examples"]) == 10
    assert set(st["duplicates"]["examples"][0]["jobs"]) == {"j1", "j2"}
    # Every duplicate is listed next to the marker, with every copy's job, attempt and input file GUID.
    listed = json.loads((pipe.task_dir() / st["duplicates"]["listed_in"]).read_text())["duplicates"]
    produced = synthetic(61)
    assert [(d["run_number"], d["event_number"]) for d in listed] == list(
        zip(produced.column("run_number").to_pylist(), produced.column("event_number").to_pylist(), strict=True)
    )
    guids = produced.column("input_guid").to_pylist()
    for entry, guid in zip(listed, guids, strict=True):
        assert sorted((c["job"], c["attempt"], c["input_guid"]) for c in entry["copies"]) == [
            ("j1", 1, guid),
            ("j2", 1, guid),
        ]
        assert [c["loaded"] for c in entry["copies"]] == [True, False]
    loaded = pipe.loaded()
    expected = synthetic(61)
    assert_same_events(loaded, expected)


def test_bad_messages_are_quarantined_and_the_service_goes_on(pipe: Pipeline) -> None:
    store = pipe.store
    bad_chunk = b"EIC1" + b"\0" * 100
    key = chunk_key("task1", "j9", 1, 0)
    store.put(key, bad_chunk)

    def pointer(**kw: Any) -> bytes:
        fields: dict[str, Any] = dict(
            kind=pb.POINTER_KIND_CHUNK,
            url=store.object_url(key),
            size=len(bad_chunk),
            sha256=hashlib.sha256(bad_chunk).digest(),
            events=1,
            task="task1",
            job="j9",
            attempt=1,
            dataset="ds",
        )
        fields.update(kw)
        return object_pointer(**fields).SerializeToString()

    pipe.send_raw(b"\x00not a protobuf at all\xff")
    pipe.send_raw(pointer())  # corrupt chunk
    pipe.send_raw(pointer(url="file:///etc/passwd"))  # outside the store
    pipe.send_raw(pointer(task="../etc"))  # invalid name
    pipe.send_raw(pointer(url=store.object_url(chunk_key("task1", "j9", 1, 5)), seq=5))  # missing object
    forged = pb.Pointer()
    forged.ParseFromString(pointer())
    forged.schema_version = 99
    pipe.send_raw(forged.SerializeToString())  # unknown schema version
    pipe.produce("j1", 71)
    pipe.expect(1)
    sink = pipe.run_supersink()
    assert sink.counters.quarantined == 6
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded(), synthetic(71))
    ledger = Ledger(pipe.root / "ledger.db")
    reasons = [r.reason for r in ledger.quarantined()]
    report = status(ledger)
    ledger.close()
    assert report["quarantined"] == 6
    assert any("not a protobuf" in r for r in reasons)
    assert any("bad magic" in r or "shorter" in r or "truncated" in r.lower() or "body" in r for r in reasons)
    assert any("outside the store" in r for r in reasons)
    assert any("'../etc'" in r for r in reasons)
    assert any("missing object" in r for r in reasons)
    assert any("schema version 99" in r for r in reasons)
    assert all("\n" not in r for r in reasons)


def test_restart_after_partial_consumption_loads_exactly_once(pipe: Pipeline) -> None:
    pipe.produce("j1", 81)
    pipe.produce("j2", 82)
    pipe.expect(2)
    # First run: consume only some messages, then "crash" (stop without finishing).
    ledger = Ledger(pipe.root / "ledger.db")
    sink = Supersink(ledger, pipe.store, Warehouse.from_url((pipe.root / "wh").as_uri()))
    consumer = open_consumer(pipe.broker)
    for _ in range(4):
        m = consumer.receive(1)
        assert m is not None
        sink.intake.handle(m)  # recorded but never acked: redelivered after the restart
    consumer.close()
    ledger.close()
    first = pipe.run_supersink()
    assert first.counters.redelivered == 4
    second = pipe.run_supersink()
    assert second.counters.messages == 0 and second.counters.tasks_loaded == 0
    assert pipe.status()["events_loaded"] == 6_000
    assert_same_events(pipe.loaded(), synthetic(81, 82))


def test_a_commit_marker_the_disk_has_no_room_for_leaves_no_part_in_the_partition_tree(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parts are moved into the partition right before the marker is written: a full disk refusing the
    marker (and the duplicates listing, for an amendment too) must not leave them to readers of the root."""
    pipe.produce("j1", 1)
    pipe.produce("j2", 1)  # the same events: a duplicates listing is written next to the parts
    pipe.expect(2)
    put = LocalStore.put

    def full(self: LocalStore, key: str, data: bytes) -> None:
        if key.endswith("_SUCCESS.json"):
            raise StoreError(f"cannot write {key} in {self.url}: No space left on device")
        put(self, key, data)

    monkeypatch.setattr(LocalStore, "put", full)
    pipe.run_supersink().ledger.close()
    st = pipe.status()
    assert st["state"] == "load-failed" and "No space left on device" in st["detail"]
    assert not list((pipe.root / "wh").glob("dataset=*/task=*/*.parquet")), "uncommitted parts are visible"
    assert pads.dataset(str(pipe.root / "wh"), format="parquet").count_rows() == 0
    monkeypatch.setattr(LocalStore, "put", put)
    pipe.run_supersink().ledger.close()
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded().sort_by(SORT), synthetic(1))


def test_a_claim_that_cannot_be_written_but_is_held_already_is_ours(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry of a load whose marker the full disk refused: its claim is there, so no new one is needed."""
    warehouse = Warehouse.from_url((pipe.root / "wh").as_uri())
    warehouse.claim("ds", "task1", "sink-a")

    def full(self: LocalStore, key: str, data: bytes) -> None:
        raise StoreError(f"cannot write {key} in {self.url}: No space left on device")

    monkeypatch.setattr(LocalStore, "put", full)
    warehouse.claim("ds", "task1", "sink-a")
    with pytest.raises(ClaimedElsewhereError, match="sink-a"):
        warehouse.claim("ds", "task1", "sink-b")
    with pytest.raises(WarehouseError, match=r"cannot write the load claim of task2: .*No space left"):
        warehouse.claim("ds", "task2", "sink-a")
