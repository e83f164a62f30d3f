"""`*.jsonl` / `*.ndjson` / `jsonl:PATH`: one JSON object per line, keyed by the schema's column names.

    {"eventindex": {"guid": "5F0C1A2B-3C4D-4E5F-8A9B-0C1D2E3F4A5B", "events": 2}}
    {"run_number": 456000, "event_number": 1, "lumi_block": 1, "l1_tbp": "0100ff", "provenance": [
        {"stream": "StreamAOD", "guid": "...", "container": "POOLContainer(DataHeader)", "clid": "...",
         "tech": 514, "oid1": 4, "oid2": 0}]}
    {"run_number": 456000, "event_number": 4}

- The first line may be a header object whose only key is `eventindex`: `guid` (the file's GUID)
  and `events` (how many events the file holds, checked against what was read), both optional.
  Without a header GUID the file's GUID is derived from its bytes
  (producer.inputs.common.content_guid).
- Every other line is one event. `run_number` and `event_number` are required; an absent key is
  null, as is a `null` value (`input_guid`: absent is the file's GUID; it may not be null, nor may
  the two required columns). Integers are JSON integers (not floats, not booleans) in the column's
  range (0..2^32-1 for the ATLAS 32-bit fields, 0..2^63-1 for event_number: a larger one is
  refused); flags are `true`/`false`; `mc_event_weight` is a finite number a 32-bit float holds
  (not NaN, Infinity or 1e400, which Python's json reads but JSON does not have); `input_guid`
  is a string, not empty or blank.
- Trigger masks are hex strings of the bitmap bytes, byte 0 first (bit i of the vector is bit
  i % 8 of byte i // 8), upper or lower case: at most 128 digits for the L1 vectors and 2048 for
  the L2/HLT ones. Trailing zero bytes may be left out (a shorter mask is zero-padded), so `"00"`
  is an all-zero mask (trigger info present, nothing fired); `""` means absent, as `null` does.
- `provenance` is a list of objects with `stream` and `guid` (required strings, not empty or
  blank), `container` and
  `clid` (strings), `tech` (0..2^32-1), `oid1`, `oid2` (0..2^63-1): those five may be absent or
  `null` (null).
- `task`, `job`, `attempt` (a warehouse row's identity) are ignored; any other key is an error.
- Blank lines are skipped. Any bad line (not JSON, not an object, an unknown key, a wrong type, a
  value out of range) is an InputError naming the file and the line number (from 1).

The file is read line by line and converted `max_rows` events at a time, so memory stays bounded.
"""

from __future__ import annotations

import binascii
import json
import math
from collections.abc import Callable, Iterator
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eventindex.columns import EVENT_SCHEMA, INTEGER_LIMITS, PROVENANCE_LIMITS, PROVENANCE_TYPE
from eventindex.errors import InputError
from producer.inputs.base import InputSource
from producer.inputs.common import (
    FLOAT32_MAX,
    IDENTITY_COLUMNS,
    LIMITS,
    MASK_WIDTHS,
    REQUIRED_COLUMNS,
    binary_from_matrix,
    complete_table,
    content_guid,
    first_blank,
    normalize_guid,
    out_of_range,
    unreadable,
)

HEADER_KEY = "eventindex"
HEADER_FIELDS = frozenset({"guid", "events"})
KNOWN_KEYS = frozenset(EVENT_SCHEMA.names) | IDENTITY_COLUMNS
FLAGS = frozenset(field.name for field in EVENT_SCHEMA if pa.types.is_boolean(field.type))
REF_FIELDS = {field.name: field.nullable for field in PROVENANCE_TYPE.value_type}
REF_STRINGS = tuple(name for name in REF_FIELDS if name not in PROVENANCE_LIMITS)
REF_KEYS = frozenset(REF_FIELDS)
#: ASCII byte -> its hex digit's value; 255 for anything else.
HEX_VALUES = np.full(256, 255, dtype=np.uint8)
HEX_VALUES[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16)
HEX_VALUES[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16)


class BadValue(Exception):
    """A value that does not fit its column; the caller adds the file and the line."""


def _integer(column: str) -> Callable[[Any], Any]:
    """Checks a value of `column` (or "provenance.FIELD")."""

    def check(value: Any) -> Any:
        if type(value) is not int:
            raise BadValue(f"expected an integer, got {json.dumps(value)[:40]}")
        if not 0 <= value <= LIMITS[column]:
            raise BadValue(out_of_range(column, value).removeprefix(f"{column} "))
        return value

    return check


