"""The EIEvent records of an SPB file -> Arrow events (EVENT_SCHEMA), a batch of records at a time.

Fields: EIEvent_p1 numbers map to the columns of the same meaning; an optional field the record
lacks (extendedLevel1ID, SMK, HLTPSK, L1PSK, mcEventWeight, mcChannelNumber) is null, never 0.
L1PassedTrigMask -> l1_tbp/tap/tav, L2PassedTrigMask -> l2_*, EFPassedTrigMask -> hlt_* (the EF
field holds the HLT in Run 2/3), each null when absent or empty (see trigger.py); eitoken ->
provenance in order (stream = the token's name; the first is the event's own file). An event
without tokens has an empty provenance list, or null when the Header says provenance was not
collected (`provenanceRef` false). An eventNumber or token OID of 2^63 or more, which the
warehouse's signed 64-bit columns cannot hold, is refused naming the record.

The records of a batch are decoded together, column by column (producer.inputs.protoscan);
masks are decoded once per distinct string. A batch holding anything that path does not decode
(an unknown field, a missing required field, a value out of its field's range) is parsed record
by record with the protobuf runtime instead, which decodes it as protobuf says or names the first
bad record. Failures are InputErrors naming the file, the record's number and its byte offset.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from eventindex.columns import EVENT_SCHEMA, INT64_MAX, PROVENANCE_TYPE
from eventindex.errors import CorruptObjectError, InputError
from eventindex.wire import Fields
from producer.inputs import EventIndex_p1_pb2 as ei
from producer.inputs.common import first_blank, out_of_range
from producer.inputs.pool_token import TokenFormatError, parse_tokens
from producer.inputs.protoscan import I32, LEN, PADDING, VARINT, Layout, Scanned, Unusual, scan
from producer.inputs.trigger import Mask, MaskFormatError, decode_hlt, decode_l1

# (column, EIEvent_p1 field, numpy dtype): the required numbers, then the optional ones (null when absent).
REQUIRED_NUMBERS = (
    ("run_number", "runNumber", "uint32"),
    ("event_number", "eventNumber", "uint64"),
    ("lumi_block", "lumiBlock", "uint32"),
    ("bcid", "bcid", "uint32"),
    ("timestamp", "timeStamp", "uint32"),
    ("timestamp_ns_offset", "timeStampNSOffset", "uint32"),
    ("is_simulation", "isSimulation", "bool"),
    ("is_calibration", "isCalibration", "bool"),
    ("is_testbeam", "isTestBeam", "bool"),
)
OPTIONAL_NUMBERS = (
    ("extended_level1_id", "extendedLevel1ID", "uint32"),
    ("mc_channel_number", "mcChannelNumber", "uint32"),
    ("mc_event_weight", "mcEventWeight", "float32"),
    ("smk", "SMK", "uint32"),
    ("hlt_psk", "HLTPSK", "uint32"),
    ("l1_psk", "L1PSK", "uint32"),
)
_NUMBERS = REQUIRED_NUMBERS + OPTIONAL_NUMBERS
_MASK_FIELDS = ("L1PassedTrigMask", "L2PassedTrigMask", "EFPassedTrigMask")
_MASK_COLUMNS = (
    (decode_l1, ("l1_tbp", "l1_tap", "l1_tav")),
    (decode_hlt, ("l2_passed_physics", "l2_passed_through", "l2_resurrected")),
    (decode_hlt, ("hlt_passed_physics", "hlt_passed_through", "hlt_resurrected")),
)
# One call per event: the numbers, then the three mask strings.
_EVENT_FIELDS = operator.attrgetter(*[field for _, field, _ in _NUMBERS], *_MASK_FIELDS)
_OPTIONAL_FIELDS = [field for _, field, _ in OPTIONAL_NUMBERS]

_WIRES = {
    FieldDescriptor.TYPE_UINT32: VARINT,
    FieldDescriptor.TYPE_UINT64: VARINT,
    FieldDescriptor.TYPE_BOOL: VARINT,
    FieldDescriptor.TYPE_FLOAT: I32,
    FieldDescriptor.TYPE_STRING: LEN,
    FieldDescriptor.TYPE_MESSAGE: LEN,
}


def _layout(descriptor: Any) -> Layout:  # a protobuf Descriptor (the upb and Python classes differ)
    wires = {field.number: _WIRES[field.type] for field in descriptor.fields}
    return Layout(wires, frozenset(field.number for field in descriptor.fields if field.is_repeated))


def _required(descriptor: Any) -> list[int]:
    return [field.number for field in descriptor.fields if field.is_required]


_EVENT = _layout(ei.EIEvent_p1.DESCRIPTOR)
_TOKEN = _layout(ei.EIEvent_p1.EItoken_p1.DESCRIPTOR)
_EVENT_REQUIRED = _required(ei.EIEvent_p1.DESCRIPTOR)
_TOKEN_REQUIRED = _required(ei.EIEvent_p1.EItoken_p1.DESCRIPTOR)
_NUMBER_OF = {field.name: field.number for field in ei.EIEvent_p1.DESCRIPTOR.fields}
_TOKEN_FIELD = _NUMBER_OF["eitoken"]
_NAME, _TOKEN_TEXT = (ei.EIEvent_p1.EItoken_p1.DESCRIPTOR.fields_by_name[f].number for f in ("name", "token"))


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def missing_fields(message: Message, prefix: str = "") -> list[str]:
    """The required fields a message lacks, nested ones as `eitoken[0].token`."""
    missing = []
    for field in message.DESCRIPTOR.fields:
        if field.is_required and not message.HasField(field.name):
            missing.append(prefix + field.name)
        elif field.type == field.TYPE_MESSAGE and field.is_repeated:
            for index, item in enumerate(getattr(message, field.name)):
                missing += missing_fields(item, f"{prefix}{field.name}[{index}].")
    return missing


def not_utf8_fields(message: Message, prefix: str = "") -> list[str]:
    """The string fields whose bytes are not UTF-8, nested ones as `eitoken[0].token`.

    proto2 does not check strings when parsing: protobuf's upb runtime hands such a field out as bytes."""
    bad = []
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.type == field.TYPE_STRING:
            if any(isinstance(v, bytes) for v in (value if field.is_repeated else [value])):
                bad.append(prefix + field.name)
        elif field.type == field.TYPE_MESSAGE:
            if field.is_repeated:
                for index, item in enumerate(value):
                    bad += not_utf8_fields(item, f"{prefix}{field.name}[{index}].")
            elif message.HasField(field.name):
                bad += not_utf8_fields(value, f"{prefix}{field.name}.")
    return bad


