"""POOL tokens: the references ATLAS files carry to an event's data (docs/spb-format.md).

`[DB=<file GUID>][CNT=<container>][CLID=<class GUID>][TECH=%08X][OID=%016X-%016X]`, fields in
any order (unknown `[KEY=value]` fields are ignored), DB an 8-4-4-4-12 GUID (returned uppercase),
TECH 1-8 and each OID part 1-16 hex digits and nothing else. The SPB reader and the ROOT reader
(POOL collection trees) parse them a batch at a time; a bad token is a `TokenFormatError`
carrying its index in the batch, so the caller can name the file and the record.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import sliding_window_view

from eventindex.errors import InputError


class TokenFormatError(InputError):
    """A POOL token string of the batch is malformed; `index` is its position in the batch."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


_HEX8 = r"[0-9A-Fa-f]{1,8}"
_HEX16 = r"[0-9A-Fa-f]{1,16}"
_GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_FIELDS = re.compile(r"\[([A-Za-z]+)=([^\[\]]*)\]")
_WHOLE = re.compile(r"(?:\[[A-Za-z]+=[^\[\]]*\])+")
_GUID_RE = re.compile(_GUID)
_HEX8_RE = re.compile(_HEX8)
_OID_RE = re.compile(rf"({_HEX16})-({_HEX16})")


@dataclass(frozen=True)
class Tokens:
    """Parsed tokens of a batch, one Arrow array per field (guid uppercase, tech uint32, oids uint64)."""

    guid: pa.Array
    container: pa.Array
    clid: pa.Array
    tech: pa.Array
    oid1: pa.Array
    oid2: pa.Array


def parse_token(token: str, index: int = 0) -> tuple[str, str, str, int, int, int]:
    """One token -> (guid, container, clid, tech, oid1, oid2), any field order; TokenFormatError."""
    if not _WHOLE.fullmatch(token):
        raise TokenFormatError(index, f"token {token[:120]!r} is not a sequence of [KEY=value] fields")
    fields: dict[str, str] = {}
    for key, value in _FIELDS.findall(token):
        if key in fields:
            raise TokenFormatError(index, f"token {token[:120]!r} has field {key} twice")
        fields[key] = value
    missing = [key for key in ("DB", "CNT", "CLID", "TECH", "OID") if key not in fields]
    if missing:
        raise TokenFormatError(index, f"token {token[:120]!r} lacks field {missing[0]}")
    if not _GUID_RE.fullmatch(fields["DB"]):
        raise TokenFormatError(index, f"token DB={fields['DB']!r} is not a GUID (8-4-4-4-12 hex digits)")
    if not _HEX8_RE.fullmatch(fields["TECH"]):
        raise TokenFormatError(index, f"token TECH={fields['TECH']!r} is not 1-8 hex digits")
    oid = _OID_RE.fullmatch(fields["OID"])
    if not oid:
        raise TokenFormatError(index, f"token OID={fields['OID']!r} is not HEX-HEX (1-16 hex digits each)")
    return (
        fields["DB"].upper(),
        fields["CNT"],
        fields["CLID"],
        int(fields["TECH"], 16),
        int(oid.group(1), 16),
        int(oid.group(2), 16),
    )


def format_token(guid: str, container: str, clid: str, tech: int, oid1: int, oid2: int) -> str:
    """The producer's token string."""
    return f"[DB={guid}][CNT={container}][CLID={clid}][TECH={tech:08X}][OID={oid1:016X}-{oid2:016X}]"


# The producer's layout: a fixed head and a fixed tail ("x" = a hex digit) around the container.
_HEAD = "[DB=xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx][CNT="
_TAIL = "][CLID=xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx][TECH=xxxxxxxx][OID=xxxxxxxxxxxxxxxx-xxxxxxxxxxxxxxxx]"
_TEMPLATE = np.frombuffer((_HEAD + _TAIL).encode(), dtype=np.uint8)


