"""A minimal protobuf wire-format writer and reader for whole columns.

The chunk body is an ordinary protobuf message (`ChunkBody` in proto/eventindex/v1): any
protobuf library reads it. Going through the Python protobuf runtime, though, turns every value
of a packed column into a Python object and back. Its numeric columns are fixed-width, so a
packed column is exactly the little-endian array: this module writes and reads such fields as
whole numpy buffers, and only walks the message's top-level fields in Python.

Readers accept what the protobuf spec allows a writer to emit: a packed field split into several
records, unpacked repeated values, fields in any order, unknown fields (skipped).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from eventindex.errors import CorruptObjectError

VARINT: Final = 0
I64: Final = 1
LEN: Final = 2
I32: Final = 5

#: At most this many fields (records) in one message. This project's writers put each column in one
#: packed record, so a chunk body has tens of them, a string column one per distinct value, and a
#: manifest six per chunk; the producer refuses to write more (a smaller or larger --chunk-events).
#: It bounds what a small, highly compressible object of tiny fields costs to parse (one Python
#: object per record: ~250 MB at the bound, against ~34 MB per MiB of such a body without it).
MAX_RECORDS: Final = 1 << 20

_FIXED_WIRE = {4: I32, 8: I64, 1: VARINT}  # element size -> the wire type of one unpacked element
_ITEMSIZE = {"<u4": 4, "<u8": 8, "<f4": 4, "|b1": 1}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Writer:
    """Appends fields to a message being built."""

    def __init__(self) -> None:
        self._parts: list[bytes | memoryview] = []  # joined once, by getvalue (bitmaps are megabytes)

    def uint(self, number: int, value: int) -> None:
        if value:
            self._parts += [_varint(number << 3 | VARINT), _varint(value)]

    def bytes_field(self, number: int, value: bytes | memoryview) -> None:
        """A LEN field; a memoryview is kept, not copied, until getvalue (it must not change before)."""
        self._parts += [
            _varint(number << 3 | LEN),
            _varint(value.nbytes if isinstance(value, memoryview) else len(value)),
            value,
        ]

    def packed(self, number: int, array: np.ndarray, dtype: str) -> None:
        """A packed fixed-width column (`dtype` like "<u4", "<u8", "<f4", "|b1")."""
        if len(array):
            self.bytes_field(number, np.ascontiguousarray(array, dtype=dtype).tobytes())

    def message(self, number: int, inner: Writer) -> None:
        self._parts += [_varint(number << 3 | LEN), _varint(inner.size), *inner._parts]

    def getvalue(self) -> bytes:
        return b"".join(self._parts)

    @property
    def size(self) -> int:
        """The message's size in bytes."""
        return sum(part.nbytes if isinstance(part, memoryview) else len(part) for part in self._parts)

    def join_into(self, buffer: bytearray) -> memoryview:
        """The message written at the start of `buffer` (at least `size` bytes): a view of those bytes.

        A buffer kept from one message to the next spares the fresh pages a new one is written into
        (one page fault per 4 KiB: for the megabytes of a chunk body, most of the cost of joining)."""
        size = self.size
        if len(buffer) < size:
            raise ValueError(f"a buffer of {len(buffer)} bytes for a message of {size}")
        view = memoryview(buffer)
        pos = 0
        for part in self._parts:
            flat = part.cast("B") if isinstance(part, memoryview) else part
            end = pos + len(flat)
            view[pos:end] = flat
            pos = end
        return view[:size]


def read_varint(view: memoryview, pos: int, what: str) -> tuple[int, int]:
    """The varint at `pos` and the position after it; CorruptObjectError naming `what` if it is cut short."""
    result = shift = 0
    while pos < len(view) and shift < 64:
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise CorruptObjectError(f"{what}: a truncated or overlong varint in the protobuf body")


