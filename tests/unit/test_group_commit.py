"""Group commit: the messages waiting are recorded in one ledger transaction, each in a savepoint of its
own, and acked only after it commits. A quarantined message or a store failure in the middle of a batch
undoes nothing of the others."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import supersink.service
from eventindex.names import chunk_key
from eventindex.transport import Consumer, Message, open_consumer, open_publisher
from supersink.ledger import Ledger
from supersink.metrics import MeteredConsumer, SinkMetrics
from supersink.service import STATES, Supersink
from supersink.warehouse import Warehouse
from tests.faultstore import Fault, FaultyStore
from tests.helpers import Pipeline, Recorder, assert_same_events, synthetic

SORT = [("run_number", "ascending"), ("event_number", "ascending")]


def test_a_failed_nested_transaction_undoes_its_own_writes_alone(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    with ledger.transaction():
        ledger.touch_task("a", "d")
        with pytest.raises(RuntimeError), ledger.transaction():
            ledger.touch_task("b", "d")
            raise RuntimeError("this step only")
        ledger.touch_task("c", "d")
    assert [t.task for t in ledger.open_tasks()] == ["a", "c"]
    with pytest.raises(RuntimeError), ledger.transaction():
        ledger.touch_task("e", "d")
        raise RuntimeError("the whole transaction")
    assert [t.task for t in ledger.open_tasks()] == ["a", "c"]
    ledger.close()


class Batches:
    """Counts the messages of each batch a supersink records, and checks each ack comes after its commit."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, ledger: Ledger, consumer: Consumer) -> None:
        self.sizes: list[int] = []
        self.acked = 0
        record = Supersink._record_batch
        ack = consumer.ack

        def counted(sink: Supersink, *args: Any) -> Any:
            recorded, failed = record(sink, *args)
            self.sizes.append(len(recorded))
            return recorded, failed

        def acking(message: Message) -> None:
            assert ledger._depth == 0, "a message is acked only after its batch committed"
            self.acked += 1
            ack(message)

        monkeypatch.setattr(Supersink, "_record_batch", counted)
        monkeypatch.setattr(consumer, "ack", acking)


def drain(pipe: Pipeline, monkeypatch: pytest.MonkeyPatch, *faults: Fault) -> Batches:
    monkeypatch.setattr(supersink.service, "BATCH_SECONDS", 60.0)  # one batch, however slow the machine
    ledger = Ledger(pipe.root / "ledger.db")
    sink = Supersink(ledger, FaultyStore(pipe.store, *faults), Warehouse.from_url((pipe.root / "wh").as_uri()),
                     rescan_seconds=None)  # fmt: skip
    with open_consumer(pipe.broker) as consumer:
        batches = Batches(monkeypatch, ledger, consumer)
        sink.run(consumer, threading.Event(), until_idle=0.3)
    ledger.close()
    return batches


def queue(pipe: Pipeline, jobs: int, garbage_after: int | None = None) -> int:
    """The task's expectation and its jobs' pointers, all waiting; returns how many messages."""
    rec = Recorder()
    for job in range(jobs):
        pipe.produce(f"j{job}", job + 1, publisher=rec)
    with open_publisher(pipe.broker) as pub:
        for i, (body, headers, group) in enumerate(rec.sent):
            pub.send(body, headers, group)
            if i == garbage_after:
                pub.send(b"\x00 not a pointer", {}, group)
    pipe.expect(jobs)
    return len(rec.sent) + 1 + (garbage_after is not None)


def test_the_waiting_messages_are_recorded_in_one_transaction_and_acked_after_it(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = queue(pipe, 3)
    batches = drain(pipe, monkeypatch)
    assert batches.sizes == [waiting] and batches.acked == waiting
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded().sort_by(SORT), synthetic(1, 2, 3))


def test_a_quarantined_message_in_a_batch_undoes_nothing_of_the_others(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = queue(pipe, 3, garbage_after=4)
    batches = drain(pipe, monkeypatch)
    assert batches.sizes == [waiting] and batches.acked == waiting
    ledger = Ledger(pipe.root / "ledger.db")
    assert len(ledger.quarantined()) == 1
    ledger.close()
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded().sort_by(SORT), synthetic(1, 2, 3))


def test_a_store_failure_mid_batch_commits_the_messages_before_it_and_gives_its_own_back(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supersink.service, "MAX_TRANSIENT_BACKOFF", 0.2)
    waiting = queue(pipe, 3)
    second_job_chunk = Fault("get", "unavailable", key=chunk_key("task1", "j1", 1, 1), times=1)
    batches = drain(pipe, monkeypatch, second_job_chunk)
    assert second_job_chunk.seen >= 2, "failed once, then fetched again"
    first = batches.sizes[0]
    assert 0 < first < waiting, "the batch ended at the failing message"
    assert sum(batches.sizes) == waiting == batches.acked, "every message recorded and acked once"
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded().sort_by(SORT), synthetic(1, 2, 3))


def test_the_message_metrics_count_each_message_of_a_batch_by_its_own_outcome(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supersink.service, "BATCH_SECONDS", 60.0)
    queue(pipe, 3, garbage_after=4)  # 3 jobs x (3 chunks + a manifest), an expectation, one garbage message
    ledger = Ledger(pipe.root / "ledger.db")
    sink = Supersink(ledger, pipe.store, Warehouse.from_url((pipe.root / "wh").as_uri()), rescan_seconds=None)
    metrics = SinkMetrics(ledger.path, sink.counters, STATES)
    with open_consumer(pipe.broker) as consumer:
        sink.run(MeteredConsumer(consumer, metrics), threading.Event(), until_idle=0.3)
    ledger.close()
    counted = {
        (labels["kind"], labels["outcome"]): sample.value
        for family in metrics.messages.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and sample.value
        for labels in [sample.labels]
    }
    assert counted == {
        ("chunk", "recorded"): 9,
        ("manifest", "recorded"): 3,
        ("task-expectation", "recorded"): 1,
        ("unknown", "quarantined"): 1,
    }
