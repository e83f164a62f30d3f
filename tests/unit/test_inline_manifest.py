"""A small manifest travels in its pointer as well as to the store: the supersink records it without a GET.

Pointers without the bytes (older producers, manifests above INLINE_MANIFEST_MAX_BYTES) are read as before.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pyarrow as pa
import pytest

import producer.job
from eventindex.errors import MessageError
from eventindex.names import manifest_key
from eventindex.pointers import INLINE_MANIFEST_MAX_BYTES, object_pointer, parse_pointer
from eventindex.schema import eventindex_pb2 as pb
from eventindex.transport import open_consumer, open_publisher
from producer.inputs.synthetic import SyntheticInput
from producer.job import JobRunner, JobSpec
from supersink.ledger import Ledger
from supersink.service import Supersink
from supersink.warehouse import Warehouse
from tests.faultstore import Fault, FaultyStore
from tests.helpers import Pipeline, Recorder, assert_same_events, synthetic

SORT = [("run_number", "ascending"), ("event_number", "ascending")]


def _pointer(kind: pb.PointerKind, payload: bytes, size: int) -> pb.Pointer:
    pointer = object_pointer(
        kind, url="file:///s/k", size=size, sha256=bytes(32), events=1, task="t", job="j", attempt=1, dataset="d"
    )
    pointer.payload = payload
    return pointer


def test_a_manifest_pointer_may_carry_its_bytes_a_chunk_pointer_may_not() -> None:
    ok = _pointer(pb.POINTER_KIND_MANIFEST, b"x" * 10, 10)
    assert parse_pointer(ok.SerializeToString()).payload == b"x" * 10
    with pytest.raises(MessageError, match="manifest bytes are 9 long, the pointer says 10"):
        parse_pointer(_pointer(pb.POINTER_KIND_MANIFEST, b"x" * 9, 10).SerializeToString())
    with pytest.raises(MessageError, match="a chunk pointer with a URL carries no payload"):
        parse_pointer(_pointer(pb.POINTER_KIND_CHUNK, b"x" * 10, 10).SerializeToString())
    big = INLINE_MANIFEST_MAX_BYTES + 1
    with pytest.raises(MessageError, match="more than 65,536"):
        parse_pointer(_pointer(pb.POINTER_KIND_MANIFEST, b"x" * big, big).SerializeToString())


def _produce(pipe: Pipeline, jobs: int) -> Recorder:
    rec = Recorder()
    for job in range(jobs):
        pipe.produce(f"j{job}", job + 1, publisher=rec)
    return rec


def test_the_producer_sends_a_small_manifest_in_its_pointer(pipe: Pipeline) -> None:
    rec = _produce(pipe, 1)
    manifests = [p for p in (parse_pointer(body) for body, _, _ in rec.sent) if p.kind == pb.POINTER_KIND_MANIFEST]
    assert len(manifests) == 1
    stored = (pipe.root / "store" / manifest_key("task1", "j0", 1)).read_bytes()
    assert manifests[0].payload == stored and manifests[0].size == len(stored) <= INLINE_MANIFEST_MAX_BYTES


def test_a_manifest_above_the_limit_goes_by_url_only(pipe: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(producer.job, "INLINE_MANIFEST_MAX_BYTES", 10)
    rec = _produce(pipe, 1)
    manifest = next(p for p in (parse_pointer(b) for b, _, _ in rec.sent) if p.kind == pb.POINTER_KIND_MANIFEST)
    assert manifest.size > 10 and manifest.payload == b""


def _drain(pipe: Pipeline, rec: Recorder, strip: bool) -> tuple[Fault, Fault]:
    """Send what the producers sent (without the manifests' bytes if `strip`); run a supersink that does not
    rescan the store; return what it read from the store: (manifest GETs, chunk GETs), as zero-second delays."""
    with open_publisher(pipe.broker) as pub:
        for body, headers, group in rec.sent:
            pointer = parse_pointer(body)
            if strip and pointer.kind == pb.POINTER_KIND_MANIFEST:
                pointer.ClearField("payload")
            pub.send(pointer.SerializeToString(), headers, group)
    pipe.expect(3)
    return _run_counting_reads(pipe)


def _run_counting_reads(pipe: Pipeline, rescan_seconds: float | None = None) -> tuple[Fault, Fault]:
    """Run a supersink until idle; return what it read from the store: (manifest GETs, chunk GETs)."""
    manifests, chunks = Fault("get", "delay", key="*/manifest.eim"), Fault("get", "delay", key="*/chunk-*")
    store = FaultyStore(pipe.store, manifests, chunks)
    sink = Supersink(Ledger(pipe.root / "ledger.db"), store, Warehouse.from_url((pipe.root / "wh").as_uri()),
                     rescan_seconds=rescan_seconds)  # fmt: skip
    with open_consumer(pipe.broker) as consumer:
        sink.run(consumer, threading.Event(), until_idle=0.3)
    sink.ledger.close()
    return manifests, chunks


@pytest.mark.parametrize("strip", [False, True], ids=["bytes-in-the-pointer", "pointer-without-bytes"])
def test_the_supersink_gets_a_carried_manifest_from_its_pointer(pipe: Pipeline, strip: bool) -> None:
    rec = _produce(pipe, 3)  # 3 jobs x 3 chunks
    manifests, chunks = _drain(pipe, rec, strip)
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded().sort_by([("run_number", "ascending"), ("event_number", "ascending")]),
                       synthetic(1, 2, 3))  # fmt: skip
    # every chunk is read once, to verify it (its load takes the bytes kept since); a manifest only by its URL
    assert (manifests.seen, chunks.seen) == ((3 if strip else 0), 9)


def test_a_task_just_announced_is_not_rescanned_behind_its_pointers(pipe: Pipeline) -> None:
    """The first rescan of a task waits `rescan_seconds` from when the ledger first saw it: a supersink
    starting on a backlog takes the manifests from their pointers, not from a store listing."""
    rec = _produce(pipe, 3)
    pipe.expect(3)

    _run_counting_reads(pipe, 3600.0)  # the expectation alone: the ledger knows the task from now on
    assert pipe.status()["state"] == "waiting"
    with open_publisher(pipe.broker) as pub:
        for body, headers, group in rec.sent:
            pub.send(body, headers, group)
    manifests, chunks = _run_counting_reads(
        pipe, 3600.0
    )  # restarted: its first sweep finds the task open, seen just now
    assert pipe.status()["state"] == "loaded"
    assert (manifests.seen, chunks.seen) == (0, 9)
    assert_same_events(pipe.loaded().sort_by([("run_number", "ascending"), ("event_number", "ascending")]),
                       synthetic(1, 2, 3))  # fmt: skip


def test_a_job_of_one_chunk_is_one_message_and_its_chunk_is_verified_from_the_manifest(pipe: Pipeline) -> None:
    single, several = Recorder(), Recorder()
    spec = JobSpec(task="task1", job="j1", attempt=1, dataset="ds", chunk_events=1_000)
    JobRunner(spec, pipe.store, single).run([SyntheticInput(1_000, 1)])
    JobRunner(replace(spec, job="j2"), pipe.store, several).run([SyntheticInput(2_500, 2)])
    kinds = [[parse_pointer(body).kind for body, _, _ in rec.sent] for rec in (single, several)]
    assert kinds == [[pb.POINTER_KIND_MANIFEST], [pb.POINTER_KIND_CHUNK] * 3 + [pb.POINTER_KIND_MANIFEST]]
    assert parse_pointer(single.sent[0][0]).payload, "the one message carries the manifest"

    with open_publisher(pipe.broker) as pub:
        for body, headers, group in single.sent + several.sent:
            pub.send(body, headers, group)
    pipe.expect(2)
    manifests, chunks = _run_counting_reads(pipe)
    assert pipe.status()["state"] == "loaded"
    assert (manifests.seen, chunks.seen) == (0, 4), "each chunk read once: the single one as its manifest lists it"
    expected = pa.concat_tables([*SyntheticInput(1_000, 1).batches(1_000), *SyntheticInput(2_500, 2).batches(2_500)])
    assert_same_events(pipe.loaded().sort_by(SORT), expected.sort_by(SORT))
