"""`*.ei.spb`: the files the ATLAS EventIndex producer writes (docs/spb-format.md).

A gzip stream: little-endian uint32 magic 0x6e56c8c7 and version 1, then records
`[uint32 (type << 8 | msgversion 1)][uint32 length][EventIndex_p1 protobuf]`, in the order

    Header, then per input file (BeginGUID, [TriggerMenu], EIEvent x N, EndGUID), then Trailer.

One `SpbInput` is one SPB file. Its events are those of all its input files, in file order; the
`input_guid` of each event is the GUID of the BeginGUID..EndGUID block that holds it, `guid` is
the first block's GUID and `declared_events` is the Trailer's `nentries`. `files()` gives one
`SpbFileInput` per block (guid = the block's GUID, declared_events = its EndGUID's `nentries`),
for callers that want one summary per input file: it scans the whole file once (no event
decoding), and each SpbFileInput then decompresses the file up to the end of its block.

How the fields of EIEvent records become columns: producer.inputs.spb_events.

The file is read lazily, one bounded buffer at a time; the whole file is never in memory.
Consecutive EIEvent records of a buffer are framed in one tight loop and handed on together.
Everything is checked: magic, version, record words and message versions, record lengths
(at most MAX_RECORD_BYTES), truncation (of the gzip stream, a record header or a record),
protobuf decoding and required fields, the record order, GUIDs, trigger masks and tokens,
and the counts (EndGUID.nentries against the events of its block, Trailer.nfiles against the
BeginGUIDs, Trailer.nentries against all events). Any failure is an InputError with one line
naming the file and the record: records are numbered from 1 in file order (the Header is
record 1; "record 0" is the magic/version word pair), with their uncompressed byte offset.
`check_counts=False` turns the count checks off (the counts are still reported).
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
import pyarrow as pa
from google.protobuf.message import DecodeError, Message
from isal import igzip, isal_zlib

from eventindex.errors import InputError
from producer.inputs import EventIndex_p1_pb2 as ei
from producer.inputs.base import InputSource
from producer.inputs.common import unreadable
from producer.inputs.spb_events import EventRun, decode_events, missing_fields, not_utf8_fields, one_line

MAGIC = 0x6E56C8C7
VERSION = 1
MSG_VERSION = 1
HEADER, TRAILER, BEGIN_GUID, END_GUID, TRIGGER_MENU, EI_EVENT = 1, 2, 3, 4, 5, 6
RECORD_NAMES = {
    HEADER: "Header",
    TRAILER: "Trailer",
    BEGIN_GUID: "BeginGUID",
    END_GUID: "EndGUID",
    TRIGGER_MENU: "TriggerMenu",
    EI_EVENT: "EIEvent",
}
#: The largest record accepted: events are ~0.1-2 kB, trigger menus up to a few hundred kB.
MAX_RECORD_BYTES = 16 << 20
#: How much decompressed data is read at a time.
READ_BLOCK = 1 << 20

#: ISA-L's gzip reader (python-isal): the standard library's GzipFile (the same checks of the CRC, the
#: length and the members) with its decompression ~3x faster; its own errors besides OSError/EOFError.
_GzipFile: type[gzip.GzipFile] = igzip.IGzipFile
_ISAL_ERROR = cast(type[Exception], isal_zlib.error)  # the stubs declare an instance
_WORDS = struct.Struct("<II")
_EVENT_WORD = EI_EVENT << 8 | MSG_VERSION
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
M = TypeVar("M", bound=Message)

# What is wrong with a record that comes right after the Header, where a BeginGUID must be.
_BEFORE_BEGIN = {
    HEADER: "a second Header",
    TRAILER: "Trailer before any BeginGUID: the file holds no input file",
    END_GUID: "EndGUID without a BeginGUID",
    TRIGGER_MENU: "a TriggerMenu must follow its BeginGUID directly",
    EI_EVENT: "EIEvent before any BeginGUID",
}


@dataclass(frozen=True)
class SpbBlock:
    """One input file of an SPB file: its BeginGUID..EndGUID block."""

    index: int
    guid: str  # uppercase
    begin: ei.BeginGUID_p1
    trigger_menu: ei.TriggerMenu_p1 | None
    end: ei.EndGUID_p1
    events: int  # EIEvent records read in the block
    first_record: int  # the BeginGUID's record number

    @property
    def declared_events(self) -> int:
        return int(self.end.nentries)


@dataclass(frozen=True)
class SpbLayout:
    """What a complete pass over an SPB file found."""

    header: ei.Header_p1
    blocks: tuple[SpbBlock, ...]
    trailer: ei.Trailer_p1
    events: int


class _Salvage:
    """The decompressed bytes of a truncated gzip stream, from byte `skip` to where the data ends.

    When the gzip reader meets the end of a truncated file it raises EOFError and drops what it had
    decompressed in that step (up to a block), so the records just before the cut would be lost and
    the error would name the wrong one. This decompresses the file again from its start (an error
    path: the cost of one more pass), with the standard library's zlib (which, unlike ISA-L's, also
    gives the last bytes a cut bit stream holds), and gives every byte that is there; read1 raises
    EOFError only once they are all given. Members follow one another as in a gzip file.
    """

    def __init__(self, path: Path, skip: int) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 (closed by close(): the reader spans calls)
        self._inflate = zlib.decompressobj(31)
        self._skip = skip

    def close(self) -> None:
        self._file.close()

    def read1(self, size: int) -> bytes:
        while True:
            data = self._next(max(size, READ_BLOCK))
            if self._skip:
                dropped = min(self._skip, len(data))
                data, self._skip = data[dropped:], self._skip - dropped
                if not data:
                    continue
            return data

    def _next(self, size: int) -> bytes:
        """The next decompressed bytes; b"" at the clean end of the last member."""
        while True:
            if self._inflate.eof:
                rest = self._inflate.unused_data or self._file.read(READ_BLOCK)
                if not rest:
                    return b""
                self._inflate = zlib.decompressobj(31)
            else:
                rest = self._inflate.unconsumed_tail or self._file.read(READ_BLOCK)
                if not rest:
                    held = self._inflate.flush()  # what the decompressor holds back for more input
                    if held:
                        return held
                    raise EOFError("compressed file ended before the end-of-stream marker")
            data = self._inflate.decompress(rest, size)
            if data:
                return data


class _Records:
    """The framed records of one SPB file, in order: (number, offset, type, payload).

    Checks the magic and version on construction, then each record word and length; gzip and
    I/O failures become InputError naming the record being read.
    """

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.number = 0
        self._buf = b""
        self._pos = 0
        self._base = 0  # uncompressed offset of _buf[0]
        self._path = path
        try:
            self._stream: gzip.GzipFile | _Salvage = _GzipFile(path, "rb")  # closed by close(): spans calls
        except OSError as exc:
            raise unreadable(f"input {name}", exc, f"cannot open: {one_line(exc)}") from None
        try:
            if not self._fill(8, 0, "file header"):
                raise self.error(0, 0, "file header", f"truncated: {len(self._buf)} of 8 bytes (magic, version)")
            magic, version = _WORDS.unpack_from(self._buf, 0)
            if magic != MAGIC:
                raise self.error(
                    0, 0, "file header", f"bad magic 0x{magic:08X}, expected 0x{MAGIC:08X}: not an SPB file"
                )
            if version != VERSION:
                raise self.error(
                    0, 0, "file header", f"unsupported SPB version {version} (this reader knows {VERSION})"
                )
            self._pos = 8
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._stream.close()

    @property
    def position(self) -> int:
        """The uncompressed offset of the next record."""
        return self._base + self._pos

    def error(self, number: int, offset: int, kind: str, reason: str) -> InputError:
        return InputError(f"input {self.name}: record {number} ({kind}) at byte {offset}: {reason}")

    def _fill(self, need: int, number: int, kind: str) -> bool:
        """Make at least `need` bytes available from _pos; False at the end of the stream.

        `number` and `kind` name the record being read, for errors.
        """
        self._buf = self._buf[self._pos :]
        self._base += self._pos
        self._pos = 0
        parts = [self._buf]
        have = len(self._buf)
        while have < need:
            try:
                # read1: whatever one step of decompression gives, so that data before a
                # truncation is still read and the error names the record where it happens.
                block = self._stream.read1(max(READ_BLOCK, need - have))
            except EOFError:
                if not isinstance(self._stream, _Salvage):
                    self._stream.close()
                    self._stream = _Salvage(self._path, self._base + have)
                    continue
                raise self.error(
                    number,
                    self._base,
                    kind,
                    f"truncated gzip stream (no end-of-stream marker): the data ends at byte {self._base + have}",
                ) from None
            except (OSError, _ISAL_ERROR, zlib.error) as exc:
                raise self.error(number, self._base + have, kind, f"unreadable gzip stream: {one_line(exc)}") from None
            if not block:
                break
            parts.append(block)
            have += len(block)
        self._buf = b"".join(parts) if len(parts) > 1 else parts[0]
        return have >= need

    def __iter__(self) -> Iterator[tuple[int, int, int, bytes | EventRun]]:
        """(number, offset, type, payload) of each record; consecutive EIEvent records that the
        buffer holds whole come together as one EventRun (number and offset: its first record's)."""
        unpack = _WORDS.unpack_from
        while True:
            if len(self._buf) - self._pos < 8 and not self._fill(8, self.number + 1, "record header"):
                left = len(self._buf) - self._pos
                if left:
                    raise self.error(
                        self.number + 1, self._base, "record header", f"truncated record header: {left} of 8 bytes"
                    )
                return
            buf, pos = self._buf, self._pos
            word, length = unpack(buf, pos)
            if word == _EVENT_WORD and length <= MAX_RECORD_BYTES and pos + 8 + length <= len(buf):
                yield self._run(buf, pos)
                continue
            offset = self._base + pos
            self.number += 1
            rtype = (word & 0x000FFF00) >> 8
            kind = RECORD_NAMES.get(rtype, "unknown type")
            if word & 0xFFF00000 or rtype not in RECORD_NAMES:
                raise self.error(self.number, offset, kind, f"unknown record word 0x{word:08X}")
            if word & 0xFF != MSG_VERSION:
                raise self.error(
                    self.number, offset, kind, f"unsupported message version {word & 0xFF} (expected {MSG_VERSION})"
                )
            if length > MAX_RECORD_BYTES:
                raise self.error(self.number, offset, kind, f"length {length} exceeds the limit {MAX_RECORD_BYTES}")
            end = pos + 8 + length
            if end > len(self._buf):
                if not self._fill(8 + length, self.number, kind):
                    raise self.error(
                        self.number,
                        offset,
                        kind,
                        f"truncated record: {length} bytes declared, {len(self._buf) - 8} present",
                    )
                pos = 0
                end = 8 + length
            self._pos = end
            if rtype == EI_EVENT:
                run = EventRun(self._buf, np.array([pos + 8]), np.array([end]), self.number, self._base)
                yield self.number, offset, rtype, run
            else:
                yield self.number, offset, rtype, self._buf[pos + 8 : end]

    def _run(self, buf: bytes, pos: int) -> tuple[int, int, int, EventRun]:
        """The EIEvent records from `pos` on that `buf` holds whole (at least the first)."""
        unpack = _WORDS.unpack_from
        size = len(buf)
        heads = [pos]  # where each record's header starts
        pos += 8 + unpack(buf, pos)[1]
        while pos + 8 <= size:
            word, length = unpack(buf, pos)
            end = pos + 8 + length
            if word != _EVENT_WORD or length > MAX_RECORD_BYTES or end > size:
                break
            heads.append(pos)
            pos = end
        starts = np.array(heads, dtype=np.int64)
        ends = np.empty_like(starts)
        ends[:-1] = starts[1:]
        ends[-1] = pos
        first = self.number + 1
        self.number += len(heads)
        self._pos = pos
        return first, self._base + heads[0], EI_EVENT, EventRun(buf, starts + 8, ends, first, self._base)


class SpbInput(InputSource):
    """One SPB file: the events of all its input files (see the module docstring)."""

    def __init__(self, path: Path, *, check_counts: bool = True) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.check_counts = check_counts
        self._layout: SpbLayout | None = None
        # Read the Header and the first BeginGUID now: the file's identity is needed up front.
        records = _Records(self.name, self.path)
        try:
            self.header = ei.Header_p1()
            self.guid = ""
            for number, offset, rtype, payload in records:
                if number == 1:
                    if rtype != HEADER:
                        raise records.error(number, offset, RECORD_NAMES[rtype], "the first record must be the Header")
                    self.header = self._parse(ei.Header_p1, payload, records, number, offset, rtype)
                    continue
                if rtype != BEGIN_GUID:
                    raise records.error(number, offset, RECORD_NAMES[rtype], _BEFORE_BEGIN[rtype])
                begin = self._parse(ei.BeginGUID_p1, payload, records, number, offset, rtype)
                self.guid = self._guid(begin, records, number, offset)
                break
            if not self.guid:
                raise records.error(
                    records.number + 1, records.position, "end of file", "the file ends before its first BeginGUID"
                )
        finally:
            records.close()

    # ------------------------------------------------------------ InputSource

    @property
    def declared_events(self) -> int:
        """The Trailer's `nentries` (the file is scanned once if it was not read yet)."""
        return int(self.layout().trailer.nentries)

    def batches(self, max_rows: int) -> Iterator[pa.Table]:
        yield from self._batches(max_rows, None)

    # ------------------------------------------------------------ SPB specifics

    def layout(self) -> SpbLayout:
        """The blocks, counts, Header and Trailer; scans the file (without decoding events) if needed."""
        if self._layout is None:
            for _ in self._walk(-1):
                pass
        assert self._layout is not None
        return self._layout

    def files(self) -> list[SpbFileInput]:
        """One InputSource per input file (BeginGUID..EndGUID block), in file order."""
        return [SpbFileInput(self, block) for block in self.layout().blocks]

    def _batches(self, max_rows: int, block: int | None) -> Iterator[pa.Table]:
        if max_rows < 1:
            raise ValueError("max_rows must be positive")
        pending: list[tuple[str, EventRun]] = []
        rows = 0
        for guid, run in self._walk(block):
            while len(run):
                head, run = run.split(max_rows - rows)
                pending.append((guid, head))
                rows += len(head)
                if rows == max_rows:
                    yield decode_events(self.name, pending, self.header.provenanceRef)
                    pending, rows = [], 0
        if rows:
            yield decode_events(self.name, pending, self.header.provenanceRef)

    def _walk(self, select: int | None) -> Iterator[tuple[str, EventRun]]:
        """Check the whole file; yield (guid, records) of the EIEvent records of block `select`
        (all blocks when None, none when -1), and remember the layout.

        When one block is selected and the file was checked before (`files()` scans it), the
        walk ends with that block's EndGUID."""
        records = _Records(self.name, self.path)
        error = records.error
        header: ei.Header_p1 | None = None
        trailer: ei.Trailer_p1 | None = None
        blocks: list[SpbBlock] = []
        begin: ei.BeginGUID_p1 | None = None
        begin_record = 0
        menu: ei.TriggerMenu_p1 | None = None
        guid = ""
        in_block = 0  # events of the open block
        total = 0
        previous = 0  # type of the previous record
        try:
            for number, offset, rtype, payload in records:
                if isinstance(payload, EventRun):
                    if begin is None:
                        raise error(number, offset, "EIEvent", self._misplaced(previous, trailer is not None))
                    in_block += len(payload)
                    if select is None or select == len(blocks):
                        yield guid, payload
                    previous = rtype
                    continue
                kind = RECORD_NAMES[rtype]
                if trailer is not None:
                    raise error(number, offset, kind, "record after the Trailer")
                if rtype == HEADER:
                    if header is not None:
                        raise error(number, offset, kind, "a second Header")
                elif header is None:
                    raise error(number, offset, kind, "the first record must be the Header")
                if rtype == HEADER:
                    header = self._parse(ei.Header_p1, payload, records, number, offset, rtype)
                elif rtype == BEGIN_GUID:
                    if begin is not None:
                        raise error(number, offset, kind, f"BeginGUID inside the block opened by record {begin_record}")
                    begin = self._parse(ei.BeginGUID_p1, payload, records, number, offset, rtype)
                    guid = self._guid(begin, records, number, offset)
                    begin_record, menu, in_block = number, None, 0
                elif rtype == TRIGGER_MENU:
                    if previous != BEGIN_GUID:
                        raise error(number, offset, kind, "a TriggerMenu must follow its BeginGUID directly")
                    menu = self._parse(ei.TriggerMenu_p1, payload, records, number, offset, rtype)
                elif rtype == END_GUID:
                    if begin is None:
                        raise error(number, offset, kind, "EndGUID without a BeginGUID")
                    end = self._parse(ei.EndGUID_p1, payload, records, number, offset, rtype)
                    if self.check_counts and end.nentries != in_block:
                        raise error(
                            number,
                            offset,
                            kind,
                            f"declares {end.nentries} events, the block of GUID {guid} "
                            f"(record {begin_record}) holds {in_block}",
                        )
                    blocks.append(SpbBlock(len(blocks), guid, begin, menu, end, in_block, begin_record))
                    total += in_block
                    begin = None
                    if select == len(blocks) - 1 and self._layout is not None:
                        return  # one input file of a file whose whole structure was checked before
                else:  # TRAILER
                    if begin is not None:
                        raise error(number, offset, kind, f"Trailer inside the block opened by record {begin_record}")
                    trailer = self._parse(ei.Trailer_p1, payload, records, number, offset, rtype)
                    if self.check_counts and trailer.nfiles != len(blocks):
                        raise error(
                            number, offset, kind, f"declares {trailer.nfiles} input files, the file holds {len(blocks)}"
                        )
                    if self.check_counts and trailer.nentries != total:
                        raise error(number, offset, kind, f"declares {trailer.nentries} events, the file holds {total}")
                previous = rtype
            if trailer is None or header is None:
                where = (
                    f"inside the block opened by record {begin_record}" if begin is not None else "without a Trailer"
                )
                raise error(
                    records.number + 1,
                    records.position,
                    "end of file",
                    f"truncated: the file ends after record {records.number} {where}",
                )
        finally:
            records.close()
        self._layout = SpbLayout(header, tuple(blocks), trailer, total)

    @staticmethod
    def _misplaced(previous: int, after_trailer: bool) -> str:
        if after_trailer:
            return "record after the Trailer"
        if previous in (0, HEADER):
            return "EIEvent before any BeginGUID"
        return "EIEvent outside a BeginGUID..EndGUID block"

    @staticmethod
    def _parse(cls: type[M], payload: bytes | EventRun, records: _Records, number: int, offset: int, rtype: int) -> M:
        assert isinstance(payload, bytes)  # only EIEvent records come as runs, and they are not parsed here
        kind = RECORD_NAMES[rtype]
        try:
            message = cls.FromString(payload)
        except DecodeError as exc:
            raise records.error(number, offset, kind, f"undecodable protobuf: {one_line(exc)}") from None
        if not message.IsInitialized():
            missing = ", ".join(missing_fields(message))
            raise records.error(number, offset, kind, f"missing required fields: {missing}")
        if not_utf8 := not_utf8_fields(message):
            raise records.error(number, offset, kind, f"not UTF-8 text: {', '.join(not_utf8)}")
        return message

    @staticmethod
    def _guid(begin: ei.BeginGUID_p1, records: _Records, number: int, offset: int) -> str:
        if not _GUID.fullmatch(begin.guid):
            raise records.error(number, offset, "BeginGUID", f"guid {begin.guid[:60]!r} is not 8-4-4-4-12 hex digits")
        return begin.guid.upper()


class SpbFileInput(InputSource):
    """One input file of an SPB file: the events of one BeginGUID..EndGUID block.

    Made by `SpbInput.files()`, after a scan that checked the whole file's structure and counts;
    reading it decodes and checks that block's events, and stops at its EndGUID.
    """

    def __init__(self, parent: SpbInput, block: SpbBlock) -> None:
        self.parent = parent
        self.block = block
        self.name = f"{parent.name}#{block.index + 1}"
        self.guid = block.guid

    @property
    def declared_events(self) -> int:
        """The block's EndGUID `nentries`."""
        return self.block.declared_events

    def batches(self, max_rows: int) -> Iterator[pa.Table]:
        return self.parent._batches(max_rows, self.block.index)
