"""The supersink loop: every message is recorded in the ledger before it is acked.

handle(message):
  parse + validate the pointer        -> bad: quarantine (raw body + reason), ack
  expectation                         -> ledger
  chunk pointer                       -> fetch, verify, ledger (bad object: quarantine)
  manifest pointer                    -> fetch, verify, ledger; verify listed chunks not yet seen
then, for the task it touched, evaluate completeness and load it when complete.

Transient store failures leave the message unacked (released for redelivery), so work stays
pending, never dropped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventindex.backoff import compute_backoff
from eventindex.errors import (
    AlreadyCommittedError,
    CodecError,
    ForbiddenLocationError,
    InvalidNameError,
    MessageError,
    ObjectNotFoundError,
    StoreUnavailableError,
)
from eventindex.names import chunk_key, manifest_key, validate_attempt, validate_name
from eventindex.pointers import parse_pointer
from eventindex.schema import eventindex_pb2 as pb
from eventindex.store import ObjectStore
from eventindex.transport import Consumer, Message
from supersink.completeness import TaskView, chosen_chunks, evaluate
from supersink.fetch import fetch_manifest, verify_chunk
from supersink.ledger import ChunkRecord, Ledger
from supersink.loader import LoadPlan, load_task
from supersink.warehouse import Warehouse

log = logging.getLogger(__name__)

RECEIVE_TIMEOUT = 0.5
MAX_TRANSIENT_BACKOFF = 30.0
_STATUS_NAMES = {pb.ATTEMPT_STATUS_OK: "ok", pb.ATTEMPT_STATUS_FAILED: "failed"}


@dataclass
class Counters:
    messages: int = 0
    chunks: int = 0
    manifests: int = 0
    expectations: int = 0
    quarantined: int = 0
    redelivered: int = 0
    transient_failures: int = 0
    tasks_loaded: int = 0
    events_loaded: int = 0
    started: float = field(default_factory=time.monotonic)


class Rejected(Exception):
    """The message is refused for good: quarantine it with this reason."""

    def __init__(self, reason: str, task: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.task = task


class Supersink:
    def __init__(
        self,
        ledger: Ledger,
        store: ObjectStore,
        warehouse: Warehouse,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.warehouse = warehouse
        self.counters = Counters()
        self.on_event = on_event or (lambda text: log.info("%s", text))

    # ------------------------------------------------------------ message handling

    def handle(self, message: Message) -> str | None:
        """Record one message durably; return the task it touched (None if quarantined)."""
        self.counters.messages += 1
        if message.redelivered:
            self.counters.redelivered += 1
        try:
            with self.ledger.transaction():
                return self._handle(message.body)
        except Rejected as rejected:
            self._quarantine(message, rejected.reason, rejected.task)
            return None

    def _quarantine(self, message: Message, reason: str, task: str | None) -> None:
        with self.ledger.transaction():
            self.ledger.quarantine(reason, dict(message.headers), message.body, task)
        self.counters.quarantined += 1
        self.on_event(f"quarantined: {reason}")

    def _handle(self, body: bytes) -> str:
        try:
            pointer = parse_pointer(body)
        except (MessageError, InvalidNameError, CodecError) as exc:
            raise Rejected(str(exc)) from None
        if pointer.kind == pb.POINTER_KIND_TASK_EXPECTATION:
            self.ledger.set_expectation(
                pointer.task,
                pointer.expected_jobs,
                pointer.expected_events if pointer.HasField("expected_events") else None,
            )
            self.counters.expectations += 1
            return pointer.task
        try:
            key = self.store.key_for_url(pointer.url)
        except ForbiddenLocationError as exc:
            raise Rejected(str(exc), pointer.task) from None
        self._check_dataset(pointer.task, pointer.dataset)
        if pointer.kind == pb.POINTER_KIND_CHUNK:
            expected = chunk_key(pointer.task, pointer.job, pointer.attempt, pointer.seq)
            if key != expected:
                raise Rejected(f"chunk pointer URL key {key} is not the key of its identity ({expected})", pointer.task)
            self._record_chunk(
                pointer.task,
                pointer.job,
                pointer.attempt,
                pointer.seq,
                key,
                pointer.size,
                pointer.sha256,
                pointer.events,
            )
            self.counters.chunks += 1
        else:
            expected = manifest_key(pointer.task, pointer.job, pointer.attempt)
            if key != expected:
                raise Rejected(f"manifest pointer URL key {key} is not {expected}", pointer.task)
            self._record_manifest(pointer, key)
            self.counters.manifests += 1
        return pointer.task

    def _check_dataset(self, task: str, dataset: str) -> None:
        row = self.ledger.task(task)
        if row is not None and row["dataset"] not in (None, dataset):
            raise Rejected(f"task {task} belongs to dataset {row['dataset']}, pointer says {dataset}", task)
        self.ledger.touch_task(task, dataset)

    def _record_chunk(
        self,
        task: str,
        job: str,
        attempt: int,
        seq: int,
        key: str,
        size: int | None,
        sha256: bytes | None,
        events: int | None,
    ) -> None:
        known = self.ledger.chunk(task, job, attempt, seq)
        if known is not None and (sha256 is None or bytes(known["sha256"]) == sha256):
            return  # a redelivered or repeated pointer: already verified
        try:
            verified = verify_chunk(self.store, key, size, sha256, events)
        except ObjectNotFoundError as exc:
            raise Rejected(f"pointer to a missing object: {exc}", task) from None
        except CodecError as exc:
            raise Rejected(f"chunk {key}: {exc}", task) from None
        self.ledger.record_chunk(
            task,
            ChunkRecord(
                job,
                attempt,
                seq,
                key,
                verified.size,
                verified.sha256,
                verified.events,
                verified.min_key,
                verified.max_key,
            ),
        )

    def _record_manifest(self, pointer: pb.Pointer, key: str) -> None:
        task, job, attempt = pointer.task, pointer.job, pointer.attempt
        known = self.ledger.attempt(task, job, attempt)
        if known is not None and bytes(known["manifest_sha256"]) == pointer.sha256:
            return
        try:
            manifest, digest = fetch_manifest(self.store, key, pointer.size, pointer.sha256)
        except ObjectNotFoundError as exc:
            raise Rejected(f"pointer to a missing object: {exc}", task) from None
        except CodecError as exc:
            raise Rejected(f"manifest {key}: {exc}", task) from None
        self.record_manifest(manifest, key, digest)

    def record_manifest(self, manifest: pb.Manifest, key: str, digest: bytes) -> None:
        """Record a verified manifest and verify the chunks it lists that the ledger lacks."""
        task, job, attempt = manifest.task, manifest.job, manifest.attempt
        try:
            validate_name("task", task)
            validate_name("job", job)
            validate_name("dataset", manifest.dataset)
            validate_attempt(attempt)
        except InvalidNameError as exc:
            raise Rejected(f"manifest {key}: {exc}", task or None) from None
        if key != manifest_key(task, job, attempt):
            raise Rejected(f"manifest {key} names task {task} job {job} attempt {attempt}", task)
        listed = []
        for entry in manifest.chunks:
            expected = chunk_key(task, job, attempt, entry.seq)
            if entry.key != expected:
                raise Rejected(f"manifest {key} lists chunk key {entry.key}, expected {expected}", task)
            listed.append((entry.seq, entry.key, entry.size, bytes(entry.sha256), entry.events))
        if sum(e[4] for e in listed) != manifest.total_events:
            raise Rejected(f"manifest {key}: chunk events do not add up to total {manifest.total_events}", task)
        self._check_dataset(task, manifest.dataset)
        self.ledger.record_attempt(
            task,
            job,
            attempt,
            manifest.dataset,
            key,
            digest,
            manifest.total_events,
            _STATUS_NAMES.get(manifest.status, "unspecified"),
            manifest.producer_version,
            manifest.end_time_ms,
            listed,
        )
        for seq, chunk, size, sha, events in listed:
            try:
                self._record_chunk(task, job, attempt, seq, chunk, size, sha, events)
                self.ledger.set_listed_problem(task, job, attempt, seq, None)
            except Rejected as rejected:
                self.ledger.set_listed_problem(task, job, attempt, seq, rejected.reason)

    # ------------------------------------------------------------ completeness and load

    def settle(self, task: str) -> TaskView:
        """Re-evaluate a task; load it when complete. Returns the view after any load."""
        view = evaluate(self.ledger, task)
        if view.state in ("loaded", "loaded-partial"):
            return view
        if view.failure is not None:
            if view.state != "failed" or view.detail != view.failure:
                with self.ledger.transaction():
                    self.ledger.set_state(task, "failed", view.failure)
                self.on_event(f"task {task} failed: {view.failure}")
            return evaluate(self.ledger, task)
        if not view.complete:
            detail = "; ".join(view.missing[:3])
            if view.state != "waiting" or view.detail != detail:
                with self.ledger.transaction():
                    self.ledger.set_state(task, "waiting", detail)
            return view
        self.load(view)
        return evaluate(self.ledger, task)

    def load(self, view: TaskView, partial: bool = False) -> dict[str, Any]:
        assert view.dataset is not None
        with self.ledger.transaction():
            self.ledger.set_state(view.task, "loading", "partial" if partial else "")
        plan = LoadPlan(
            task=view.task,
            dataset=view.dataset,
            chunks=chosen_chunks(self.ledger, view),
            attempts={job: a.attempt for job, a in sorted(view.chosen.items())},
            superseded=[{"job": a.job, "attempt": a.attempt, "complete": a.complete} for a in view.superseded],
            partial=partial,
            missing=tuple(view.missing),
        )
        self.on_event(
            f"task {view.task}: loading {sum(c.events for c in plan.chunks):,} events "
            f"from {len(plan.chunks)} chunks of {len(plan.attempts)} jobs"
        )
        location = self.warehouse.location(view.dataset, view.task)
        try:
            marker = load_task(plan, self.store, self.warehouse)
            self.on_event(f"task {view.task}: committed {marker['rows']:,} events to {location}")
        except AlreadyCommittedError:
            existing = self.warehouse.read_marker(view.dataset, view.task)
            assert existing is not None
            marker = existing
            self.on_event(f"task {view.task}: already committed in {location} ({marker.get('rows')} events)")
        with self.ledger.transaction():
            self.ledger.mark_loaded(
                view.task,
                int(marker["rows"]),
                location,
                marker,
                "loaded-partial" if marker.get("partial") else "loaded",
            )
        self.counters.tasks_loaded += 1
        self.counters.events_loaded += int(marker["rows"])
        return marker

    def settle_all(self) -> None:
        """At start-up: finish loads a crash interrupted, and anything complete but not loaded."""
        for row in self.ledger.tasks():
            if row["state"] not in ("loaded", "loaded-partial"):
                self.settle(row["task"])

    # ------------------------------------------------------------ the loop

    def run(self, consumer: Consumer, stop: threading.Event, until_idle: float | None = None) -> Counters:
        self.settle_all()
        idle_since = time.monotonic()
        transient = 0
        while not stop.is_set():
            message = consumer.receive(RECEIVE_TIMEOUT)
            if message is None:
                if until_idle is not None and time.monotonic() - idle_since >= until_idle:
                    break
                continue
            try:
                task = self.handle(message)
            except StoreUnavailableError as exc:
                consumer.release(message)
                transient += 1
                self.counters.transient_failures += 1
                delay = compute_backoff(transient, cap=MAX_TRANSIENT_BACKOFF)
                self.on_event(f"store unavailable, retrying in {delay:.1f}s: {exc}")
                stop.wait(delay)
                continue
            transient = 0
            consumer.ack(message)
            idle_since = time.monotonic()
            if task is not None:
                try:
                    self.settle(task)
                except StoreUnavailableError as exc:
                    self.on_event(f"task {task}: load postponed, store unavailable: {exc}")
                idle_since = time.monotonic()
        return self.counters


def counters_json(counters: Counters) -> str:
    data = dict(counters.__dict__)
    data["seconds"] = round(time.monotonic() - data.pop("started"), 3)
    return json.dumps(data)
