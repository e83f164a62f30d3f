"""One job attempt: read the inputs, write the chunks and the manifest, announce each one.

Order of effects, which the supersink's completeness model relies on:
1. each chunk is stored (write-once) and only then its pointer is sent;
2. the manifest is stored after every chunk it lists, and its pointer is sent last.
A job that dies part-way leaves chunks without a manifest: the attempt is incomplete and
never loaded. A retried attempt uses a new attempt number, hence new keys.

Chunks are encoded in the calling thread and stored by a bounded pool (`producer.upload`):
pointers leave in seq order, each after its own chunk is stored; the manifest waits for all.
A job of one chunk (a grid job of ~1,000 events; the uploader never announces a chunk within its
own submit, so that is known first) sends no chunk pointer: the manifest's pointer, which lists the
chunk (and carries the manifest when it is small), is its one message, and the supersink verifies
the listed chunk from the store. A job of more chunks announces each as it is stored, so one that
dies part-way is seen.
`check_inputs` (`--dry-run`) runs the same reading, validation and encoding, and stores nothing.
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
    CorruptObjectError,
    InputError,
    ObjectExistsError,
    OversizedObjectError,
    StoreError,
)
from eventindex.names import chunk_key, manifest_key, validate_attempt, validate_name
from eventindex.pointers import INLINE_MANIFEST_MAX_BYTES, headers_for, now_ms, object_pointer
from eventindex.schema import eventindex_pb2 as pb
from eventindex.store import ObjectStore
from eventindex.transport import Publisher
from eventindex.wire import MAX_RECORDS, check_records
from producer.inputs import InputSource
from producer.summary import FileSummaryBuilder, JobInputs
from producer.upload import Chunk, UploadConfig, Uploader
from producer.write_retry import WriteRetrier, WriteRetryPolicy

DEFAULT_CHUNK_EVENTS = 10_000
MAX_CHUNK_EVENTS = 1_000_000
#: Exit status of a job killed on purpose by --fail-after-chunks (as if by SIGKILL).
SIMULATED_CRASH_STATUS = 137


@dataclass(frozen=True, kw_only=True)
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
        if self.fail_after_chunks is not None and self.fail_after_chunks < 0:
            raise ConfigError("--fail-after-chunks must be 0 or more")


@dataclass
class Progress:
    events: int = 0
    chunks: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True, kw_only=True)
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
        except OversizedObjectError:
            same = False
        except StoreError as exc:
            # the store failed while we checked: say so, rather than claim a conflict we did not see
            raise type(exc)(f"{key} exists, but reading it back to compare failed: {exc}") from exc
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


def _new_manifest(spec: JobSpec) -> pb.Manifest:
    return pb.Manifest(
        schema_version=SCHEMA_VERSION,
        task=spec.task,
        job=spec.job,
        attempt=spec.attempt,
        dataset=spec.dataset,
        producer_version=__version__,
        start_time_ms=now_ms(),
    )


def _encode_inputs(
    spec: JobSpec, inputs: list[InputSource], manifest: pb.Manifest, submit: Callable[[Chunk], None]
) -> list[str]:
    """Read and encode every input into chunks handed to `submit`, listing them in `manifest`.

    Adds each file's summary to the manifest; raises InputError on the first inconsistent file,
    and then if two files share (run, event) pairs, unless `allow_mismatch`; returns the problems
    found (all tolerated).
    """
    if not inputs:
        raise InputError("no --input given")
    found: list[str] = []
    files = JobInputs()
    seq = 0
    for source in inputs:
        builder = FileSummaryBuilder(source, now_ms())
        for table in source.batches(spec.chunk_events):
            builder.add(table)
            obj = encode_chunk(table)
            del table
            key = chunk_key(spec.task, spec.job, spec.attempt, seq)
            manifest.chunks.add(seq=seq, key=key, size=obj.size, sha256=obj.sha256, events=obj.count)
            submit(Chunk(seq, key, obj))
            seq += 1
        summary, file_problems = files.finish(builder, now_ms())
        manifest.inputs.append(summary)
        if file_problems and not spec.allow_mismatch:
            raise InputError(file_problems[0] + " (use --allow-mismatch to index it anyway)")
        found += file_problems
    shared = files.shared()
    if shared and not spec.allow_mismatch:
        raise InputError(shared[0] + " (use --allow-mismatch to index them anyway)")
    return found + shared


def _finish_manifest(manifest: pb.Manifest, events: int, found: list[str]) -> None:
    manifest.total_events = events
    manifest.end_time_ms = now_ms()
    manifest.status = pb.ATTEMPT_STATUS_OK
    manifest.message = "; ".join(found)
    try:  # what the supersink would refuse to parse (a manifest of more fields than MAX_RECORDS) is not written
        check_records(manifest.SerializeToString(), pb.Manifest.DESCRIPTOR, "manifest", MAX_RECORDS)
    except CorruptObjectError:
        raise InputError(
            f"the job's {len(manifest.chunks):,} chunks make a manifest of more than {MAX_RECORDS:,} fields: "
            "use a larger --chunk-events"
        ) from None


def check_inputs(
    spec: JobSpec, inputs: list[InputSource], on_progress: Callable[[Progress], None] | None = None
) -> JobResult:
    """`--dry-run`: read, validate and encode every input as a real run would; store and send nothing."""
    progress = Progress()

    def count(chunk: Chunk) -> None:
        progress.events += chunk.obj.count
        progress.chunks += 1
        progress.bytes += chunk.obj.size
        if on_progress:
            on_progress(progress)

    manifest = _new_manifest(spec)
    found = _encode_inputs(spec, inputs, manifest, count)
    _finish_manifest(manifest, progress.events, found)
    encode_manifest(manifest)  # the manifest too must encode
    return JobResult(
        task=spec.task,
        job=spec.job,
        attempt=spec.attempt,
        events=progress.events,
        chunks=progress.chunks,
        bytes=progress.bytes,
        seconds=progress.seconds,
        manifest_url="",
        problems=tuple(found),
    )


class JobRunner:
    def __init__(
        self,
        spec: JobSpec,
        store: ObjectStore,
        publisher: Publisher,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        upload: UploadConfig | None = None,
        retry_policy: WriteRetryPolicy | None = None,
    ) -> None:
        self.spec = spec
        self.store = store
        self.publisher = publisher
        self.on_progress = on_progress
        self.upload = upload or UploadConfig()
        self.progress = Progress()
        self.retry = WriteRetrier(retry_policy or WriteRetryPolicy())
        #: set once every input is read and the job turned out to be one chunk: that chunk then needs no
        #: pointer of its own, the manifest's (which lists it) is the job's one message
        self._single_chunk = False

    def _announce(self, kind: pb.PointerKind, key: str, obj: EncodedObject, seq: int = 0) -> None:
        """Send the pointer to a stored object; a small manifest's pointer carries its bytes too."""
        spec = self.spec
        pointer = object_pointer(
            kind,
            url=self.store.object_url(key),
            size=obj.size,
            sha256=obj.sha256,
            events=obj.count,
            task=spec.task,
            job=spec.job,
            attempt=spec.attempt,
            dataset=spec.dataset,
            seq=seq,
        )
        if kind == pb.POINTER_KIND_MANIFEST and obj.size <= INLINE_MANIFEST_MAX_BYTES:
            pointer.payload = obj.data
        self.publisher.send(pointer.SerializeToString(), headers_for(pointer), group=spec.task)

    def _store_chunk(self, chunk: Chunk) -> None:
        """In an upload thread."""
        self.retry(chunk.key, lambda: store_once(self.store, chunk.key, chunk.obj))

    def _stored(self, chunk: Chunk) -> None:
        """In the calling thread, in seq order, once the chunk is stored."""
        if not self._single_chunk:
            self._announce(pb.POINTER_KIND_CHUNK, chunk.key, chunk.obj, chunk.seq)
        self.progress.events += chunk.obj.count
        self.progress.chunks += 1
        self.progress.bytes += chunk.obj.size
        if self.on_progress:
            self.on_progress(self.progress)
        if self.spec.fail_after_chunks is not None and self.progress.chunks >= self.spec.fail_after_chunks:
            os._exit(SIMULATED_CRASH_STATUS)

    def run(self, inputs: list[InputSource]) -> JobResult:
        spec = self.spec
        manifest = _new_manifest(spec)
        with Uploader(store_one=self._store_chunk, on_stored=self._stored, config=self.upload) as uploader:
            try:
                found = _encode_inputs(spec, inputs, manifest, uploader.submit)
                self._single_chunk = len(manifest.chunks) == 1
                uploader.finish()
            except BaseException:
                self.retry.cancel()  # uploads waiting out an outage stop now: the job fails anyway
                raise
        _finish_manifest(manifest, self.progress.events, found)
        key = manifest_key(spec.task, spec.job, spec.attempt)
        obj = self.retry(key, lambda: store_manifest_once(self.store, key, manifest))
        self._announce(pb.POINTER_KIND_MANIFEST, key, obj)
        return JobResult(
            task=spec.task,
            job=spec.job,
            attempt=spec.attempt,
            events=self.progress.events,
            chunks=self.progress.chunks,
            bytes=self.progress.bytes,
            seconds=self.progress.seconds,
            manifest_url=self.store.object_url(key),
            problems=tuple(found),
        )
