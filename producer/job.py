"""One job attempt: read the inputs, write the chunks and the manifest, announce each one.

Order of effects, which the supersink's completeness model relies on:
1. each chunk is stored (write-once) and only then its pointer is sent;
2. the manifest is stored after every chunk it lists, and its pointer is sent last.
A job that dies part-way leaves chunks without a manifest: the attempt is incomplete and
never loaded. A retried attempt uses a new attempt number, hence new keys.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from eventindex import __version__
from eventindex.codec import SCHEMA_VERSION, EncodedObject, decode_manifest, encode_chunk, encode_manifest
from eventindex.errors import (
    CodecError,
    ConfigError,
    InputError,
    ObjectExistsError,
    OversizedObjectError,
    StoreError,
)
from eventindex.names import chunk_key, manifest_key, validate_attempt, validate_name
from eventindex.pointers import headers_for, now_ms, object_pointer
from eventindex.schema import eventindex_pb2 as pb
from eventindex.store import ObjectStore
from eventindex.transport import Publisher
from producer.inputs import InputSource
from producer.summary import FileSummaryBuilder, problems

DEFAULT_CHUNK_EVENTS = 10_000
MAX_CHUNK_EVENTS = 1_000_000
#: Exit status of a job killed on purpose by --fail-after-chunks (as if by SIGKILL).
SIMULATED_CRASH_STATUS = 137


@dataclass(frozen=True)
class JobSpec:
    task: str
    job: str
    attempt: int
    dataset: str
    chunk_events: int = DEFAULT_CHUNK_EVENTS
    allow_mismatch: bool = False
    #: Testing aid: die abruptly after storing and announcing this many chunks.
    fail_after_chunks: int | None = None

    def __post_init__(self) -> None:
        validate_name("task", self.task)
        validate_name("job", self.job)
        validate_name("dataset", self.dataset)
        validate_attempt(self.attempt)
        if not 1 <= self.chunk_events <= MAX_CHUNK_EVENTS:
            raise ConfigError(f"--chunk-events must be in 1..{MAX_CHUNK_EVENTS}")


@dataclass
class Progress:
    events: int = 0
    chunks: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True)
class JobResult:
    task: str
    job: str
    attempt: int
    events: int
    chunks: int
    bytes: int
    seconds: float
    manifest_url: str
    problems: tuple[str, ...]


def _conflict(key: str) -> ObjectExistsError:
    return ObjectExistsError(f"{key} already holds different data: this job attempt ran before; use a new --attempt")


def store_once(store: ObjectStore, key: str, obj: EncodedObject) -> None:
    """Write-once put that is idempotent for identical content (a retried PUT that had succeeded)."""
    try:
        store.put(key, obj.data)
    except ObjectExistsError:
        try:
            same = store.get(key, max_bytes=obj.size) == obj.data
        except (StoreError, OversizedObjectError):
            same = False
        if not same:
            raise _conflict(key) from None


def _same_attempt(a: pb.Manifest, b: pb.Manifest) -> bool:
    """Two manifests of one attempt that differ only in their times describe the same data."""
    return (a.task, a.job, a.attempt, a.dataset, a.total_events, list(a.chunks)) == (
        b.task,
        b.job,
        b.attempt,
        b.dataset,
        b.total_events,
        list(b.chunks),
    )


def store_manifest_once(store: ObjectStore, key: str, manifest: pb.Manifest) -> EncodedObject:
    """Store the manifest; a rerun of the same attempt with the same chunks reuses the stored one."""
    obj = encode_manifest(manifest)
    try:
        store.put(key, obj.data)
        return obj
    except ObjectExistsError:
        data = store.get(key)
        try:
            existing = decode_manifest(data)
        except CodecError:
            raise _conflict(key) from None
        if not _same_attempt(existing, manifest):
            raise _conflict(key) from None
        return EncodedObject(data, hashlib.sha256(data).digest(), existing.total_events)


class JobRunner:
    def __init__(
        self,
        spec: JobSpec,
        store: ObjectStore,
        publisher: Publisher,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.spec = spec
        self.store = store
        self.publisher = publisher
        self.on_progress = on_progress
        self.progress = Progress()

    def _announce(self, kind: pb.PointerKind, key: str, obj: EncodedObject, seq: int = 0) -> None:
        spec = self.spec
        pointer = object_pointer(
            kind,
            self.store.object_url(key),
            obj.size,
            obj.sha256,
            obj.count,
            spec.task,
            spec.job,
            spec.attempt,
            spec.dataset,
            seq,
        )
        self.publisher.send(pointer.SerializeToString(), headers_for(pointer), group=spec.task)

    def run(self, inputs: list[InputSource]) -> JobResult:
        spec = self.spec
        if not inputs:
            raise InputError("no --input given")
        start_ms = now_ms()
        manifest = pb.Manifest(
            schema_version=SCHEMA_VERSION,
            task=spec.task,
            job=spec.job,
            attempt=spec.attempt,
            dataset=spec.dataset,
            producer_version=__version__,
            start_time_ms=start_ms,
        )
        found: list[str] = []
        seq = 0
        for source in inputs:
            builder = FileSummaryBuilder(source, now_ms())
            for table in source.batches(spec.chunk_events):
                builder.add(table)
                obj = encode_chunk(table)
                key = chunk_key(spec.task, spec.job, spec.attempt, seq)
                store_once(self.store, key, obj)
                self._announce(pb.POINTER_KIND_CHUNK, key, obj, seq)
                manifest.chunks.add(seq=seq, key=key, size=obj.size, sha256=obj.sha256, events=obj.count)
                seq += 1
                self.progress.events += obj.count
                self.progress.chunks += 1
                self.progress.bytes += obj.size
                if self.on_progress:
                    self.on_progress(self.progress)
                if spec.fail_after_chunks is not None and seq >= spec.fail_after_chunks:
                    os._exit(SIMULATED_CRASH_STATUS)
            summary = builder.finish(now_ms())
            manifest.inputs.append(summary)
            file_problems = problems(summary)
            if file_problems and not spec.allow_mismatch:
                raise InputError(file_problems[0] + " (use --allow-mismatch to index it anyway)")
            found += file_problems
        manifest.total_events = self.progress.events
        manifest.end_time_ms = now_ms()
        manifest.status = pb.ATTEMPT_STATUS_OK
        manifest.message = "; ".join(found)
        key = manifest_key(spec.task, spec.job, spec.attempt)
        obj = store_manifest_once(self.store, key, manifest)
        self._announce(pb.POINTER_KIND_MANIFEST, key, obj)
        return JobResult(
            spec.task,
            spec.job,
            spec.attempt,
            self.progress.events,
            self.progress.chunks,
            self.progress.bytes,
            self.progress.seconds,
            self.store.object_url(key),
            tuple(found),
        )
