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
- Every other line is one event. `run_number` and `event_number` are required; an absent key gets
  the default of producer.inputs.common (0, false, null masks and extended_level1_id, empty
  provenance, the file's GUID as `input_guid`). Integers are JSON integers (not floats, not
  booleans) that fit the column's type; flags are `true`/`false`; `mc_event_weight` is a number;
  `extended_level1_id` and the masks may be `null`, and so may `provenance` (read as an empty
  list); the other columns may not.
- Trigger masks are hex strings of the bitmap bytes, byte 0 first (bit i of the vector is bit
  i % 8 of byte i // 8), upper or lower case: at most 128 digits for the L1 vectors and 2048 for
  the L2/HLT ones. Trailing zero bytes may be left out (a shorter mask is zero-padded), so `"00"`
  is an all-zero mask (trigger info present, nothing fired); `""` means absent, as `null` does.
- `provenance` is a list of objects with `stream` and `guid` (required strings), `container` and
  `clid` (strings, default ""), `tech`, `oid1`, `oid2` (integers, default 0).
- `task`, `job`, `attempt` (a warehouse row's identity) are ignored; any other key is an error.
- Blank lines are skipped. Any bad line (not JSON, not an object, an unknown key, a wrong type, a
  value out of range) is an InputError naming the file and the line number (from 1).

The file is read line by line and converted `max_rows` events at a time, so memory stays bounded.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Iterator
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from eventindex.columns import EVENT_SCHEMA, PROVENANCE_TYPE
from eventindex.errors import InputError
from producer.inputs.base import InputSource
from producer.inputs.common import (
    IDENTITY_COLUMNS,
    MASK_WIDTHS,
    PROVENANCE_DEFAULTS,
    REQUIRED_COLUMNS,
    binary_from_matrix,
    complete_table,
    content_guid,
    normalize_guid,
)

HEADER_KEY = "eventindex"
HEADER_FIELDS = frozenset({"guid", "events"})
KNOWN_KEYS = frozenset(EVENT_SCHEMA.names) | IDENTITY_COLUMNS
UINT_MAX = {
    field.name: int(np.iinfo(field.type.to_pandas_dtype()).max)
    for field in EVENT_SCHEMA
    if pa.types.is_unsigned_integer(field.type)
}
FLAGS = frozenset(field.name for field in EVENT_SCHEMA if pa.types.is_boolean(field.type))
REF_STRINGS = ("stream", "guid", "container", "clid")
REF_NUMBERS = {"tech": 2**32 - 1, "oid1": 2**64 - 1, "oid2": 2**64 - 1}
REF_KEYS = frozenset(REF_STRINGS) | frozenset(REF_NUMBERS)
REF_ORDER = tuple(field.name for field in PROVENANCE_TYPE.value_type)
#: ASCII byte -> its hex digit's value; 255 for anything else.
HEX_VALUES = np.full(256, 255, dtype=np.uint8)
HEX_VALUES[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16)
HEX_VALUES[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16)
_ABSENT = object()


class BadValue(Exception):
    """A value that does not fit its column; the caller adds the file and the line."""


def _uint(limit: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if type(value) is not int:
            raise BadValue(f"expected an integer, got {json.dumps(value)[:40]}")
        if not 0 <= value <= limit:
            raise BadValue(f"{value} is out of range 0..{limit}")
        return value

    return check


def _flag(value: Any) -> Any:
    if type(value) is not bool:
        raise BadValue(f"expected true or false, got {json.dumps(value)[:40]}")
    return value


def _number(value: Any) -> Any:
    if type(value) not in (int, float):
        raise BadValue(f"expected a number, got {json.dumps(value)[:40]}")
    return value


def _string(value: Any) -> Any:
    if type(value) is not str:
        raise BadValue(f"expected a string, got {json.dumps(value)[:40]}")
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
    if value is None:
        return []  # the chunk format does not tell a null list from an empty one
    if type(value) is not list:
        raise BadValue("expected a list of references")
    refs = []
    for k, ref in enumerate(value):
        if type(ref) is not dict:
            raise BadValue(f"reference {k} is not an object")
        unknown = ref.keys() - REF_KEYS
        if unknown:
            raise BadValue(f"reference {k} has an unknown key {sorted(unknown)[0]!r}")
        out: dict[str, str | int] = {}
        for key in REF_STRINGS:
            item = ref.get(key, PROVENANCE_DEFAULTS.get(key, _ABSENT))
            if item is _ABSENT:
                raise BadValue(f"reference {k} has no {key}")
            if type(item) is not str:
                raise BadValue(f"reference {k}: {key} must be a string")
            out[key] = item
        for key, limit in REF_NUMBERS.items():
            item = ref.get(key, 0)
            if type(item) is not int or not 0 <= item <= limit:
                raise BadValue(f"reference {k}: {key} must be an integer in 0..{limit}")
            out[key] = item
        refs.append(out)
    return refs


def _nullable(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def nullable(value: Any) -> Any:
        return None if value is None else check(value)

    return nullable


def _checkers() -> dict[str, tuple[Callable[[Any], Any], object]]:
    """column -> (check-and-convert, default when the key is absent)."""
    checks: dict[str, tuple[Callable[[Any], Any], object]] = {}
    for field in EVENT_SCHEMA:
        name = field.name
        if name in UINT_MAX:
            check = _uint(UINT_MAX[name])
            checks[name] = (_nullable(check), None) if field.nullable else (check, 0)
        elif name in FLAGS:
            checks[name] = (_flag, False)
        elif name == "mc_event_weight":
            checks[name] = (_number, 0.0)
        elif name in MASK_WIDTHS:
            checks[name] = (_mask(MASK_WIDTHS[name]), None)
        elif name == "provenance":
            checks[name] = (_provenance, [])
        elif name == "input_guid":
            checks[name] = (_string, None)  # the default is the file's GUID
    return checks


_CHECKERS = _checkers()
COLUMNS = tuple(_CHECKERS)
CHECKS = {name: check for name, (check, _) in _CHECKERS.items()}
DEFAULTS = {name: default for name, (_, default) in _CHECKERS.items()}
ROW = itemgetter(*COLUMNS)
#: The JSON types that pass the bulk check of a numeric or flag column (pyarrow then checks the ranges).
TYPES_OK = {
    name: frozenset({int}) if name in UINT_MAX else frozenset({bool}) if name in FLAGS else frozenset({int, float})
    for name in COLUMNS
    if name in UINT_MAX or name in FLAGS or name == "mc_event_weight"
}
TYPES_OK["extended_level1_id"] |= {type(None)}


def _fast(name: str, typ: pa.DataType, values: list[Any]) -> pa.Array | None:
    """The column when every value is plainly right, checked in bulk; None sends it value by value."""
    kinds = set(map(type, values))
    try:
        if name in TYPES_OK:
            return pa.array(values, typ) if kinds <= TYPES_OK[name] else None  # pyarrow checks the ranges
        if kinds == {type(None)} and name in MASK_WIDTHS:
            return pa.nulls(len(values), typ)
        if kinds == {str} and name in MASK_WIDTHS:
            return _fast_masks(values, MASK_WIDTHS[name])
        if kinds == {str} and name == "input_guid":
            return pa.array(values, typ)
        if kinds == {list} and name == "provenance":
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


def _fast_provenance(values: list[list[Any]]) -> pa.Array | None:
    """References that are objects with exactly the seven fields, each a JSON string or integer."""
    refs = list(chain.from_iterable(values))
    if refs:
        if set(map(type, refs)) != {dict} or set(map(len, refs)) != {len(REF_ORDER)}:
            return None
        if not set(map(type, chain.from_iterable(map(dict.values, refs)))) <= {str, int}:
            return None  # a float (which pyarrow would truncate), a bool, a null, a list...
    array = pa.array(values, PROVENANCE_TYPE)  # raises on a string/integer mix-up or a value out of range
    structs = array.values
    if any(structs.field(i).null_count for i in range(structs.type.num_fields)):
        return None  # a key that is not a field took the place of one that is
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
            raise InputError(f"{self.name}: cannot read it ({exc.strerror or exc})") from None
        guid = self.header.get("guid")
        if guid is not None:
            self.guid = normalize_guid(guid, f"{self.name}: line {self.header_line}: header guid")
        else:
            self.guid = content_guid(path)

    def _read_header(self, line: bytes, number: int) -> None:
        try:
            first = json.loads(line)
        except ValueError:
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
            raise InputError(f"{self.name}: cannot read it ({exc.strerror or exc})") from None
        if records:
            yield self._convert(records, lines)

    def _parse(self, line: bytes, number: int) -> dict[str, Any]:
        try:
            record = json.loads(line)
        except ValueError as exc:
            text = " ".join(str(exc).split())
            raise InputError(f"{self.name}: line {number}: not valid JSON ({text})") from None
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
        out = []
        for value, number in zip(values, lines, strict=True):
            try:
                if value is None and not EVENT_SCHEMA.field(name).nullable:
                    raise BadValue("null is not allowed here")
                out.append(check(value))
            except BadValue as exc:
                raise InputError(f"{self.name}: line {number}: {name}: {exc}") from None
        return out