def _flag(value: Any) -> Any:
    if type(value) is not bool:
        raise BadValue(f"expected true or false, got {json.dumps(value)[:40]}")
    return value


class KeyTwice(ValueError):
    """A JSON object that gives a key twice (Python's json keeps the last value)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's pairs as a dict; KeyTwice when a key is given twice (about 3 µs a line, measured)."""
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise KeyTwice(key)
            seen.add(key)
    return record


def _number(value: Any) -> Any:
    """A finite number that a 32-bit float holds: Python's json reads NaN, Infinity and 1e400 (inf),
    which JSON does not have, and a larger number would be stored as infinity."""
    if type(value) not in (int, float):
        raise BadValue(f"expected a number, got {json.dumps(value)[:40]}")
    try:
        number = float(value)
    except OverflowError:  # an integer of 309 digits or more
        number = math.inf
    if type(value) is float and not math.isfinite(number):
        raise BadValue(f"expected a finite number, got {json.dumps(value)[:40]}")
    if abs(number) > FLOAT32_MAX:
        raise BadValue(f"{json.dumps(value)[:40]} is beyond the range of a 32-bit float (about 3.4e38)")
    return number  # an integer too (16777217 is stored as 16777216.0, as 16777217.0 is)


def _string(value: Any) -> Any:
    """A string that is not empty or whitespace only (input_guid)."""
    if type(value) is not str:
        raise BadValue(f"expected a string, got {json.dumps(value)[:40]}")
    if not value.strip():
        raise BadValue("an empty or blank string")
    return value


