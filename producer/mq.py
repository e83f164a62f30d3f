"""The broker-only transport (`ei-producer --mode mq`): the events themselves go through the broker.

This is how the first ATLAS EventIndex collected data, kept for comparison and for small sites
without an object store. Each input file is sent as one broker transaction of messages of at most
MAX_MESSAGE_BYTES of serialised `Event` records, with the file's GUID as the message group and
its last message marked. The manifest follows inline in a last message; it lists one entry per
input file, whose size and sha256 are those of the file's payloads concatenated in order, so the
supersink checks completeness exactly as for chunk objects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from eventindex import __version__
from eventindex.codec import SCHEMA_VERSION, encode_manifest
from eventindex.errors import InputError
from eventindex.events import table_to_events
from eventindex.names import chunk_key
from eventindex.pointers import headers_for, now_ms
from eventindex.schema import eventindex_pb2 as pb
from eventindex.transport import Publisher
from producer.inputs import InputSource
from producer.job import JobResult, JobSpec, Progress
from producer.summary import FileSummaryBuilder, JobInputs

#: The old transport's message size limit: at most this many bytes of serialised events.
MAX_MESSAGE_BYTES = 10_000
_FIELD_OVERHEAD = 4  # tag + length varint of one repeated Event inside an EventBatch


class MqJobRunner:
    def __init__(
        self, spec: JobSpec, publisher: Publisher, *, on_progress: Callable[[Progress], None] | None = None
    ) -> None:
        self.spec = spec
        self.publisher = publisher
        self.on_progress = on_progress
        self.progress = Progress()

    def _pointer(self, **fields: object) -> pb.Pointer:
        spec = self.spec
        return pb.Pointer(
            schema_version=SCHEMA_VERSION, task=spec.task, job=spec.job, attempt=spec.attempt, dataset=spec.dataset,
            producer_version=__version__, sent_time_ms=now_ms(), **fields,  # type: ignore[arg-type]
        )  # fmt: skip

    def _send_file(self, file_index: int, source: InputSource, builder: FileSummaryBuilder) -> pb.ChunkEntry:
        """One input file: its messages in one broker transaction; returns its manifest entry."""
        payloads: list[tuple[bytes, int]] = []
        batch = pb.EventBatch()
        batch_size = 0

        def flush() -> None:
            nonlocal batch, batch_size
            payloads.append((batch.SerializeToString(), len(batch.events)))
            batch, batch_size = pb.EventBatch(), 0

        for table in source.batches(self.spec.chunk_events):
            builder.add(table)
            for event in table_to_events(table):
                size = event.ByteSize() + _FIELD_OVERHEAD
                if size > MAX_MESSAGE_BYTES:
                    raise InputError(
                        f"{source.name}: one event needs {size} bytes, above the {MAX_MESSAGE_BYTES} limit"
                    )
                if batch_size + size > MAX_MESSAGE_BYTES:
                    flush()
                batch.events.append(event)
                batch_size += size
        if batch.events or not payloads:
            flush()
        whole = hashlib.sha256()
        messages: list[tuple[bytes, Mapping[str, str]]] = []
        for part, (payload, events) in enumerate(payloads):
            whole.update(payload)
            pointer = self._pointer(
                kind=pb.POINTER_KIND_EVENTS, payload=payload, size=len(payload),
                sha256=hashlib.sha256(payload).digest(), events=events, seq=file_index, part=part,
                input_guid=source.guid, last=part == len(payloads) - 1,
            )  # fmt: skip
            messages.append((pointer.SerializeToString(), headers_for(pointer)))
        self.publisher.send_batch(messages, group=source.guid)
        total = sum(events for _, events in payloads)
        self.progress.events += total
        self.progress.chunks += len(messages)
        self.progress.bytes += sum(len(body) for body, _ in messages)
        if self.on_progress:
            self.on_progress(self.progress)
        spec = self.spec
        return pb.ChunkEntry(
            seq=file_index, key=chunk_key(spec.task, spec.job, spec.attempt, file_index),
            size=sum(len(p) for p, _ in payloads), sha256=whole.digest(), events=total,
        )  # fmt: skip

    def run(self, inputs: list[InputSource]) -> JobResult:
        spec = self.spec
        if not inputs:
            raise InputError("no --input given")
        manifest = pb.Manifest(
            schema_version=SCHEMA_VERSION, task=spec.task, job=spec.job, attempt=spec.attempt, dataset=spec.dataset,
            producer_version=__version__, start_time_ms=now_ms(),
        )  # fmt: skip
        found: list[str] = []
        files = JobInputs()
        for file_index, source in enumerate(inputs):
            builder = FileSummaryBuilder(source, now_ms())
            manifest.chunks.append(self._send_file(file_index, source, builder))
            summary, file_problems = files.finish(builder, now_ms())
            manifest.inputs.append(summary)
            if file_problems and not spec.allow_mismatch:
                raise InputError(file_problems[0] + " (use --allow-mismatch to index it anyway)")
            found += file_problems
        shared = files.shared()
        if shared and not spec.allow_mismatch:
            raise InputError(shared[0] + " (use --allow-mismatch to index them anyway)")
        found += shared
        manifest.total_events = self.progress.events
        manifest.end_time_ms = now_ms()
        manifest.status = pb.ATTEMPT_STATUS_OK
        manifest.message = "; ".join(found)
        obj = encode_manifest(manifest)
        pointer = self._pointer(
            kind=pb.POINTER_KIND_MANIFEST, payload=obj.data, size=obj.size, sha256=obj.sha256, events=obj.count
        )
        self.publisher.send(pointer.SerializeToString(), headers_for(pointer), group=spec.task)
        return JobResult(
            task=spec.task, job=spec.job, attempt=spec.attempt, events=self.progress.events,
            chunks=self.progress.chunks, bytes=self.progress.bytes, seconds=self.progress.seconds, manifest_url="",
            problems=tuple(found),
        )  # fmt: skip