class Fields:
    """The fields of one parsed message: raw values by field number, in order of appearance."""

    def __init__(self, data: bytes | memoryview, what: str, max_records: int = MAX_RECORDS) -> None:
        self.what = what
        self._fields: dict[int, list[tuple[int, memoryview | int]]] = {}
        fields = self._fields
        read_varint = self._read_varint
        view = memoryview(data)
        pos, end = 0, len(view)
        left = max_records
        while pos < end:
            if not left:
                raise CorruptObjectError(f"{what}: more than {max_records:,} fields in one protobuf message")
            left -= 1
            key = view[pos]  # a one-byte varint, or the first byte of a longer one
            if key < 0x80:
                pos += 1
            else:
                key, pos = read_varint(view, pos)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise CorruptObjectError(f"{what}: field number 0 in the protobuf body")
            if wire == LEN:
                if pos < end and view[pos] < 0x80:
                    length = view[pos]
                    pos += 1
                else:
                    length, pos = read_varint(view, pos)
                if pos + length > end:
                    raise CorruptObjectError(f"{what}: a field runs past the end of the protobuf body")
                value: memoryview | int = view[pos : pos + length]
                pos += length
            elif wire == VARINT:
                value, pos = read_varint(view, pos)
            elif wire in (I32, I64):
                size = 4 if wire == I32 else 8
                if pos + size > end:
                    raise CorruptObjectError(f"{what}: a field runs past the end of the protobuf body")
                value = view[pos : pos + size]
                pos += size
            else:
                raise CorruptObjectError(f"{what}: wire type {wire} in the protobuf body is not valid here")
            records = fields.get(number)
            if records is None:
                fields[number] = [(wire, value)]
            else:
                records.append((wire, value))

    def _read_varint(self, view: memoryview, pos: int) -> tuple[int, int]:
        return read_varint(view, pos, self.what)

    def uint(self, number: int) -> int:
        values = [v for wire, v in self._fields.get(number, ()) if wire == VARINT]
        return int(values[-1]) if values else 0  # proto3: the last one wins

    def message(self, number: int, what: str) -> Fields | None:
        records = [v for wire, v in self._fields.get(number, ()) if wire == LEN and isinstance(v, memoryview)]
        if not records:
            return None
        if len(records) == 1:  # the usual case: parse it in place
            return Fields(records[0], what)
        # Several records of one embedded message merge: concatenating them does that.
        return Fields(b"".join(records), what)

    def strings(self, number: int) -> list[str]:
        try:
            return [bytes(v).decode() for wire, v in self._fields.get(number, ()) if isinstance(v, memoryview)]
        except UnicodeDecodeError as exc:
            raise CorruptObjectError(f"{self.what}: a string field is not UTF-8: {exc}") from None

    def packed(self, number: int, dtype: str) -> np.ndarray:
        """A repeated fixed-width field as one array, however it was split or packed."""
        records = self._fields.get(number)
        if records is None:
            return np.empty(0, dtype=dtype)
        size = _ITEMSIZE.get(dtype) or np.dtype(dtype).itemsize
        if len(records) == 1:  # the usual case: one packed record
            wire, value = records[0]
            if wire == LEN and isinstance(value, memoryview) and not len(value) % size:
                return np.frombuffer(value, dtype=dtype)
        pieces: list[np.ndarray] = []
        for wire, value in records:
            if wire == LEN and isinstance(value, memoryview):
                if len(value) % size:
                    raise CorruptObjectError(f"{self.what}: packed field {number} is not a whole number of values")
                pieces.append(np.frombuffer(value, dtype=dtype))
            elif wire == _FIXED_WIRE.get(size) and isinstance(value, memoryview):
                pieces.append(np.frombuffer(value, dtype=dtype))
            elif wire == VARINT and size == 1 and isinstance(value, int):
                pieces.append(np.array([value != 0], dtype=dtype))
            else:
                raise CorruptObjectError(f"{self.what}: field {number} has wire type {wire}, not a {dtype} column")
        if len(pieces) == 1:
            return pieces[0]
        return np.concatenate(pieces) if pieces else np.empty(0, dtype=dtype)


def check_records(data: bytes | memoryview, descriptor: Any, what: str, max_records: int = MAX_RECORDS) -> None:
    """Refuse a message with more than `max_records` fields, counting those of its embedded messages
    (by `descriptor`, a protobuf message Descriptor), before a protobuf runtime builds an object for each:
    CorruptObjectError."""
    stack: list[tuple[memoryview, Any]] = [(memoryview(data), descriptor)]
    left = max_records
    while stack:
        view, message = stack.pop()
        embedded = {f.number: f.message_type for f in message.fields if f.message_type is not None}
        pos, end = 0, len(view)
        while pos < end:
            if not left:
                raise CorruptObjectError(f"{what}: more than {max_records:,} fields in one protobuf message")
            left -= 1
            key, pos = read_varint(view, pos, what)
            number, wire = key >> 3, key & 7
            if wire == LEN:
                length, pos = read_varint(view, pos, what)
                if pos + length > end:
                    raise CorruptObjectError(f"{what}: a field runs past the end of the protobuf body")
                inner = embedded.get(number)
                if inner is not None:
                    stack.append((view[pos : pos + length], inner))
                pos += length
            elif wire == VARINT:
                _, pos = read_varint(view, pos, what)
            elif wire in (I32, I64):
                pos += 4 if wire == I32 else 8
            else:
                raise CorruptObjectError(f"{what}: wire type {wire} in the protobuf body is not valid here")
