"""Intake: turn one broker message into durable ledger facts, or a quarantine entry.

  parse + validate the message        -> bad body, headers or encoding: quarantine (raw bytes + reason)
  a pointer of an attempt a commit    -> nothing to do (a late duplicate)
  accounted for
  expectation                         -> ledger
  chunk pointer                       -> fetch, verify, ledger (bad object: quarantine)
  manifest pointer                    -> fetch, verify, ledger; then verify the listed chunks the
                                         ledger lacks straight from the store (so a lost chunk
                                         pointer loses nothing)

Everything a message causes commits in one ledger transaction; the caller acks only after it.
Store failures propagate (StoreError, but not ObjectNotFoundError: that is the object's problem): the
caller leaves the message unacked. Ledger failures propagate too. Anything else a message causes,
even an error nobody foresaw, quarantines that message: no message can stop the service.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from eventindex.codec import decode_manifest, encode_chunk
from eventindex.columns import INT64_MAX
from eventindex.errors import (
    CodecError,
    ForbiddenLocationError,
    InvalidNameError,
    MessageError,
    ObjectExistsError,
    ObjectNotFoundError,
    StoreError,
)
from eventindex.events import events_to_table
from eventindex.names import chunk_key, manifest_key, validate_attempt, validate_name
from eventindex.pointers import KIND_NAMES, parse_pointer
from eventindex.schema import eventindex_pb2 as pb
from eventindex.store import ObjectStore
from eventindex.store.local import LocalStore
from eventindex.transport import Message
from supersink.completeness import committed_attempts
from supersink.crashpoints import crashpoint
from supersink.fetch import ASSEMBLED_PREFIX, ChunkCache, fetch_manifest, key_range, verify_chunk
from supersink.ledger import LOADED_STATES, ChunkRecord, Ledger, LedgerError, TaskRecord

log = logging.getLogger(__name__)

_STATUS_NAMES = {pb.ATTEMPT_STATUS_OK: "ok", pb.ATTEMPT_STATUS_FAILED: "failed"}


#: Commits whose CPU time the counters keep (for benchmarks: the cost of each task in a long run).
COMMITS_KEPT = 1000


def _inputs_info(manifest: pb.Manifest) -> list[dict[str, Any]]:
    """The input-file facts a commit marker passes on to readers: trigger names and reading notes."""
    info = []
    for summary in manifest.inputs:
        names = {t.column: list(t.names) for t in summary.trigger_names}
        if names or summary.notes:
            info.append({"guid": summary.guid, "trigger_names": names, "notes": list(summary.notes)})
    return info


@dataclass
class Counters:
    messages: int = 0
    chunks: int = 0
    manifests: int = 0
    event_messages: int = 0
    expectations: int = 0
    quarantined: int = 0
    redelivered: int = 0
    #: pointers of attempts a task's commit had accounted for already (late duplicates), not fetched
    after_commit: int = 0
    transient_failures: int = 0
    #: chunk objects fetched from the store and verified (size, sha256, decode, events), and their bytes
    chunks_verified: int = 0
    bytes_verified: int = 0
    tasks_loaded: int = 0
    events_loaded: int = 0
    started: float = field(default_factory=time.monotonic)
    #: process CPU seconds (all threads) when the first message arrived and when the last task committed:
    #: their difference is what the work cost, without start-up, idle waiting or shutdown
    cpu_at_first_message: float | None = None
    cpu_at_last_commit: float | None = None
    #: (events, process CPU seconds) at each commit, in order: the last COMMITS_KEPT of them
    commits: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=COMMITS_KEPT))

    @property
    def busy_cpu_seconds(self) -> float | None:
        if self.cpu_at_first_message is None or self.cpu_at_last_commit is None:
            return None
        return max(0.0, self.cpu_at_last_commit - self.cpu_at_first_message)


def _not_the_message(exc: Exception) -> bool:
    """A failure of the store or the ledger, not of the message being handled. A constraint the ledger
    enforces (sqlite3.IntegrityError) is the message's: its transaction is rolled back, the ledger is whole."""
    if isinstance(exc, sqlite3.IntegrityError):
        return False
    return isinstance(exc, (StoreError, LedgerError, sqlite3.Error))


def _unexpected(exc: Exception) -> Rejected:
    log.debug("unexpected error handling a message", exc_info=exc)
    return Rejected(f"unexpected {type(exc).__name__} handling this message: {exc}")


def _expectation(jobs: int, events: int | None) -> str:
    return f"{jobs} jobs" + ("" if events is None else f" of {events} events")