#: The columns of the head + tail that hold a hex digit (the others hold the template's byte).
_IS_HEX = np.equal(_TEMPLATE, ord("x"))
_GUID_AT = slice(4, 40)
_CLID_AT = slice(len(_HEAD) + 7, len(_HEAD) + 43)
_TECH_AT = slice(len(_HEAD) + 50, len(_HEAD) + 58)
_OID1_AT = slice(len(_HEAD) + 64, len(_HEAD) + 80)
_OID2_AT = slice(len(_HEAD) + 81, len(_HEAD) + 97)


def _shift(at: slice, by: int) -> slice:
    return slice(at.start + by, at.stop + by)


def _fixed_strings(matrix: np.ndarray) -> pa.Array:
    """(n, width) ASCII bytes -> an Arrow string array of n values of `width` characters."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(matrix.tobytes())])


def _cut(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The byte ranges [start, start + length) of `data`, concatenated, and their offsets."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets, data[np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])]


def _hex(nibbles: np.ndarray) -> np.ndarray:
    """(n, 8 or 16) nibble values, most significant first -> uint64 values (garbage, not an error,
    where a digit was not hex): pairs of nibbles make the bytes of a big-endian integer."""
    digits = nibbles.shape[1]
    packed = np.ascontiguousarray((nibbles[:, 0::2] << 4) | (nibbles[:, 1::2] & 0x0F), dtype=np.uint8)
    return packed.view(f">u{digits // 2}").reshape(-1).astype(np.uint64)


def parse_tokens(tokens: Sequence[str] | pa.Array) -> Tokens:
    """Parse a batch of tokens (strings, or an Arrow string array without nulls); raises
    TokenFormatError with the index of the first bad one.

    A batch's tokens mostly differ only in their OID (the same file, container, class and
    technology event after event): when every token ends in a full-width `[OID=%016X-%016X]`, the
    rest of each is parsed once per distinct value and only the OIDs per token. Otherwise, and
    whenever that finds a bad token, the whole batch goes through `_parse_each`.
    """
    if isinstance(tokens, pa.Array):
        array = pa.concat_arrays([tokens.cast(pa.string())])  # its own buffers, from offset 0
    else:
        array = pa.array(tokens, pa.string())
    grouped = _parse_grouped(array)
    return grouped if grouped is not None else _parse_each(array)


#: The last field of a token in the producer's layout ("x" = a hex digit).
_OID_FIELD = np.frombuffer(b"[OID=xxxxxxxxxxxxxxxx-xxxxxxxxxxxxxxxx]", dtype=np.uint8)
_OID_IS_HEX = np.equal(_OID_FIELD, ord("x"))
_ANY_OID = "[OID=0000000000000000-0000000000000000]"


def _parse_grouped(array: pa.Array) -> Tokens | None:
    """Tokens that all end in a full-width OID field: the OIDs read from those fields, the rest
    (everything before the OID) parsed by `_parse_each` once per distinct value with a placeholder
    OID, which checks it exactly as the whole token would be. None when a token does not end so,
    when most are distinct, or when one is bad (the caller then parses the batch token by token)."""
    n = len(array)
    width = len(_OID_FIELD)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[: n + 1]
    if n == 0 or array.buffers()[2] is None or (np.diff(offsets) < width).any():
        return None
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)
    oids = sliding_window_view(data, width)[offsets[1:] - width]
    lower = oids | 0x20
    digit = (oids - ord("0")) < 10
    if not np.where(_OID_IS_HEX, digit | ((lower - ord("a")) < 6), oids == _OID_FIELD).all():
        return None
    rest = pc.binary_slice(array.cast(pa.binary()), 0, -width).dictionary_encode()
    if 2 * len(rest.dictionary) > n:
        return None
    try:
        distinct = _parse_each(pa.array([value + _ANY_OID for value in rest.dictionary.cast(pa.string()).to_pylist()]))
    except TokenFormatError:
        return None
    nibbles = np.where(digit, oids - ord("0"), lower - (ord("a") - 10))
    index = rest.indices
    return Tokens(
        guid=distinct.guid.take(index),
        container=distinct.container.take(index),
        clid=distinct.clid.take(index),
        tech=distinct.tech.take(index),
        oid1=pa.array(_hex(nibbles[:, 5:21]), pa.uint64()),
        oid2=pa.array(_hex(nibbles[:, 22:38]), pa.uint64()),
    )


def _parse_each(array: pa.Array) -> Tokens:
    """Parse every token of a string array (offset 0, no nulls).

    Tokens in the producer's exact layout (field order, %08X and %016X widths, GUID CLID) are
    checked and cut with numpy on the concatenated bytes; the rest go through `parse_token`,
    which accepts any field order and 1-8/1-16 hex digits, or fails.
    """
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[: n + 1].astype(np.int64)
    fixed = len(_TEMPLATE)
    data = np.zeros(int(offsets[-1]) + fixed, dtype=np.uint8)  # zero padding: every window is in range
    if array.buffers()[2] is not None:
        data[: offsets[-1]] = np.frombuffer(array.buffers()[2], dtype=np.uint8)[: offsets[-1]]
    starts = offsets[:-1]
    lengths = np.diff(offsets)
    ok = lengths >= fixed
    # The head and tail bytes of every token (short tokens read garbage, and are not ok).
    tail_start = np.maximum(starts + lengths - len(_TAIL), starts)
    frame = np.concatenate(
        [sliding_window_view(data, len(_HEAD))[starts], sliding_window_view(data, len(_TAIL))[tail_start]], axis=1
    )
    # Hex digits by byte arithmetic (uint8 wraps: a byte below '0' or 'a' becomes large), ~5x
    # faster than a table lookup per byte; nibbles are garbage where a byte is not a hex digit.
    lower = frame | 0x20
    digit = (frame - ord("0")) < 10
    ok &= np.where(_IS_HEX, digit | ((lower - ord("a")) < 6), frame == _TEMPLATE).all(axis=1)
    numbers = slice(_TECH_AT.start, None)  # TECH and OID, the hex digits read as numbers
    nibbles = np.where(digit[:, numbers], frame[:, numbers] - ord("0"), lower[:, numbers] - (ord("a") - 10))
    # The container: between the head and the tail, with no bracket in it.
    c_len = np.where(ok, lengths - fixed, 0)
    c_offsets, c_bytes = _cut(data, starts + len(_HEAD), c_len)
    bad = np.flatnonzero((c_bytes == ord("[")) | (c_bytes == ord("]")))
    if len(bad):
        rows = np.searchsorted(c_offsets, bad, side="right") - 1
        ok[rows] = False
        c_len[rows] = 0
        c_offsets, c_bytes = _cut(data, starts + len(_HEAD), c_len)
    container: pa.Array = pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(c_offsets.astype(np.int32)), pa.py_buffer(c_bytes.tobytes())]
    )
    if not ok.all():  # their frames may cut a character in two: the slow path fills these rows in
        frame[~ok] = ord("0")
    db = frame[:, _GUID_AT]
    guid = _fixed_strings(np.where((db - ord("a")) < 26, db - 32, db))  # uppercase
    clid = _fixed_strings(frame[:, _CLID_AT])
    tech, oid1, oid2 = (_hex(nibbles[:, _shift(at, -_TECH_AT.start)]) for at in (_TECH_AT, _OID1_AT, _OID2_AT))
    odd = np.flatnonzero(~ok)
    if len(odd):
        # Rare: another field order or hex width, or a bad token (parse_token raises for the first bad one).
        slow = [parse_token(str(array[int(i)].as_py()), int(i)) for i in odd]
        lists = [guid.to_pylist(), container.to_pylist(), clid.to_pylist()]
        for i, parsed in zip(odd, slow, strict=True):
            for column, value in zip(lists, parsed[:3], strict=True):
                column[i] = value
            tech[i], oid1[i], oid2[i] = parsed[3:]
        guid, container, clid = (pa.array(column, pa.string()) for column in lists)
    return Tokens(
        guid=guid,
        container=container,
        clid=clid,
        tech=pa.array(tech.astype(np.uint32), pa.uint32()),
        oid1=pa.array(oid1, pa.uint64()),
        oid2=pa.array(oid2, pa.uint64()),
    )