def _mask(width: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is None or value == "":
            return None
        if type(value) is not str:
            raise BadValue(f"expected a hex string, got {json.dumps(value)[:40]}")
        if len(value) > 2 * width:
            raise BadValue(f"{len(value)} hex digits, more than the {2 * width} of a {width * 8}-bit vector")
        try:
            data = binascii.unhexlify(value)
        except ValueError:
            raise BadValue("not a hex string of whole bytes") from None
        return data + bytes(width - len(data)) if len(data) < width else data

    return check


def _provenance(value: Any) -> Any:
    if type(value) is not list:
        raise BadValue("expected a list of references")
    refs = []
    for k, ref in enumerate(value):
        if type(ref) is not dict:
            raise BadValue(f"reference {k} is not an object")
        unknown = ref.keys() - REF_KEYS
        if unknown:
            raise BadValue(f"reference {k} has an unknown key {sorted(unknown)[0]!r}")
        out: dict[str, str | int | None] = {}
        for key, nullable in REF_FIELDS.items():
            item = ref.get(key)
            if item is None:
                if not nullable:
                    raise BadValue(f"reference {k} has no {key}")
            elif key in REF_STRINGS:
                if type(item) is not str:
                    raise BadValue(f"reference {k}: {key} must be a string")
                if not nullable and not item.strip():
                    raise BadValue(f"reference {k}: {key} is an empty or blank string")
            else:
                try:
                    _integer(f"provenance.{key}")(item)
                except BadValue as exc:
                    raise BadValue(f"reference {k}: {key}: {exc}") from None
            out[key] = item
        refs.append(out)
    return refs


def _checkers() -> dict[str, Callable[[Any], Any]]:
    """column -> check-and-convert of a value that is not null (nulls are checked apart)."""
    checks: dict[str, Callable[[Any], Any]] = {}
    for field in EVENT_SCHEMA:
        name = field.name
        if name in INTEGER_LIMITS:
            checks[name] = _integer(name)
        elif name in FLAGS:
            checks[name] = _flag
        elif name == "mc_event_weight":
            checks[name] = _number
        elif name in MASK_WIDTHS:
            checks[name] = _mask(MASK_WIDTHS[name])
        elif name == "provenance":
            checks[name] = _provenance
        elif name == "input_guid":
            checks[name] = _string
    return checks


CHECKS = _checkers()
COLUMNS = tuple(CHECKS)
NULLABLE = frozenset(name for name in COLUMNS if EVENT_SCHEMA.field(name).nullable)
#: An absent key is null, but for input_guid, which the caller sets to the file's GUID.
DEFAULTS: dict[str, object] = dict.fromkeys(COLUMNS)
ROW = itemgetter(*COLUMNS)
_NONE = type(None)
#: The JSON types that pass the bulk check of a numeric or flag column (ranges are checked apart).
TYPES_OK = {
    name: frozenset({int})
    if name in INTEGER_LIMITS
    else frozenset({bool})
    if name in FLAGS
    else frozenset({int, float})
    for name in COLUMNS
    if name in INTEGER_LIMITS or name in FLAGS or name == "mc_event_weight"
}
TYPES_OK = {name: kinds | {_NONE} if name in NULLABLE else kinds for name, kinds in TYPES_OK.items()}


def _in_range(array: pa.Array, limit: int) -> bool:
    """Whether every value of an integer array is in 0..limit (nulls aside)."""
    if len(array) == array.null_count:
        return True
    low, high = pc.min_max(array).values()
    return bool(low.as_py() >= 0 and high.as_py() <= limit)


def _fast(name: str, typ: pa.DataType, values: list[Any]) -> pa.Array | None:
    """The column when every value is plainly right, checked in bulk; None sends it value by value."""
    kinds = set(map(type, values))
    try:
        if kinds == {_NONE} and name in NULLABLE:
            return pa.nulls(len(values), typ)
        if name in TYPES_OK:
            if not kinds <= TYPES_OK[name]:
                return None
            array = pa.array(values, typ)  # raises beyond int64
            if name in INTEGER_LIMITS:
                return array if _in_range(array, INTEGER_LIMITS[name]) else None
            if pa.types.is_floating(typ):  # NaN, an infinity, or a number beyond the float type's range
                return array if pc.all(pc.is_finite(array)).as_py() is not False else None
            return array
        if kinds == {str} and name in MASK_WIDTHS:
            return _fast_masks(values, MASK_WIDTHS[name])
        if kinds == {str} and name == "input_guid":
            array = pa.array(values, typ)
            return array if first_blank(array) < 0 else None
        if kinds <= {list, _NONE} and name == "provenance":
            return _fast_provenance(values)
    except (pa.ArrowException, OverflowError, ValueError, KeyError):
        return None
    return None


def _fast_masks(values: list[str], width: int) -> pa.Array | None:
    """Hex masks of at most `width` bytes, none empty: decoded for the whole column at once."""
    rows = len(values)
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=rows)
    if lengths.max() > 2 * width or lengths.min() == 0 or (lengths & 1).any():
        return None
    data = np.frombuffer(binascii.unhexlify("".join(values).encode("ascii")), dtype=np.uint8)
    sizes = lengths // 2
    if (sizes == width).all():
        return binary_from_matrix(data.reshape(rows, width))
    # Zero-pad the short ones: scatter each value's bytes to the start of its row.
    starts = np.cumsum(sizes) - sizes
    where = np.repeat(np.arange(rows, dtype=np.int64) * width - starts, sizes) + np.arange(len(data))
    matrix = np.zeros(rows * width, dtype=np.uint8)
    matrix[where] = data
    return binary_from_matrix(matrix.reshape(rows, width))


def _fast_provenance(values: list[list[Any] | None]) -> pa.Array | None:
    """Lists (or nulls) of references that are objects of known keys, each a JSON string, integer or null."""
    refs = list(chain.from_iterable(refs for refs in values if refs is not None))
    if refs:
        if set(map(type, refs)) != {dict} or not set(chain.from_iterable(refs)) <= REF_KEYS:
            return None
        if not set(map(type, chain.from_iterable(map(dict.values, refs)))) <= {str, int, _NONE}:
            return None  # a float (which pyarrow would truncate), a bool, a list...
    array = pa.array(values, PROVENANCE_TYPE)  # raises on a string/integer mix-up or a value beyond int64
    structs = array.flatten()
    if any(structs.field(name).null_count for name, nullable in REF_FIELDS.items() if not nullable):
        return None  # a reference without its stream or guid
    if any(first_blank(structs.field(name)) >= 0 for name, nullable in REF_FIELDS.items() if not nullable):
        return None  # an empty stream or guid
    if not all(_in_range(structs.field(name), limit) for name, limit in PROVENANCE_LIMITS.items()):
        return None
    return array


