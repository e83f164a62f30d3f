"""The broker-only transport: events through the broker, loaded into the same Parquet as chunks are."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pytest

from eventindex.events import events_to_table, table_to_events
from eventindex.schema import eventindex_pb2 as pb
from eventindex.transport import open_consumer, open_publisher
from producer.inputs.synthetic import SyntheticInput
from producer.job import JobSpec
from producer.mq import MAX_MESSAGE_BYTES, MqJobRunner
from producer.summary import FileSummaryBuilder
from tests.helpers import Pipeline, assert_same_events, synthetic

EVENTS = 600  # ~2 events per 10 kB message: every message costs durable queue and ledger writes


def produce_mq(
    pipe: Pipeline, job: str, seed: int, events: int = EVENTS, attempt: int = 1, task: str = "task1"
) -> None:
    spec = JobSpec(task=task, job=job, attempt=attempt, dataset="ds", chunk_events=1_000)
    with open_publisher(pipe.broker) as pub:
        MqJobRunner(spec, pub).run([SyntheticInput(events, seed)])


def test_event_records_round_trip(events: pa.Table) -> None:
    assert events_to_table(table_to_events(events)).equals(events)


def test_messages_respect_the_size_limit_and_form_one_group_per_file(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path)
    produce_mq(pipe, "j1", 1, events=500)
    messages = []
    with open_consumer(pipe.broker) as consumer:
        while (m := consumer.receive(0.1)) is not None:
            messages.append(m)
            consumer.ack(m)
    *events, manifest = messages
    parsed = [pb.Pointer.FromString(m.body) for m in events]
    assert all(p.kind == pb.POINTER_KIND_EVENTS and len(p.payload) <= MAX_MESSAGE_BYTES for p in parsed)
    assert [p.part for p in parsed] == list(range(len(parsed)))
    assert [p.last for p in parsed] == [False] * (len(parsed) - 1) + [True]
    assert {m.headers["JMSXGroupID"] for m in events} == {SyntheticInput(500, 1).guid}
    assert sum(p.events for p in parsed) == 500
    assert all(hashlib.sha256(p.payload).digest() == p.sha256 for p in parsed)
    inline = pb.Pointer.FromString(manifest.body)
    assert inline.kind == pb.POINTER_KIND_MANIFEST and not inline.url and inline.payload


def test_both_transports_load_identical_warehouses(tmp_path: Path) -> None:
    by_store, by_mq = Pipeline(tmp_path / "store"), Pipeline(tmp_path / "mq")
    for job, seed in (("j1", 1), ("j2", 2)):
        by_store.produce(job, seed, events=EVENTS)
        produce_mq(by_mq, job, seed)
    for pipe in (by_store, by_mq):
        pipe.expect(2)
        pipe.run_supersink()
        assert pipe.status()["state"] == "loaded"
    assert by_mq.loaded().equals(by_store.loaded())
    assert_same_events(by_mq.loaded(), synthetic(1, 2, events=EVENTS))


@pytest.mark.parametrize("order", ["reversed", "twice"])
def test_mq_messages_reordered_or_duplicated(tmp_path: Path, order: str) -> None:
    pipe = Pipeline(tmp_path)
    staging = Pipeline(tmp_path / "staging")
    produce_mq(staging, "j1", 1)
    produce_mq(staging, "j2", 2)
    with open_consumer(staging.broker) as consumer:
        sent = []
        while (m := consumer.receive(0.1)) is not None:
            sent.append(m)
            consumer.ack(m)
    replay = list(reversed(sent)) if order == "reversed" else sent + sent
    with open_publisher(pipe.broker) as pub:
        for m in replay:
            pub.send(m.body, {k: v for k, v in m.headers.items() if k != "JMSXGroupID"}, m.headers.get("JMSXGroupID"))
    pipe.expect(2)
    sink = pipe.run_supersink()
    assert sink.counters.quarantined == 0
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded(), synthetic(1, 2, events=EVENTS))


def test_a_dead_mq_job_without_manifest_is_superseded(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path)
    spec = JobSpec(task="task1", job="j1", attempt=1, dataset="ds", chunk_events=1_000)
    source = SyntheticInput(EVENTS, 1)
    with open_publisher(pipe.broker) as pub:  # the file's messages went out; the job died before its manifest
        MqJobRunner(spec, pub)._send_file(0, source, FileSummaryBuilder(source, 0))
    produce_mq(pipe, "j1", 1, attempt=2)
    pipe.expect(1)
    pipe.run_supersink()
    st = pipe.status()
    assert st["chosen"] == {"j1": 2}
    assert st["superseded"] == [{"job": "j1", "attempt": 1, "complete": False}]
    assert_same_events(pipe.loaded(), synthetic(1, events=EVENTS))