class Rejected(Exception):
    """The message is refused for good: quarantine it with this reason (and the job it names, if any)."""

    def __init__(
        self,
        reason: str,
        task: str | None = None,
        job: str | None = None,
        attempt: int | None = None,
        *,
        about_chunk: str | None = None,
    ):
        super().__init__(reason)
        self.reason = reason
        self.task = task
        self.job = job
        self.attempt = attempt
        #: a chunk's verification failed: what is wrong with it, without its key (the manifest's listing of the
        #: chunk keeps this; status names the chunk itself)
        self.about_chunk = about_chunk or reason


def assembly_for(ledger: Ledger) -> ObjectStore:
    """The assembly area: where the broker-only transport's assembled chunks live, next to the ledger
    (the directory keeps the name `<ledger>.spool` it had when the area was called the spool)."""
    return LocalStore(Path(f"{ledger.path}.spool"))


class Intake:
    def __init__(
        self,
        ledger: Ledger,
        store: ObjectStore,
        *,
        on_event: Callable[[str], None] | None = None,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        #: Chunks assembled from broker-only messages (a local store next to the ledger).
        self.assembly = assembly_for(ledger)
        #: Chunks verified here, kept for their load.
        self.cache = ChunkCache()
        self.counters = Counters()
        self.on_event = on_event or (lambda text: log.info("%s", text))
        #: what an operator must see (quarantined messages, chunks found bad): logged as warnings
        self.on_problem = on_problem or (lambda text: log.warning("%s", text))
        self.may_complete = False

    def handle(self, message: Message) -> str | None:
        """Record one message durably; return the task it touched. For a quarantined message, that is
        the task it names when the ledger knows the task (re-evaluated, it shows the job's problem), else None.

        `may_complete` tells afterwards whether the message may have completed its task (a new
        expectation or manifest, or a new chunk of an attempt whose manifest is in, once the task has
        as many jobs with a manifest as expected, or more jobs than expected): re-evaluating a task
        after every chunk, or every manifest, would cost time quadratic in its chunks or jobs."""
        self.counters.messages += 1
        if message.redelivered:
            self.counters.redelivered += 1
        self.may_complete = False
        try:
            if message.problem is not None:
                raise Rejected(message.problem)
            with self.ledger.transaction():
                task = self._handle(message)
                self.may_complete = self.may_complete and self.ledger.could_complete(task)
            return task
        except Rejected as rejected:
            return self._quarantine(message, rejected)
        except Exception as exc:
            if _not_the_message(exc):
                raise  # the caller retries it, or stops
            return self._quarantine(message, _unexpected(exc))  # this message's failure: the service goes on

    def _quarantine(self, message: Message, rejected: Rejected) -> str | None:
        # one line, and text SQLite can store whatever bytes the reason quotes
        reason = " ".join(rejected.reason.encode("utf-8", "backslashreplace").decode("utf-8").split())
        with self.ledger.transaction():
            self.ledger.quarantine(
                reason,
                dict(message.headers),
                message.body,
                task=rejected.task,
                job=rejected.job,
                attempt=rejected.attempt,
            )
        self.counters.quarantined += 1
        self.on_problem(f"quarantined: {reason}")
        return rejected.task if rejected.task and self.ledger.task(rejected.task) is not None else None

    def _handle(self, message: Message) -> str:
        try:
            pointer = parse_pointer(message.body)
        except (MessageError, InvalidNameError, CodecError) as exc:
            raise Rejected(str(exc)) from None
        job, attempt = (pointer.job, pointer.attempt) if pointer.job else (None, None)
        try:
            return self._record(pointer, message.headers)
        except Rejected as rejected:
            rejected.task = rejected.task or pointer.task
            if rejected.job is None:
                rejected.job, rejected.attempt = job, attempt
            raise
        except CodecError as exc:  # what a message carries that does not decode: still its task's message
            raise Rejected(str(exc), pointer.task, job, attempt) from None
        except Exception as exc:
            if _not_the_message(exc):
                raise
            unexpected = _unexpected(exc)
            unexpected.task, unexpected.job, unexpected.attempt = pointer.task, job, attempt
            raise unexpected from None

    def _record(self, pointer: pb.Pointer, headers: Mapping[str, str]) -> str:
        _check_headers(pointer, headers)
        committed = self.accounted_for(pointer.task, pointer.job, pointer.attempt) if pointer.job else None
        if committed is not None:
            self.counters.after_commit += 1
            if committed.purged_at is not None:  # a job rerun after retention stored that attempt's objects again
                self.ledger.reopen_retention(pointer.task)  # the next pass deletes them
            return pointer.task
        if pointer.kind == pb.POINTER_KIND_TASK_EXPECTATION:
            events = pointer.expected_events if pointer.HasField("expected_events") else None
            known = self.ledger.task(pointer.task)
            if known is not None and known.expected_jobs is not None:
                before, now = (known.expected_jobs, known.expected_events), (pointer.expected_jobs, events)
                if before != now:  # a correction, or two announcements that disagree: the last one counts
                    late = f" (after its commit, state {known.state})" if known.state in LOADED_STATES else ""
                    self.on_problem(
                        f"task {pointer.task}: expectation changed from {_expectation(*before)} "
                        f"to {_expectation(*now)}{late}"
                    )
            self.ledger.set_expectation(pointer.task, pointer.expected_jobs, events)
            self.counters.expectations += 1
            self.may_complete = True
            return pointer.task
        if pointer.kind == pb.POINTER_KIND_EVENTS:
            self._check_dataset(pointer.task, pointer.dataset)
            self._record_part(pointer)
            self.counters.event_messages += 1
            return pointer.task
        if pointer.kind == pb.POINTER_KIND_MANIFEST and not pointer.url:
            self._check_dataset(pointer.task, pointer.dataset)
            self._record_inline_manifest(pointer)
            self.counters.manifests += 1
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

    def accounted_for(self, task: str, job: str, attempt: int) -> TaskRecord | None:
        """The task's record when it is committed and its commit accounted for this attempt (loaded or
        superseded): then a pointer of it is a late duplicate, harmless even after the attempt's
        objects were deleted and its rows compacted away (retention); None otherwise."""
        row = self.ledger.task(task)
        if row is None or row.state not in LOADED_STATES or not row.marker:
            return None
        return row if (job, attempt) in committed_attempts(row.marker) else None

    # ------------------------------------------------------------ broker-only transport

    def _record_part(self, pointer: pb.Pointer) -> None:
        """One message of an input file; when the file's messages are all in, it becomes an assembled chunk."""
        if hashlib.sha256(pointer.payload).digest() != pointer.sha256:
            raise Rejected(f"events message {pointer.seq}/{pointer.part}: payload sha256 mismatch", pointer.task)
        task, job, attempt, seq = pointer.task, pointer.job, pointer.attempt, pointer.seq
        if self.ledger.chunk(task, job, attempt, seq) is not None:
            return  # the file was assembled already: a redelivered message
        part, last, events = pointer.part, pointer.last, pointer.events
        self.ledger.record_part(task, job, attempt, seq, part=part, last=last, events=events, payload=pointer.payload)
        if not self.ledger.parts_complete(task, job, attempt, seq):
            return  # more messages of this file to come (checked without reading their payloads)
        parts = self.ledger.parts(task, job, attempt, seq)
        payloads = [p.payload for p in parts]
        batches = []
        for index, payload in enumerate(payloads):
            batch = pb.EventBatch()
            try:
                batch.ParseFromString(payload)
            except DecodeError as exc:
                raise Rejected(f"events message {seq}/{index} is not an EventBatch: {exc}", task) from None
            if len(batch.events) != parts[index].events:
                raise Rejected(f"events message {seq}/{index} holds {len(batch.events)} events", task)
            batches.append(batch)
        try:
            table = events_to_table(event for batch in batches for event in batch.events)
            obj = encode_chunk(table)
        except (CodecError, ValueError, OverflowError) as exc:  # an event the warehouse schema cannot hold
            raise Rejected(f"events messages of input file {seq}: {exc}", task) from None
        key = chunk_key(task, job, attempt, seq)
        with contextlib.suppress(ObjectExistsError):  # assembled before a crash: the same, deterministic bytes
            self.assembly.put(key, obj.data)
        min_key, max_key = key_range(table)
        self._note_chunk(task, job, attempt)
        self.ledger.record_chunk(
            task,
            ChunkRecord(job, attempt, seq, ASSEMBLED_PREFIX + key, sum(map(len, payloads)),
                        hashlib.sha256(b"".join(payloads)).digest(), table.num_rows, min_key, max_key),
        )  # fmt: skip
        self.ledger.drop_parts(task, job, attempt, seq)

    def _record_inline_manifest(self, pointer: pb.Pointer) -> None:
        if hashlib.sha256(pointer.payload).digest() != pointer.sha256:
            raise Rejected("inline manifest: payload sha256 mismatch", pointer.task)
        try:
            manifest = decode_manifest(pointer.payload)
        except CodecError as exc:
            raise Rejected(f"inline manifest: {exc}", pointer.task) from None
        if (manifest.task, manifest.job, manifest.attempt) != (pointer.task, pointer.job, pointer.attempt):
            raise Rejected("inline manifest: its identity differs from its message's", pointer.task)
        self.record_manifest(manifest, manifest_key(manifest.task, manifest.job, manifest.attempt), pointer.sha256,
                             inline=True)  # fmt: skip

    def _note_chunk(self, task: str, job: str, attempt: int) -> None:
        """A new chunk can complete its attempt only once the attempt's manifest is in."""
        if self.ledger.attempt(task, job, attempt) is not None:
            self.may_complete = True

    def _check_dataset(self, task: str, dataset: str) -> None:
        row = self.ledger.task(task)
        if row is not None and row.dataset not in (None, dataset):
            raise Rejected(f"task {task} belongs to dataset {row.dataset}, pointer says {dataset}", task)
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
        if known is not None and (sha256 is None or known.sha256 == sha256):
            return  # a redelivered or repeated pointer: already verified
        try:
            verified = verify_chunk(self.store, key, size=size, sha256=sha256, events=events, cache=self.cache)
        except ObjectNotFoundError as exc:
            raise Rejected(f"pointer to a missing object: {exc}", task) from None
        except CodecError as exc:
            problem = str(exc).removeprefix(key).lstrip()  # the verification's own text may start with the key
            raise Rejected(f"chunk {key}: {problem}", task, about_chunk=problem) from None
        crashpoint("intake.fetched")
        self.counters.chunks_verified += 1
        self.counters.bytes_verified += verified.size
        self._note_chunk(task, job, attempt)
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
        if known is not None and known.manifest_sha256 == pointer.sha256:
            return
        try:
            manifest, digest = fetch_manifest(self.store, key, pointer.size, pointer.sha256, pointer.payload)
        except ObjectNotFoundError as exc:
            raise Rejected(f"pointer to a missing object: {exc}", task) from None
        except CodecError as exc:
            raise Rejected(f"manifest {key}: {exc}", task) from None
        self.record_manifest(manifest, key, digest)

    def record_manifest(self, manifest: pb.Manifest, key: str, digest: bytes, inline: bool = False) -> None:
        """Record a verified manifest and verify the chunks it lists that the ledger lacks
        (from the store; an inline manifest's chunks come through the broker instead)."""
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
        seen: set[int] = set()
        for entry in manifest.chunks:
            expected = chunk_key(task, job, attempt, entry.seq)
            if entry.key != expected:
                raise Rejected(f"manifest {key} lists chunk key {entry.key}, expected {expected}", task)
            if entry.seq in seen:
                raise Rejected(f"manifest {key} lists chunk {entry.seq} twice", task)
            if max(entry.size, entry.events) > INT64_MAX:
                raise Rejected(f"manifest {key}: chunk {entry.seq}'s size or event count is out of range", task)
            seen.add(entry.seq)
            listed.append((entry.seq, entry.key, entry.size, bytes(entry.sha256), entry.events))
        if manifest.total_events > INT64_MAX:
            raise Rejected(f"manifest {key}: total {manifest.total_events} events is out of range", task)
        if sum(e[4] for e in listed) != manifest.total_events:
            raise Rejected(f"manifest {key}: chunk events do not add up to total {manifest.total_events}", task)
        self._check_dataset(task, manifest.dataset)
        self.may_complete = True
        self.ledger.record_attempt(
            task,
            job,
            attempt,
            dataset=manifest.dataset,
            manifest_key=key,
            manifest_sha256=digest,
            events=manifest.total_events,
            status=_STATUS_NAMES.get(manifest.status, "unspecified"),
            producer_version=manifest.producer_version,
            end_time_ms=manifest.end_time_ms,
            listed=listed,
        )
        self.ledger.record_attempt_inputs(task, job, attempt, _inputs_info(manifest))
        if inline:
            return
        for seq, chunk, size, sha, events in listed:
            try:
                self._record_chunk(task, job, attempt, seq, chunk, size, sha, events)
                self.ledger.set_listed_problem(task, job, attempt, seq, None)
            except Rejected as rejected:
                self.ledger.set_listed_problem(task, job, attempt, seq, rejected.about_chunk)

    def recheck(self, task: str) -> int:
        """Verify again, from the store, the chunks of a task whose verification failed (at intake or
        at load): a restored object heals its attempt. Returns how many verified now."""
        healed = 0
        for listed in self.ledger.problem_chunks(task):
            job, attempt, seq = listed.job, listed.attempt, listed.seq
            with self.ledger.transaction():
                try:
                    self._record_chunk(task, job, attempt, seq, listed.key, listed.size, listed.sha256, listed.events)
                except Rejected as rejected:
                    self.ledger.set_listed_problem(task, job, attempt, seq, rejected.about_chunk)
                    continue
                self.ledger.set_listed_problem(task, job, attempt, seq, None)
            healed += 1
            self.on_event(f"task {task}: chunk {listed.key} verifies again")
        return healed


def _check_headers(pointer: pb.Pointer, headers: Mapping[str, str]) -> None:
    """The producer's informational headers, when present, must say what the body says."""
    kind, task = headers.get("ei-kind"), headers.get("ei-task")
    if kind is not None and kind != KIND_NAMES[pointer.kind]:
        raise Rejected(f"header ei-kind {kind!r} but the body is a {KIND_NAMES[pointer.kind]} pointer")
    if task is not None and task != pointer.task:
        raise Rejected(f"header ei-task {task!r} but the body names task {pointer.task!r}")