class JsonLinesInput(InputSource):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.header: dict[str, Any] = {}
        self.header_line = 0
        try:
            with path.open("rb") as stream:
                for number, line in enumerate(stream, 1):
                    if line.strip():
                        self._read_header(line, number)
                        break
        except OSError as exc:
            raise unreadable(self.name, exc, f"cannot read it ({exc.strerror or exc})") from None
        guid = self.header.get("guid")
        if guid is not None:
            self.guid = normalize_guid(guid, f"{self.name}: line {self.header_line}: header guid")
        else:
            self.guid = content_guid(path)

    def _read_header(self, line: bytes, number: int) -> None:
        try:
            first = json.loads(line)
        except (ValueError, RecursionError):
            return  # not a header: batches() reports the bad line
        if not (isinstance(first, dict) and set(first) == {HEADER_KEY}):
            return
        header = first[HEADER_KEY]
        where = f"{self.name}: line {number}: header"
        if not isinstance(header, dict) or not set(header) <= HEADER_FIELDS:
            raise InputError(f'{where}: expected {{"{HEADER_KEY}": {{"guid": ..., "events": ...}}}}')
        events = header.get("events")
        if events is not None and (type(events) is not int or events < 0):
            raise InputError(f"{where}: events must be a non-negative integer")
        self.header = header
        self.header_line = number

    @property
    def declared_events(self) -> int | None:
        events = self.header.get("events")
        return events if isinstance(events, int) else None

    def batches(self, max_rows: int) -> Iterator[pa.Table]:
        records: list[dict[str, Any]] = []
        lines: list[int] = []
        try:
            with self.path.open("rb") as stream:
                for number, line in enumerate(stream, 1):
                    if number == self.header_line or not line.strip():
                        continue
                    records.append(self._parse(line, number))
                    lines.append(number)
                    if len(records) >= max_rows:
                        yield self._convert(records, lines)
                        records, lines = [], []
        except OSError as exc:
            raise unreadable(self.name, exc, f"cannot read it ({exc.strerror or exc})") from None
        if records:
            yield self._convert(records, lines)

    def _parse(self, line: bytes, number: int) -> dict[str, Any]:
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except KeyTwice as exc:  # which of the two is the value? never a guess
            raise InputError(f"{self.name}: line {number}: key {exc.key!r} is given twice") from None
        except ValueError as exc:
            text = " ".join(str(exc).split())
            raise InputError(f"{self.name}: line {number}: not valid JSON ({text})") from None
        except RecursionError:  # arrays or objects nested thousands deep: no event is
            raise InputError(f"{self.name}: line {number}: JSON nested too deeply to be an event") from None
        if type(record) is not dict:
            raise InputError(f"{self.name}: line {number}: expected a JSON object of event columns")
        unknown = record.keys() - KNOWN_KEYS
        if unknown:
            raise InputError(f"{self.name}: line {number}: {sorted(unknown)[0]!r} is not an event column")
        for name in REQUIRED_COLUMNS:
            if name not in record:
                raise InputError(f"{self.name}: line {number}: no {name}")
        return record

    def _convert(self, records: list[dict[str, Any]], lines: list[int]) -> pa.Table:
        defaults = {**DEFAULTS, "input_guid": self.guid}

        def row(record: dict[str, Any]) -> tuple[Any, ...]:
            try:
                return ROW(record)  # type: ignore[no-any-return]
            except KeyError:
                return tuple([record.get(name, default) for name, default in defaults.items()])

        columns = zip(*map(row, records), strict=True)
        arrays: dict[str, pa.Array] = {}
        for name, values in zip(COLUMNS, map(list, columns), strict=True):
            field = EVENT_SCHEMA.field(name)
            array = _fast(name, field.type, values)
            if array is None:  # check value by value, naming the first bad line
                array = pa.array(self._checked(name, CHECKS[name], values, lines), field.type)
            arrays[name] = array
        return complete_table(arrays, len(records), self.guid)

    def _checked(self, name: str, check: Callable[[Any], Any], values: list[Any], lines: list[int]) -> list[Any]:
        out: list[Any] = []
        for value, number in zip(values, lines, strict=True):
            try:
                if value is None:
                    if name not in NULLABLE:
                        raise BadValue("null is not allowed here")
                    out.append(None)
                    continue
                out.append(check(value))
            except BadValue as exc:
                raise InputError(f"{self.name}: line {number}: {name}: {exc}") from None
        return out
