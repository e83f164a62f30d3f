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

from collections import defaultdict
from typing import Final

import numpy as np

from eventindex.errors import CorruptObjectError

VARINT: Final = 0
I64: Final = 1
LEN: Final = 2
I32: Final = 5

_FIXED_WIRE = {4: I32, 8: I64, 1: VARINT}  # element size -> the wire type of one unpacked element


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
        self._parts: list[bytes] = []

    def uint(self, number: int, value: int) -> None:
        if value:
            self._parts += [_varint(number << 3 | VARINT), _varint(value)]

    def bytes_field(self, number: int, value: bytes) -> None:
        self._parts += [_varint(number << 3 | LEN), _varint(len(value)), value]

    def packed(self, number: int, array: np.ndarray, dtype: str) -> None:
        """A packed fixed-width column (`dtype` like "<u4", "<u8", "<f4", "|b1")."""
        if len(array):
            self.bytes_field(number, np.ascontiguousarray(array, dtype=dtype).tobytes())

    def message(self, number: int, inner: Writer) -> None:
        self.bytes_field(number, inner.getvalue())

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Fields:
    """The fields of one parsed message: raw values by field number, in order of appearance."""

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self.what = what
        self._fields: dict[int, list[tuple[int, memoryview | int]]] = defaultdict(list)
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            key, pos = self._read_varint(view, pos)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise CorruptObjectError(f"{what}: field number 0 in the protobuf body")
            if wire == VARINT:
                value, pos = self._read_varint(view, pos)
                self._fields[number].append((wire, value))
            elif wire == LEN:
                length, pos = self._read_varint(view, pos)
                if pos + length > end:
                    raise CorruptObjectError(f"{what}: a field runs past the end of the protobuf body")
                self._fields[number].append((wire, view[pos : pos + length]))
                pos += length
            elif wire in (I32, I64):
                size = 4 if wire == I32 else 8
                if pos + size > end:
                    raise CorruptObjectError(f"{what}: a field runs past the end of the protobuf body")
                self._fields[number].append((wire, view[pos : pos + size]))
                pos += size
            else:
                raise CorruptObjectError(f"{what}: wire type {wire} in the protobuf body is not valid here")

    def _read_varint(self, view: memoryview, pos: int) -> tuple[int, int]:
        result = shift = 0
        while pos < len(view) and shift < 64:
            byte = view[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result, pos
            shift += 7
        raise CorruptObjectError(f"{self.what}: a truncated or overlong varint in the protobuf body")

    def uint(self, number: int) -> int:
        values = [v for wire, v in self._fields.get(number, []) if wire == VARINT]
        return int(values[-1]) if values else 0  # proto3: the last one wins

    def message(self, number: int, what: str) -> Fields | None:
        records = [v for wire, v in self._fields.get(number, []) if wire == LEN]
        if not records:
            return None
        assert isinstance(records[0], memoryview)
        # Several records of one embedded message merge: concatenating them does that.
        data = b"".join(bytes(r) for r in records if isinstance(r, memoryview))
        return Fields(data, what)

    def strings(self, number: int) -> list[str]:
        try:
            return [bytes(v).decode() for wire, v in self._fields.get(number, []) if isinstance(v, memoryview)]
        except UnicodeDecodeError as exc:
            raise CorruptObjectError(f"{self.what}: a string field is not UTF-8: {exc}") from None

    def packed(self, number: int, dtype: str) -> np.ndarray:
        """A repeated fixed-width field as one array, however it was split or packed."""
        size = np.dtype(dtype).itemsize
        pieces: list[np.ndarray] = []
        for wire, value in self._fields.get(number, []):
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