@dataclass(frozen=True)
class EventRun:
    """Consecutive EIEvent records held in one buffer of the decompressed file."""

    buf: bytes
    starts: np.ndarray  # where each record's payload starts in buf
    ends: np.ndarray  # and ends
    first: int  # the first record's number
    base: int  # the file offset (uncompressed) of buf[0]

    def __len__(self) -> int:
        return len(self.starts)

    def split(self, count: int) -> tuple[EventRun, EventRun]:
        """The first `count` records, and the rest."""
        head = EventRun(self.buf, self.starts[:count], self.ends[:count], self.first, self.base)
        tail = EventRun(self.buf, self.starts[count:], self.ends[count:], self.first + count, self.base)
        return head, tail


@dataclass
class _Batch:
    """The records of a batch, back to back in one array, and where each came from."""

    raw: bytes  # the records, back to back, then PADDING zero bytes
    data: np.ndarray  # the same bytes, as uint8
    starts: np.ndarray
    ends: np.ndarray
    numbers: np.ndarray  # record numbers
    offsets: np.ndarray  # record offsets in the file
    guid_index: np.ndarray  # into guids
    guids: list[str]

    @classmethod
    def of(cls, runs: Sequence[tuple[str, EventRun]]) -> _Batch:
        pieces: list[bytes | memoryview] = []
        starts, ends, numbers, offsets, guid_index = [], [], [], [], []
        guids: list[str] = []
        at = 0
        for guid, run in runs:
            low, high = int(run.starts[0]) - 8, int(run.ends[-1])  # from the first record's header
            pieces.append(memoryview(run.buf)[low:high])
            starts.append(run.starts - low + at)
            ends.append(run.ends - low + at)
            numbers.append(np.arange(run.first, run.first + len(run), dtype=np.int64))
            offsets.append(run.base + run.starts - 8)
            if not guids or guids[-1] != guid:
                guids.append(guid)
            guid_index.append(np.full(len(run), len(guids) - 1, dtype=np.int32))
            at += high - low
        pieces.append(bytes(PADDING))
        raw = b"".join(pieces)
        return cls(
            raw,
            np.frombuffer(raw, dtype=np.uint8),
            np.concatenate(starts),
            np.concatenate(ends),
            np.concatenate(numbers),
            np.concatenate(offsets),
            np.concatenate(guid_index),
            guids,
        )


