"""Decode many small protobuf messages of one type at once, field by field across all of them, with numpy.

Parsing each SPB event record with the protobuf runtime and reading its fields one by one costs
microseconds of Python per event; here the messages of a batch are walked together, one field
number at a time across all of them (see `scan`), so the Python work grows with the number of
fields in a message, not with the number of messages.

`scan` decodes what a well-formed writer emits: known field numbers with their declared wire
types, varints of at most 10 bytes, fields inside their message. Anything else (an unknown field,
a wire type that does not match, a truncated field) raises `Unusual`, and the caller parses those
messages with the protobuf runtime instead, which accepts or refuses them exactly as the format
says. As in protobuf, the last occurrence of a singular field wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

VARINT, LEN, I32 = 0, 2, 5
#: Bytes after the last message that `scan` may read (but never uses): the caller pads with zeros.
PADDING = 16
_NO_WIRE = 255


class Unusual(Exception):
    """The messages hold something `scan` does not decode (they may still be valid protobuf)."""


@dataclass(frozen=True)
class Layout:
    """The fields of a message type: field number -> wire type; `repeated` LEN fields keep every occurrence."""

    wires: Mapping[int, int]
    repeated: frozenset[int] = frozenset()

    @property
    def table(self) -> np.ndarray:
        """field number -> its wire type, _NO_WIRE for numbers the message does not have."""
        table = np.full(max(self.wires) + 1, _NO_WIRE, dtype=np.int64)
        for number, wire in self.wires.items():
            table[number] = wire
        return table


@dataclass
class Scanned:
    """The fields of n messages. Columns are indexed by field number."""

    #: (n, fields) whether the field occurred in the message.
    present: np.ndarray
    #: (n, fields) uint64: the value of a VARINT or I32 field; for a LEN field, where its bytes start.
    values: np.ndarray
    #: (n, fields) int64: where a LEN field's bytes end.
    ends: np.ndarray
    #: repeated field -> (message index, start, end) of each occurrence, by message, in order.
    repeated: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)


def varints(data: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The varints starting at positions `at` of `data`: (values as uint64, sizes in bytes)."""
    first = data[at]
    sizes = np.ones(len(at), dtype=np.int64)
    more = np.flatnonzero(first >= 0x80)
    values = first.astype(np.uint64)
    if not len(more):
        return values, sizes
    # Varints of up to 8 bytes from the 8 bytes at each position, read as one little-endian word:
    # the lowest byte without a continuation bit ends the varint; its 7-bit groups are packed
    # together by three shift-and-mask steps.
    words = np.ndarray((len(data) - 7,), dtype="<u8", buffer=np.ascontiguousarray(data), strides=(1,))[at[more]]
    ends = ~words & _CONTINUATION
    last = ends & (~ends + np.uint64(1))  # the ending byte's high bit (0: more than 8 bytes)
    below = last - np.uint64(1)
    found = words & below & _GROUPS
    for keep, shift in _PACK:
        found = (found & keep) | ((found & ~keep) >> shift)
    values[more] = found
    sizes[more] = (np.bitwise_count(below).astype(np.int64) + 1) >> 3
    long = np.flatnonzero(last == 0)
    if len(long):
        values[more[long]], sizes[more[long]] = _long_varints(data, at[more[long]])
    return values, sizes


_CONTINUATION = np.uint64(0x8080808080808080)
_GROUPS = np.uint64(0x7F7F7F7F7F7F7F7F)
#: (the bits that stay, how far the others move down): 7-bit groups -> 14 -> 28 -> 56 bits.
_PACK = [
    (np.uint64(0x007F007F007F007F), np.uint64(1)),
    (np.uint64(0x00003FFF00003FFF), np.uint64(2)),
    (np.uint64(0x000000000FFFFFFF), np.uint64(4)),
]


