"""Pointer messages: build them on the producer side, parse and validate them on the supersink side."""

from __future__ import annotations

import time
from collections.abc import Mapping

from google.protobuf.message import DecodeError

from eventindex import __version__
from eventindex.codec import SCHEMA_VERSION
from eventindex.errors import MessageError, UnsupportedVersionError
from eventindex.names import validate_attempt, validate_name
from eventindex.schema import eventindex_pb2 as pb

#: A pointer is a few hundred bytes; an EVENTS message or an inline manifest (broker-only
#: transport) is larger; anything beyond this is refused unread.
MAX_POINTER_BYTES = 4 * 1024 * 1024
#: A manifest pointer of the object-store transport also carries the manifest's bytes when the manifest is
#: at most this large (a job's usual one or two kB), so the supersink records it without a GET. The manifest
#: object is stored all the same (rescans, audits). Pointers without the bytes are read as before.
INLINE_MANIFEST_MAX_BYTES = 64 * 1024
CONTENT_TYPE = "application/x-eventindex-pointer+protobuf"

KIND_NAMES = {
    pb.POINTER_KIND_CHUNK: "chunk",
    pb.POINTER_KIND_MANIFEST: "manifest",
    pb.POINTER_KIND_TASK_EXPECTATION: "task-expectation",
    pb.POINTER_KIND_EVENTS: "events",
}


def now_ms() -> int:
    return int(time.time() * 1000)


def object_pointer(
    kind: pb.PointerKind,
    url: str,
    size: int,
    sha256: bytes,
    events: int,
    task: str,
    job: str,
    attempt: int,
    dataset: str,
    seq: int = 0,
) -> pb.Pointer:
    return pb.Pointer(
        schema_version=SCHEMA_VERSION,
        kind=kind,
        url=url,
        size=size,
        sha256=sha256,
        events=events,
        task=task,
        job=job,
        attempt=attempt,
        dataset=dataset,
        seq=seq,
        producer_version=__version__,
        sent_time_ms=now_ms(),
    )


def expectation_pointer(task: str, jobs: int, events: int | None = None) -> pb.Pointer:
    validate_name("task", task)
    if jobs < 1:
        raise MessageError("a task expectation needs at least one job")
    pointer = pb.Pointer(
        schema_version=SCHEMA_VERSION,
        kind=pb.POINTER_KIND_TASK_EXPECTATION,
        task=task,
        expected_jobs=jobs,
        producer_version=__version__,
        sent_time_ms=now_ms(),
    )
    if events is not None:
        if events < 0:
            raise MessageError("expected events cannot be negative")
        pointer.expected_events = events
    return pointer


def headers_for(pointer: pb.Pointer) -> Mapping[str, str]:
    return {"content-type": CONTENT_TYPE, "ei-kind": KIND_NAMES.get(pointer.kind, "unknown"), "ei-task": pointer.task}


def parse_pointer(body: bytes) -> pb.Pointer:
    """Bytes from the broker -> a validated Pointer, or MessageError/InvalidNameError with one line."""
    if len(body) > MAX_POINTER_BYTES:
        raise MessageError(f"message of {len(body)} bytes is too large to be a pointer")
    pointer = pb.Pointer()
    try:
        pointer.ParseFromString(body)
    except DecodeError as exc:
        raise MessageError(f"message body is not a protobuf Pointer: {exc}") from exc
    if pointer.schema_version != SCHEMA_VERSION:
        raise UnsupportedVersionError(f"pointer schema version {pointer.schema_version} is not supported")
    if pointer.kind not in KIND_NAMES:
        raise MessageError(f"pointer kind {pointer.kind} is unknown")
    validate_name("task", pointer.task)
    if pointer.kind == pb.POINTER_KIND_TASK_EXPECTATION:
        if pointer.expected_jobs < 1:
            raise MessageError("task expectation with no jobs")
        return pointer
    validate_name("job", pointer.job)
    validate_name("dataset", pointer.dataset)
    validate_attempt(pointer.attempt)
    if len(pointer.sha256) != 32:
        raise MessageError("pointer sha256 is not 32 bytes")
    inline = pointer.kind == pb.POINTER_KIND_EVENTS or (pointer.kind == pb.POINTER_KIND_MANIFEST and not pointer.url)
    if inline:
        if pointer.url:
            raise MessageError("an events message carries its payload, not a URL")
        if len(pointer.payload) != pointer.size:
            raise MessageError(f"payload is {len(pointer.payload)} bytes, the message says {pointer.size}")
        if pointer.kind == pb.POINTER_KIND_EVENTS:
            validate_name("input guid", pointer.input_guid)
    elif not pointer.url:
        raise MessageError("pointer without an object URL")
    elif pointer.payload:
        if pointer.kind != pb.POINTER_KIND_MANIFEST:
            raise MessageError("a chunk pointer with a URL carries no payload")
        if len(pointer.payload) != pointer.size:
            raise MessageError(f"manifest bytes are {len(pointer.payload)} long, the pointer says {pointer.size}")
        if len(pointer.payload) > INLINE_MANIFEST_MAX_BYTES:
            raise MessageError(
                f"a pointer carries {len(pointer.payload):,} manifest bytes, more than {INLINE_MANIFEST_MAX_BYTES:,}"
            )
    return pointer