@dataclass
class _Decoded:
    """The fields of a batch of events, as columns, before the masks and tokens are decoded."""

    numbers: dict[str, np.ndarray]  # every _NUMBERS column, in its dtype
    absent: dict[str, np.ndarray]  # the OPTIONAL_NUMBERS columns: where the record lacks the field
    masks: list[pa.Array]  # the three mask strings ("" where unset), in _MASK_FIELDS order
    token_counts: np.ndarray  # int32, tokens per event
    streams: pa.Array  # every token's name, event after event
    tokens: pa.Array


class TooWide(Exception):
    """A 32-bit field whose varint holds more: refused (the protobuf runtime would keep its low 32 bits)."""

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(reason)
        self.row, self.reason = row, reason


def _fast(batch: _Batch) -> _Decoded:
    """Decode the records column by column; Unusual when they hold what this does not decode."""
    n = len(batch.starts)
    events = scan(batch.data, batch.starts, batch.ends, _EVENT)
    if not events.present[:, _EVENT_REQUIRED].all():
        raise Unusual("a record lacks a required field")
    numbers, absent = {}, {}
    for column, field, dtype in _NUMBERS:
        number = _NUMBER_OF[field]
        values = events.values[:, number]
        if dtype == "uint32":
            if np.any(wide := values > np.uint64(0xFFFFFFFF)):  # the protobuf runtime would cut it to 32 bits
                row = int(np.flatnonzero(wide)[0])
                raise TooWide(row, f"{field} {int(values[row])} does not fit its 32-bit field")
            numbers[column] = values.astype(np.uint32)
        elif dtype == "bool":
            numbers[column] = values != 0
        elif dtype == "float32":
            numbers[column] = values.astype(np.uint32).view(np.float32)
        else:
            numbers[column] = values
        if (column, field, dtype) in OPTIONAL_NUMBERS:
            absent[column] = ~events.present[:, number]
    masks = [_strings(batch.raw, events, _NUMBER_OF[field]) for field in _MASK_FIELDS]
    index, begin, end = events.repeated[_TOKEN_FIELD]
    tokens = scan(batch.data, begin, end, _TOKEN)
    if not tokens.present[:, _TOKEN_REQUIRED].all():
        raise Unusual("a token lacks a required field")
    return _Decoded(
        numbers,
        absent,
        masks,
        np.bincount(index, minlength=n).astype(np.int32),
        _strings(batch.raw, tokens, _NAME),
        _strings(batch.raw, tokens, _TOKEN_TEXT),
    )