def _long_varints(data: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Varints of any length (up to 10 bytes) at positions `at`, a byte at a time."""
    first = data[at]
    sizes = np.ones(len(at), dtype=np.int64)
    more = np.flatnonzero(first >= 0x80)
    values = first.astype(np.uint64)
    values[more] &= np.uint64(0x7F)
    shift = np.uint64(7)
    for _ in range(9):
        byte = data[at[more] + sizes[more]]
        values[more] |= (byte & 0x7F).astype(np.uint64) << shift
        sizes[more] += 1
        more = more[byte >= 0x80]
        if not len(more):
            return values, sizes
        shift += np.uint64(7)
    raise Unusual("a varint longer than 10 bytes")


def scan(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, layout: Layout) -> Scanned:
    """Decode the messages data[starts[i]:ends[i]] (uint8 `data`, followed by PADDING bytes).

    Each step reads one field of the messages whose next field has the smallest tag: writers emit
    fields in number order, so a message that lacks a field falls back in line at the next one,
    and a step decodes one field number of one wire type, a column.
    """
    n = len(starts)
    table = layout.table
    width = len(table)
    present = np.zeros((n, width), dtype=bool, order="F")
    values = np.zeros((n, width), dtype=np.uint64, order="F")
    stops = np.zeros((n, width), dtype=np.int64, order="F")
    pieces: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {f: [] for f in layout.repeated}
    pos = np.asarray(starts, dtype=np.int64).copy()
    ends = np.asarray(ends, dtype=np.int64)
    is_open = pos < ends
    open_ = np.flatnonzero(is_open)
    tags = np.zeros(n, dtype=np.uint64)  # the next field's tag, of the open messages
    tags[open_], sizes = varints(data, pos[open_])
    pos[open_] += sizes
    while len(open_):
        waiting = tags[open_]
        tag = int(waiting.min())
        now = waiting == tag
        rows = open_ if now.all() else open_[now]
        number, wire = tag >> 3, tag & 7
        if number >= width or table[number] != wire:
            raise Unusual("a field the message type does not declare, or of another wire type")
        at = pos[rows]
        if wire == LEN:
            lengths, sizes = varints(data, at)
            begin = at + sizes
            at = begin + lengths.astype(np.int64)
            if number in pieces:
                pieces[number].append((rows, begin, at))
            else:
                _column(rows, number, begin.astype(np.uint64), present, values)
                stops[rows, number] = at
        else:
            found, sizes = _fixed32(data, at) if wire == I32 else varints(data, at)
            _column(rows, number, found, present, values)
            at = at + sizes
        limit = ends[rows]
        if np.any(at > limit):
            raise Unusual("a field runs past the end of its message")
        going = at < limit
        if not going.all():
            is_open[rows[~going]] = False
            rows, at = rows[going], at[going]
        tags[rows], sizes = varints(data, at)
        pos[rows] = at + sizes
        open_ = rows if now.all() else np.flatnonzero(is_open)  # in message order, as _column needs
    repeated = {}
    for number, occurrences in pieces.items():
        if occurrences:
            index, begin, end = (np.concatenate(part) for part in zip(*occurrences, strict=True))
            order = np.argsort(index, kind="stable")  # occurrences were gathered step by step
            repeated[number] = (index[order], begin[order], end[order])
        else:
            empty = np.empty(0, dtype=np.int64)
            repeated[number] = (empty, empty, empty)
    return Scanned(present, values, stops, repeated)


def _fixed32(data: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Little-endian 32-bit values at positions `at`, as uint64, and their sizes (4)."""
    found = data[at].astype(np.uint64)
    for k in (1, 2, 3):
        found |= data[at + k].astype(np.uint64) << np.uint64(8 * k)
    return found, np.full(len(at), 4, dtype=np.int64)


def _column(rows: np.ndarray, number: int, found: np.ndarray, present: np.ndarray, values: np.ndarray) -> None:
    """Field `number` of messages `rows` (increasing) holds `found`."""
    if len(rows) == len(present):  # every message: a whole column, no index
        present[:, number] = True
        values[:, number] = found
    else:
        present[rows, number] = True
        values[rows, number] = found
