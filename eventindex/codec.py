"""Chunk and manifest objects: a small fixed header plus a zstd-compressed protobuf body.

Header (little-endian, 68 bytes):

    magic        4s   b"EIC1" (chunk) or b"EIM1" (manifest)
    version      u16  format version: chunks 3 when a mask column is dense (bitmaps), else 2;
                      1 is still read (chunks written before the `*_absent` presence columns,
                      whose values are all present); manifests 1
    codec        u8   1 = zstd
    flags        u8   0
    header_size  u16  68
    reserved     u16  0
    usize        u64  uncompressed body size
    count        u64  events in the object
    csize        u64  stored (compressed) body size
    sha256       32s  sha256 of the stored body

Decoding checks, in order and before trusting anything: length, magic, version, codec, sizes
against the limits (a zstd bomb is refused before it is inflated), the checksum, then the body.
Every failure is a typed CodecError with a one-line reason.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from dataclasses import dataclass
from typing import Final

import pyarrow as pa
import zstandard
from google.protobuf.message import DecodeError

from eventindex.columns import READABLE_VERSIONS, Body, body_writer, decode_body
from eventindex.errors import (
    CorruptObjectError,
    OversizedObjectError,
    TruncatedObjectError,
    UnsupportedVersionError,
)
from eventindex.schema import eventindex_pb2 as pb
from eventindex.wire import check_records

CHUNK_MAGIC: Final = b"EIC1"
MANIFEST_MAGIC: Final = b"EIM1"
#: The manifest object's format version (chunks: columns.FORMAT_VERSION).
MANIFEST_VERSION: Final = 1
#: Format versions read, by magic.
_READABLE = {CHUNK_MAGIC: READABLE_VERSIONS, MANIFEST_MAGIC: (MANIFEST_VERSION,)}
SCHEMA_VERSION: Final = 1
CODEC_ZSTD: Final = 1
_HEADER = struct.Struct("<4sHBBHHQQQ32s")
HEADER_SIZE: Final = _HEADER.size
DEFAULT_ZSTD_LEVEL: Final = 1
#: Largest body a decoder will inflate; a header claiming more is refused unread.
DEFAULT_MAX_UNCOMPRESSED: Final = 512 * 1024 * 1024


@dataclass(frozen=True)
class Header:
    magic: bytes
    version: int
    codec: int
    usize: int
    count: int
    csize: int
    sha256: bytes


@dataclass(frozen=True)
class EncodedObject:
    data: bytes
    sha256: bytes  # of the whole object, as a pointer carries it
    count: int

    @property
    def size(self) -> int:
        return len(self.data)


def _pack(magic: bytes, version: int, body: bytes | memoryview, count: int, level: int) -> EncodedObject:
    compressed = zstandard.ZstdCompressor(level=level, write_content_size=True).compress(body)
    header = _HEADER.pack(
        magic,
        version,
        CODEC_ZSTD,
        0,
        HEADER_SIZE,
        0,
        body.nbytes if isinstance(body, memoryview) else len(body),
        count,
        len(compressed),
        hashlib.sha256(compressed).digest(),
    )
    data = header + compressed
    return EncodedObject(data=data, sha256=hashlib.sha256(data).digest(), count=count)


def read_header(data: bytes, magic: bytes) -> Header:
    if len(data) < HEADER_SIZE:
        raise TruncatedObjectError(f"object is {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    fields = _HEADER.unpack_from(data)
    header = Header(fields[0], fields[1], fields[2], fields[6], fields[7], fields[8], fields[9])
    if header.magic != magic:
        raise CorruptObjectError(f"bad magic {header.magic!r}, expected {magic!r}")
    if header.version not in _READABLE[magic]:
        readable = ", ".join(map(str, _READABLE[magic]))
        raise UnsupportedVersionError(
            f"object format version {header.version} is not supported (this build reads {readable})"
        )
    if header.codec != CODEC_ZSTD:
        raise UnsupportedVersionError(f"unknown codec {header.codec}")
    if fields[4] != HEADER_SIZE:
        raise CorruptObjectError(f"header size field is {fields[4]}, expected {HEADER_SIZE}")
    return header


def _unpack(data: bytes, magic: bytes, max_uncompressed: int) -> tuple[Header, bytes]:
    header = read_header(data, magic)
    if header.usize > max_uncompressed:
        raise OversizedObjectError(f"body would inflate to {header.usize} bytes, above the limit of {max_uncompressed}")
    stored = len(data) - HEADER_SIZE
    if stored < header.csize:
        raise TruncatedObjectError(f"body is {stored} bytes, the header says {header.csize}")
    if stored > header.csize:
        raise CorruptObjectError(f"{stored - header.csize} bytes of trailing garbage after the body")
    compressed = memoryview(data)[HEADER_SIZE:]
    if hashlib.sha256(compressed).digest() != header.sha256:
        raise CorruptObjectError("body sha256 does not match the header")
    try:
        # max_output_size bounds frames that do not declare their size; a frame that declares
        # more than it is refused by zstd before allocation.
        body = zstandard.ZstdDecompressor().decompress(compressed, max_output_size=header.usize)
    except zstandard.ZstdError as exc:
        raise CorruptObjectError(f"zstd body does not decompress: {exc}") from exc
    if len(body) != header.usize:
        raise CorruptObjectError(f"body inflated to {len(body)} bytes, the header says {header.usize}")
    return header, body


# ---------------------------------------------------------------- chunks


#: Per thread, the buffer chunk bodies are joined into before they are compressed (see Writer.join_into),
#: kept for bodies of at most SCRATCH_MAX_BYTES (a 10,000-event chunk of real ATLAS masks is ~13 MB).
_scratch = threading.local()
SCRATCH_MAX_BYTES: Final = 64 * 1024 * 1024


def encode_chunk(table: pa.Table, level: int = DEFAULT_ZSTD_LEVEL) -> EncodedObject:
    writer, version = body_writer(table)
    size = writer.size
    buffer: bytearray = getattr(_scratch, "buffer", bytearray())
    if len(buffer) < size:
        buffer = bytearray(size)
        if size <= SCRATCH_MAX_BYTES:
            _scratch.buffer = buffer
    body = writer.join_into(buffer)
    try:
        return _pack(CHUNK_MAGIC, version, body, table.num_rows, level)
    finally:
        body.release()


def decode_chunk_body(data: bytes, max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED) -> Body:
    """Object bytes -> the parsed body (row count and raw columns), checked against the header."""
    header, raw = _unpack(data, CHUNK_MAGIC, max_uncompressed)
    body = Body(raw, "chunk body (not a valid protobuf ChunkBody)", header.version)
    if body.rows != header.count:
        raise CorruptObjectError(f"chunk body has {body.rows} events, the header says {header.count}")
    return body


def decode_chunk(data: bytes, max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED) -> pa.Table:
    """Object bytes -> Arrow events; raises a CodecError subclass with a one-line reason."""
    return decode_body(decode_chunk_body(data, max_uncompressed))


# ---------------------------------------------------------------- manifests


def encode_manifest(manifest: pb.Manifest) -> EncodedObject:
    return _pack(
        MANIFEST_MAGIC, MANIFEST_VERSION, manifest.SerializeToString(), manifest.total_events, DEFAULT_ZSTD_LEVEL
    )


MAX_MANIFEST_BYTES: Final = 64 * 1024 * 1024


def decode_manifest(data: bytes) -> pb.Manifest:
    header, raw = _unpack(data, MANIFEST_MAGIC, MAX_MANIFEST_BYTES)
    check_records(raw, pb.Manifest.DESCRIPTOR, "manifest (not a valid protobuf Manifest)")
    manifest = pb.Manifest()
    try:
        manifest.ParseFromString(raw)
    except DecodeError as exc:
        raise CorruptObjectError(f"manifest is not a valid protobuf Manifest: {exc}") from exc
    if manifest.schema_version != SCHEMA_VERSION:
        raise UnsupportedVersionError(f"manifest schema version {manifest.schema_version} is not supported")
    if manifest.total_events != header.count:
        raise CorruptObjectError(f"manifest total {manifest.total_events} differs from its header count {header.count}")
    return manifest