def _strings(raw: bytes, scanned: Scanned, number: int) -> pa.Array:
    """A LEN field of every message ("" where absent), as an Arrow string array cut out of `raw`.

    The strings lie in `raw` in message order: an Arrow binary array over `raw` whose entries are
    the gaps and the strings in turn ([0, b0), [b0, e0), [e0, b1), ...) costs no copy, and taking
    every second entry copies the strings out with no Python object per string.
    Unusual for bytes that are not UTF-8 (or strings out of order, which a scan does not give)."""
    present = scanned.present[:, number]
    n = len(present)
    end = np.where(present, scanned.ends[:, number], 0)
    last = np.maximum.accumulate(end) if n else end  # where the strings so far end: an absent one is empty there
    bounds = np.zeros(2 * n + 1, dtype=np.int64)
    bounds[1::2] = np.where(present, scanned.values[:, number].astype(np.int64), last)
    bounds[2::2] = last
    if bounds[-1] >= 2**31 or np.any(bounds[1:] < bounds[:-1]):
        raise Unusual("strings out of order")
    cut = pa.Array.from_buffers(pa.binary(), 2 * n, [None, pa.py_buffer(bounds.astype(np.int32)), pa.py_buffer(raw)])
    try:
        return cut.take(pa.array(np.arange(1, 2 * n, 2))).cast(pa.string())
    except pa.ArrowInvalid:
        raise Unusual("a string that is not UTF-8") from None


_UINT32_FIELDS = [(field, _NUMBER_OF[field]) for _, field, dtype in _NUMBERS if dtype == "uint32"]


def _too_wide(raw: bytes) -> str | None:
    """Why a record's 32-bit field holds more than 32 bits (as the column-wise decoder refuses), or None."""
    try:
        fields = Fields(raw, "EIEvent")
    except CorruptObjectError:
        return None  # the protobuf runtime accepted it: nothing more to say here
    for field, number in _UINT32_FIELDS:
        value = fields.uint(number)
        if value > 0xFFFFFFFF:
            return f"{field} {value} does not fit its 32-bit field"
    return None


def _slow(batch: _Batch, error: Callable[[int, str], InputError]) -> _Decoded:
    """Decode the records one by one with the protobuf runtime, naming the first bad one."""
    parse = ei.EIEvent_p1.FromString
    fields, present, counts, streams, tokens = [], [], [], [], []
    for row, (start, end) in enumerate(zip(batch.starts.tolist(), batch.ends.tolist(), strict=True)):
        try:
            event = parse(batch.raw[start:end])
        except DecodeError as exc:
            raise error(row, f"undecodable protobuf: {one_line(exc)}") from None
        if not event.IsInitialized():
            raise error(row, f"missing required fields: {', '.join(missing_fields(event))}")
        wide = _too_wide(batch.raw[start:end])
        if wide is not None:  # the runtime kept its low 32 bits
            raise error(row, wide)
        if not_utf8 := not_utf8_fields(event):
            raise error(row, f"not UTF-8 text: {', '.join(not_utf8)}")
        fields.append(_EVENT_FIELDS(event))
        present.append(tuple(map(event.HasField, _OPTIONAL_FIELDS)))
        counts.append(len(event.eitoken))
        for ref in event.eitoken:
            streams.append(ref.name)
            tokens.append(ref.token)
    columns = list(zip(*fields, strict=True)) or [()] * (len(_NUMBERS) + len(_MASK_FIELDS))
    flags = np.array(present, dtype=bool).reshape(len(fields), len(OPTIONAL_NUMBERS))
    return _Decoded(
        {column: np.array(columns[i], dtype=dtype) for i, (column, _, dtype) in enumerate(_NUMBERS)},
        {column: ~flags[:, k] for k, (column, _, _) in enumerate(OPTIONAL_NUMBERS)},
        [pa.array(columns[len(_NUMBERS) + k], pa.string()) for k in range(len(_MASK_FIELDS))],
        np.array(counts, dtype=np.int32),
        pa.array(streams, pa.string()),
        pa.array(tokens, pa.string()),
    )


