"""Intake: turn one broker message into durable ledger facts, or a quarantine entry.

  parse + validate the pointer        -> bad: quarantine (raw body + reason)
  expectation                         -> ledger
  chunk pointer                       -> fetch, verify, ledger (bad object: quarantine)
  manifest pointer                    -> fetch, verify, ledger; then verify the listed chunks the
                                         ledger lacks straight from the store (so a lost chunk
                                         pointer loses nothing)

Everything a message causes commits in one ledger transaction; the caller acks only after it.
Transient store failures propagate (StoreUnavailableError): the caller leaves the message unacked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from eventindex.errors import (
    CodecError,
    ForbiddenLocationError,
    InvalidNameError,
    MessageError,
    ObjectNotFoundError,
)
from eventindex.names import chunk_key, manifest_key, validate_attempt, validate_name
from eventindex.pointers import parse_pointer
from eventindex.schema import eventindex_pb2 as pb
from eventindex.store import ObjectStore
from eventindex.transport import Message
from supersink.crashpoints import crashpoint
from supersink.fetch import fetch_manifest, verify_chunk
from supersink.ledger import ChunkRecord, Ledger

log = logging.getLogger(__name__)

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


class Intake:
    def __init__(self, ledger: Ledger, store: ObjectStore, on_event: Callable[[str], None] | None = None) -> None:
        self.ledger = ledger
        self.store = store
        self.counters = Counters()
        self.on_event = on_event or (lambda text: log.info("%s", text))

    def handle(self, message: Message) -> str | None:
        """Record one message durably; return the task it touched (None if quarantined)."""
        self.counters.messages += 1
        if message.redelivered:
            self.counters.redelivered += 1
        try:
            with self.ledger.transaction():
                task = self._handle(message.body)
            crashpoint("intake.recorded")
            return task
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
        crashpoint("intake.fetched")
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