def decode_events(name: str, runs: Sequence[tuple[str, EventRun]], provenance_ref: bool) -> pa.Table:
    """Arrow events of the records of `runs`, each with its input file's GUID, in order.

    `provenance_ref` is the Header's flag: when false, an event without tokens has no provenance (null).
    """
    batch = _Batch.of(runs)

    def error(row: int, reason: str) -> InputError:
        return InputError(
            f"input {name}: record {int(batch.numbers[row])} (EIEvent) at byte {int(batch.offsets[row])}: {reason}"
        )

    try:
        decoded = _fast(batch)
    except TooWide as exc:
        raise error(exc.row, exc.reason) from None
    except Unusual:
        decoded = _slow(batch, error)
    return _table(decoded, batch, provenance_ref, error)


def _table(decoded: _Decoded, batch: _Batch, provenance_ref: bool, error: Callable[[int, str], InputError]) -> pa.Table:
    n = len(batch.starts)
    columns: dict[str, pa.Array] = {}
    too_big = np.flatnonzero(decoded.numbers["event_number"] > np.uint64(INT64_MAX))
    if len(too_big):
        row = int(too_big[0])
        raise error(row, out_of_range("event_number", int(decoded.numbers["event_number"][row])))
    for column, _, _ in _NUMBERS:
        columns[column] = pa.array(decoded.numbers[column], mask=decoded.absent.get(column))
    for strings, (decode, names) in zip(decoded.masks, _MASK_COLUMNS, strict=True):
        distinct = strings.dictionary_encode()
        index = distinct.indices.to_numpy()
        try:
            masks = decode(distinct.dictionary)
        except MaskFormatError as exc:
            raise error(int(np.flatnonzero(index == exc.index)[0]), exc.reason) from None
        for column, mask in zip(names, masks, strict=True):
            columns[column] = Mask(mask.bitmaps, mask.valid, mask.inverse[index]).column()
    columns["provenance"] = _provenance(decoded, provenance_ref, error)
    columns["input_guid"] = pa.DictionaryArray.from_arrays(
        pa.array(batch.guid_index), pa.array(batch.guids, pa.string())
    ).cast(pa.string())
    assert all(len(array) == n for array in columns.values())
    return pa.Table.from_arrays([columns[field.name].cast(field.type) for field in EVENT_SCHEMA], schema=EVENT_SCHEMA)


def _provenance(decoded: _Decoded, provenance_ref: bool, error: Callable[[int, str], InputError]) -> pa.Array:
    counts = decoded.token_counts
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])

    def token_error(index: int, reason: str) -> InputError:
        event = int(np.searchsorted(offsets, index, side="right")) - 1
        return error(event, f"eitoken {index - int(offsets[event])}: {reason}")

    blank = first_blank(decoded.streams)
    if blank >= 0:
        raise token_error(blank, "the name (the stream) is an empty or blank string")
    try:
        tokens = parse_tokens(decoded.tokens)
    except TokenFormatError as exc:
        raise token_error(exc.index, exc.reason) from None
    for name, oids in (("oid1", tokens.oid1), ("oid2", tokens.oid2)):
        too_big = np.flatnonzero(np.asarray(oids) > INT64_MAX)
        if len(too_big):
            index = int(too_big[0])
            raise token_error(index, out_of_range(f"provenance.{name}", oids[index].as_py()))
    structs = pa.StructArray.from_arrays(
        [
            decoded.streams,
            tokens.guid,
            tokens.container,
            tokens.clid,
            tokens.tech.cast(pa.int64()),
            tokens.oid1.cast(pa.int64()),
            tokens.oid2.cast(pa.int64()),
        ],
        fields=list(PROVENANCE_TYPE.value_type),
    )
    mask = None if provenance_ref else pa.array(counts == 0)
    return pa.ListArray.from_arrays(pa.array(offsets), structs, type=PROVENANCE_TYPE, mask=mask)
