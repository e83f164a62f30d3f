"""`*.root` / `root:PATH`: the events of a ROOT file (TTree or RNTuple), read with uproot.

Which trees and fields are read is producer.inputs.branch_map; producer.inputs.root_tree lists a
tree's fields by full name and reads them by entry range. By default:

- the event tree is the first of `EventIndex`, `EventInfo`, `CollectionTree`, `EventData` present,
  else the POOL collection tree (`POOLCollectionTree`, `EventTag`), else the file's only tree;
- when the event tree has no run or event number (an xAOD EventInfo that uproot cannot read, such as
  one stored unsplit), the events are read from the file's POOL collection tree instead, and the
  file's notes (the manifest) say so; without one the file is refused, naming what is missing;
- when the event tree is not itself the collection and the file has one with as many entries,
  the collection's `Token` gives each event's own-file provenance reference, its stream named by
  the one `MetaData(Stream...)` container POOL's `##Links` lists (ATLAS keys the file's
  EventStreamInfo by its stream, e.g. `StreamDAOD_PHYSLITE`); the collection's run and event
  numbers must then equal the event tree's, entry by entry. The event tree itself being a
  collection, its `Token` gives the provenance the same way.

Values, whatever the layout (anything else is an InputError naming the file, the field and its type):
- integer columns: a signed or unsigned integer field, or element k of a vector of them
  (`NAME[k]`); each value must fit the column's type (an error names the entry);
- flags: a bool or integer field (non-zero is true); without one, the xAOD `eventTypeBitmask`
  word gives them (bit 0 simulation, bit 1 testbeam, bit 2 calibration);
- `mc_event_weight`: a floating-point or integer field, typically `mcEventWeights[0]`;
- trigger masks: a vector per entry (variable or fixed length) of integer words, bit i being bit
  i % w of word i // w for words of w bits (ATLAS: 32-bit words, 16 for each L1 vector, up to 256
  for each HLT one), or of bools, one per bit; at most the column's width (512 / 8192 bits), fewer
  bits are zero-padded, an empty vector is null; or, by the branch map's `{"bits": ...}`, one
  boolean field per bit, the names kept in `trigger_names` for the manifest;
- GUID and provenance token fields: strings.

A file shorter than the end its header records is refused as truncated before uproot reads it; an
error uproot raises while reading (a damaged streamer, basket or key, also when the map looks up a
member of an object branch) is an InputError naming the file.

A column the file does not carry is null; so is `NAME[k]` for an event whose vector is shorter.
The file is read in steps of at most `max_rows` entries, so memory stays bounded whatever its size;
entry numbers in messages start at 0. The file stays open from construction to the end of the
first reading, so that its fields are listed once.

The file's GUID: from the branch map when it names one, else the POOL `##Params` tree's FID (the
highest cycle), else derived from the file's bytes (producer.inputs.common.content_guid). Every
event's `input_guid` is the file's GUID.
"""

from __future__ import annotations

import fnmatch
import re
import struct
from collections import ChainMap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import awkward as ak  # type: ignore[import-untyped]
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import uproot  # type: ignore[import-untyped]

from eventindex.columns import EVENT_SCHEMA, INTEGER_LIMITS, PROVENANCE_LIMITS, PROVENANCE_TYPE
from eventindex.errors import InputError
from producer.inputs.base import InputSource
from producer.inputs.branch_map import (
    COLLECTION_KEYS,
    COLLECTION_TOKEN,
    EVENT_TYPE_BITMASK,
    EVENT_TYPE_BITS,
    BitsSpec,
    BranchMap,
    TokenBranch,
    parse_ref,
)
from producer.inputs.common import (
    MASK_WIDTHS,
    REQUIRED_COLUMNS,
    beyond_float32,
    complete_table,
    content_guid,
    descriptors_exhausted,
    first_beyond_float32,
    normalize_guid,
    out_of_range,
    unreadable,
)
from producer.inputs.pool_token import TokenFormatError, parse_tokens
from producer.inputs.root_tree import TREE_CLASSES, Field, Tree, open_tree

#: The start of a ROOT file's header: "root", fVersion, fBEGIN, then fEND (an int32; an int64 from
#: fVersion 1000000 on, the large-file format, and then 4 bytes longer).
ROOT_HEADER = struct.Struct(">4siii")
ROOT_LARGE_FILE = 1_000_000
PARAMS_TREE = "##Params"
PARAMS_FID = re.compile(r"\[NAME=FID\]\[VALUE=([0-9A-Fa-f-]{36})\]")
LINKS_TREE = "##Links"
LINKS_STREAM = re.compile(r"\[CNT=MetaData\((Stream[^()\]]*)\)\]")
FLOAT_COLUMNS = frozenset({"mc_event_weight"})
FLAG_COLUMNS = frozenset(EVENT_TYPE_BITS)
#: The xAOD event-type word is a uint32.
EVENT_TYPE_LIMIT = 2**32 - 1


class Model_TAttMarker_v3(uproot.models.TAtt.Model_TAttMarker_v2):  # type: ignore[misc]  # uproot's naming: Model_CLASS_vN
    """`TAttMarker` version 3, which recent ROOT writes into every TTree (POOL's `##Params` and `##Links`
    too): the members of version 2 (fMarkerColor short, fMarkerStyle short, fMarkerSize float), which
    uproot reads, but uproot knows version 2 only and, for 3, reads the file's streamers (~0.05 CPU-s on
    an ATLAS DAOD, more than the rest of opening its small trees)."""


class _TAttMarker(uproot.models.TAtt.Model_TAttMarker):  # type: ignore[misc]
    known_versions: ClassVar[dict[int, type]] = {
        **uproot.models.TAtt.Model_TAttMarker.known_versions,
        3: Model_TAttMarker_v3,
    }


#: uproot's classes (looked up as they are when asked for), with TAttMarker version 3 known: uproot.open's
#: `custom_classes`, where uproot also keeps the classes it makes from a file's streamers.
CLASSES = ChainMap[str, Any]({"TAttMarker": _TAttMarker}, uproot.classes)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def _reading(where: str) -> Iterator[None]:
    """Translate whatever uproot (or its decompressors) raises into an InputError naming `where`.

    uproot reports a damaged file with many exception types (OSError, ValueError,
    DeserializationError, KeyError, zlib/lz4/zstd errors, ...); this boundary wraps only uproot
    calls, so nothing of ours is swallowed.
    """
    try:
        yield
    except InputError:
        raise
    except OSError as exc:
        if descriptors_exhausted(exc):  # the job's limits, not the file's fault
            raise unreadable(where.rsplit(": ", 1)[0], exc, "") from None
        raise InputError(f"{where}: {_one_line(exc)}") from None
    except Exception as exc:
        raise InputError(f"{where}: {_one_line(exc)}") from None


@dataclass(frozen=True)
class Ref:
    """A column read from one field, or from element `element` of a vector field."""

    field: Field
    element: int | None = None

    def __str__(self) -> str:
        return self.field.name if self.element is None else f"{self.field.name}[{self.element}]"


@dataclass(frozen=True)
class Bits:
    """A mask column built from boolean fields: bit i is fields[i]."""

    fields: tuple[Field, ...]


@dataclass(frozen=True)
class TokenSource:
    """A string field of POOL tokens in `tree`: one provenance reference of `stream` per entry."""

    stream: str
    tree: Tree
    field: Field


class RootInput(InputSource):
    def __init__(self, path: Path, branch_map: Path | None) -> None:
        self.path = path
        self.name = str(path)
        self.map = BranchMap.from_file(branch_map)
        #: What the manifest should tell about how the file was read (a fallback, tokens not read).
        self.notes: list[str] = []
        #: mask column -> the field behind each bit, for masks built from boolean fields.
        self.trigger_names: dict[str, tuple[str, ...]] = {}
        self._file: Any = self._open()
        try:
            self._layout()
            self.guid = self._file_guid()
            self._convert(0, 0)  # the type checks, on no entry (typed empty arrays), before any event is indexed
        except BaseException:
            self._close()
            raise

    def _open(self) -> Any:
        # Memory-mapped: uproot's default source for paths (fsspec) hands every read to an event-loop
        # thread, which costs a quarter of the CPU time of reading an xAOD file.
        with _reading(f"{self.name}: not a readable ROOT file"):
            self._check_length()
            return uproot.open(self.path, handler=uproot.MemmapSource, custom_classes=CLASSES)

    def _check_length(self) -> None:
        """A file shorter than the end its header records is truncated: refused before uproot reads it,
        which reads only what it is asked for (a file cut in its streamers or keys would fail later, or
        not at all, its events being whole)."""
        with self.path.open("rb") as stream:
            header = stream.read(ROOT_HEADER.size + 4)
            size = stream.seek(0, 2)
        if len(header) < ROOT_HEADER.size + 4 or header[:4] != b"root":
            return  # not a ROOT file, or too short for one: uproot says so
        _magic, version, _begin, end = ROOT_HEADER.unpack_from(header)
        if version >= ROOT_LARGE_FILE:
            end = int.from_bytes(header[12:20], "big")
        if size < end:
            raise InputError(
                f"{self.name}: truncated ROOT file: {size} bytes, but its header says the file ends at byte {end}"
            )

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def declared_events(self) -> int:
        return self.entries

    # ---------------------------------------------------------------- layout

    def _layout(self) -> None:
        """Choose the event tree (or fall back to the collection), resolve every column and the tokens."""
        self.notes.clear()
        self.trigger_names.clear()
        with _reading(f"{self.name}: not a readable ROOT file"):
            found = {str(k): str(v) for k, v in self._file.classnames(recursive=True, cycle=False).items()}
        events_name = self._event_tree(found)
        collection_name = next(
            (n for n in self.map.collections if found.get(n) in TREE_CLASSES and n != events_name), None
        )
        events = self._tree(events_name)
        columns, missing = self._resolve(events)
        collection = self._tree(collection_name) if collection_name is not None else None
        if missing:
            why = f"tree {events_name} has no {missing}"
            if events_name in self.map.collections:
                raise InputError(f"{self.name}: {why}")
            if collection is None:
                tried = " or ".join(self.map.collections) or "none (the branch map says null)"
                raise InputError(
                    f"{self.name}: {why}, and the file has no POOL collection tree to read the events from "
                    f"(tried: {tried})"
                )
            columns, still = self._resolve(collection)
            if still:
                raise InputError(f"{self.name}: {why}, and its POOL collection tree {collection.name} none either")
            self.notes.append(f"{why}: the events were read from the POOL collection tree {collection.name}")
            events, collection = collection, None
        self.events = events
        self.tree_name = events.name
        self.entries = events.entries
        self.columns = columns
        self.tokens = self._tokens(events, collection)

    def _event_tree(self, found: dict[str, str]) -> str:
        for name in self.map.trees:
            if name in found:
                if found[name] not in TREE_CLASSES:
                    raise InputError(f"{self.name}: {name} is a {found[name]}, not a TTree or RNTuple")
                return name
        trees = sorted(name for name, cls in found.items() if cls in TREE_CLASSES)
        if not self.map.tree_named:
            for name in self.map.collections:
                if found.get(name) in TREE_CLASSES:
                    return name
            candidates = [name for name in trees if not name.rsplit("/", 1)[-1].startswith("##")]
            if len(candidates) == 1:
                return candidates[0]
        wanted = " or ".join(self.map.trees)
        have = ", ".join(trees) or "none"
        raise InputError(f"{self.name}: no tree {wanted} (trees in the file: {have}; name one with --branch-map)")

    def _tree(self, name: str) -> Tree:
        with _reading(f"{self.name}: tree {name}"):
            return open_tree(self._file, name)

    def _field(self, tree: Tree, name: str, what: str) -> Field:
        """The field `name` of `tree`, which must exist and be the only one of that name."""
        if name in tree.ambiguous:
            raise InputError(f"{self.name}: tree {tree.name} has several fields named {name!r} ({what})")
        field = self._lookup(tree, name)
        if field is None:
            raise InputError(f"{self.name}: tree {tree.name} has no field {name!r} ({what})")
        return field

    def _lookup(self, tree: Tree, name: str) -> Field | None:
        """`tree.get(name)`: a TTree works out a branch's interpretation (its streamers) when a member of
        it is asked for, which a truncated or damaged file fails (an InputError naming the file)."""
        with _reading(f"{self.name}: tree {tree.name}: field {name!r}"):
            return tree.get(name)

    def _typename(self, field: Field) -> str:
        """`field.typename`, for messages: uproot works a TTree branch's out from the file's streamers."""
        with _reading(f"{self.name}: field {field.name!r}: its type"):
            return field.typename

    def _resolve(self, tree: Tree) -> tuple[dict[str, Ref | Bits], str]:
        """(column -> where it is read from, a description of the missing required column or "")."""
        columns: dict[str, Ref | Bits] = {}
        for column, spec in self.map.bits.items():
            columns[column] = self._bits(tree, column, spec)
        for column, candidates in self.map.branches.items():
            if column in columns:
                continue
            for candidate in candidates:
                name, element = parse_ref(candidate)
                found = self._lookup(tree, name)
                if found is not None:
                    columns[column] = Ref(found, element)
                    break
            else:
                if column in self.map.required:
                    self._field(tree, parse_ref(candidates[0])[0], f"the branch map's {column}")
        for column in REQUIRED_COLUMNS:
            if column not in columns:
                tried = ", ".join(self.map.branches[column]) or "none"
                return columns, f"{column} (tried: {tried}){self._unreadable(tree, self.map.branches[column])}"
        return columns, ""

    def _unreadable(self, tree: Tree, candidates: tuple[str, ...]) -> str:
        """Why a candidate `OBJECT.member` is absent although OBJECT is there (an object stored unsplit)."""
        for candidate in candidates:
            head, dot, _ = candidate.partition(".")
            for parent in (head + dot, head):
                field = tree.fields.get(parent)
                if dot and field is not None:
                    return (
                        f"; {parent} ({self._typename(field)}) is there, but no member of it that uproot can read "
                        f"(an object stored unsplit is read whole or not at all)"
                    )
        return ""

    def _bits(self, tree: Tree, column: str, spec: BitsSpec) -> Bits:
        what = f"the branch map's {column} bits"
        if spec.pattern is not None:
            names = sorted(n for n in tree.fields if fnmatch.fnmatchcase(n, spec.pattern))
            if not names:
                raise InputError(f"{self.name}: tree {tree.name} has no field matching {spec.pattern!r} ({what})")
        else:
            names = list(spec.names)
        width = MASK_WIDTHS[column] * 8
        if len(names) > width:
            raise InputError(f"{self.name}: {what} name {len(names)} fields, more than the {width} bits of {column}")
        self.trigger_names[column] = tuple(names)
        return Bits(tuple(self._field(tree, name, what) for name in names))

    def _tokens(self, events: Tree, collection: Tree | None) -> list[TokenSource]:
        if self.map.provenance:
            return [self._token_field(events, ref) for ref in self.map.provenance]
        own = events if events.name in self.map.collections else collection
        token = None if own is None else self._lookup(own, COLLECTION_TOKEN)
        if own is None or token is None:
            return []
        if own is collection:
            if collection.entries != events.entries:
                self.notes.append(
                    f"POOL collection tree {collection.name} has {collection.entries} entries, tree {events.name} "
                    f"{events.entries}: its tokens were not read"
                )
                return []
            if any(self._lookup(collection, key) is None for key in COLLECTION_KEYS):
                self.notes.append(
                    f"POOL collection tree {collection.name} has no {' or '.join(COLLECTION_KEYS)} to check "
                    f"against tree {events.name}: its tokens were not read"
                )
                return []
        stream = self._stream()
        if stream is None:
            self.notes.append(
                f"the file's {LINKS_TREE} names no single MetaData(Stream...) container, so the stream of "
                f"the tokens of {own.name} is unknown: they were not read"
            )
            return []
        return [TokenSource(stream, own, token)]

    def _token_field(self, tree: Tree, ref: TokenBranch) -> TokenSource:
        return TokenSource(ref.stream, tree, self._field(tree, ref.branch, f"provenance token of {ref.stream}"))

    def _stream(self) -> str | None:
        """The stream the file was written as: the `MetaData(Stream...)` container POOL's `##Links` lists.

        That container holds the file's EventStreamInfo, which ATLAS keys by the stream's name.
        """
        streams = {match.group(1) for value in self._pool_strings(LINKS_TREE) if (match := LINKS_STREAM.search(value))}
        return streams.pop() if len(streams) == 1 else None

    def _pool_strings(self, tree: str) -> list[str]:
        """The `db_string` values of a POOL bookkeeping tree (`##Params`, `##Links`), its highest cycle."""
        with _reading(f"{self.name}: {tree}"):
            keys = self._file.keys(cycle=True)
            cycles = [int(key.rsplit(";", 1)[1]) for key in keys if key.startswith(tree + ";")]
            if not cycles:
                return []
            values = self._file[f"{tree};{max(cycles)}"].arrays(filter_name=["db_string"], library="np")
        return [_text(value) for value in values.get("db_string", [])]

    def _file_guid(self) -> str:
        where = f"{self.name}: the branch map's guid"
        if self.map.guid is not None:
            return self.map.guid
        if self.map.guid_branch is not None:
            field = self._field(self.events, self.map.guid_branch, "guid")
            if not self.entries:
                raise InputError(f"{self.name}: tree {self.tree_name} has no entries to read the guid field from")
            with _reading(f"{self.name}: guid field {field.name!r}: entry 0"):
                values = self.events.read([field.name], 0, 1)[field.name]
            if not _is_string(values):
                raise InputError(
                    f"{self.name}: guid field {field.name!r} has type {self._typename(field)}, expected a string"
                )
            return normalize_guid(str(values[0]), f"{self.name}: guid field {field.name!r}: entry 0")
        if self.map.guid_object is not None:
            key = self.map.guid_object
            with _reading(f"{self.name}: guid object {key!r}"):
                obj = self._file[key]
                text = str(obj) if isinstance(obj, str) else obj.member("fTitle")
            return normalize_guid(text, where)
        for value in self._pool_strings(PARAMS_TREE):
            match = PARAMS_FID.search(value)
            if match:
                return normalize_guid(match.group(1), f"{self.name}: {PARAMS_TREE} FID")
        return content_guid(self.path)

    # ---------------------------------------------------------------- reading

    def batches(self, max_rows: int) -> Iterator[pa.Table]:
        try:
            if self._file is None:
                self._file = self._open()
                self._layout()
            for start in range(0, self.entries, max_rows):
                yield self._convert(start, min(start + max_rows, self.entries))
        finally:
            self._close()

    def _read(self, tree: Tree, names: set[str], start: int, stop: int) -> dict[str, Any]:
        where = f"{self.name}: tree {tree.name}: entries from {start}"
        with _reading(where):
            arrays = tree.read(names, start, stop) if stop > start else tree.empty(names)
        for name, values in arrays.items():
            if len(values) != stop - start:
                raise InputError(f"{where}: field {name!r} gave {len(values)} entries, expected {stop - start}")
        return arrays

    def _convert(self, start: int, stop: int) -> pa.Table:
        rows = stop - start
        picked = self._elements(start, stop)
        wanted: dict[int, tuple[Tree, set[str]]] = {id(self.events): (self.events, set())}
        for column, source in self.columns.items():
            fields = source.fields if isinstance(source, Bits) else (source.field,)
            if column not in picked:
                wanted[id(self.events)][1].update(f.name for f in fields)
        for tokens in self.tokens:
            wanted.setdefault(id(tokens.tree), (tokens.tree, set()))[1].add(tokens.field.name)
            if tokens.tree is not self.events:
                wanted[id(tokens.tree)][1].update(COLLECTION_KEYS)
        data = {key: self._read(tree, names, start, stop) for key, (tree, names) in wanted.items()}
        step = data[id(self.events)]
        arrays: dict[str, pa.Array] = {}
        bitmask: tuple[np.ndarray, np.ndarray | None] | None = None
        for column, source in self.columns.items():
            if isinstance(source, Bits):
                arrays[column] = self._from_bits(column, source, step, rows)
                continue
            check = self._checker(column, source)
            if column in picked:
                numbers, valid = picked[column]
            elif column in MASK_WIDTHS:
                arrays[column] = _mask(step[source.field.name], MASK_WIDTHS[column], check, start)
                continue
            else:
                numbers, valid = _scalar(step[source.field.name], source.element, check)
            if valid is not None and column in REQUIRED_COLUMNS and not valid.all():  # no run or event: no event
                entry = start + int(np.flatnonzero(~valid)[0])
                raise InputError(
                    f"{self.name}: entry {entry}: field {str(source)!r}: the vector has no element {source.element}, "
                    f"and {column} may not be missing"
                )
            if column == EVENT_TYPE_BITMASK:
                bitmask = self._integers(column, source, numbers, valid, start, check, EVENT_TYPE_LIMIT), valid
            else:
                arrays[column] = self._column(column, source, numbers, valid, start, check)
        if bitmask is not None:
            words, valid = bitmask
            for flag, bit in EVENT_TYPE_BITS.items():
                if flag not in arrays:
                    arrays[flag] = pa.array((words & bit) != 0, mask=None if valid is None else ~valid)
        if self.tokens:
            self._check_alignment(data, start)
            arrays["provenance"] = self._provenance(data, rows, start)
        return complete_table(arrays, rows, self.guid)

    def _elements(self, start: int, stop: int) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """column -> (numbers, validity or None when all are present) of the `NAME[k]` columns the
        event tree reads element by element; the others (and the up-front type check, on no
        entry) are read whole."""
        out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        if stop <= start:
            return out
        for column, source in self.columns.items():
            if isinstance(source, Bits) or source.element is None or column in MASK_WIDTHS:
                continue
            with _reading(f"{self.name}: tree {self.events.name}: entries from {start}: field {str(source)!r}"):
                found = self.events.element(source.field, source.element, start, stop)
            if found is not None:
                numbers, valid = found
                out[column] = numbers, None if valid.all() else valid
        return out

    def _checker(self, column: str, source: Ref) -> Callable[[bool, str], None]:
        def check(ok: bool, expected: str) -> None:
            if not ok:
                raise InputError(
                    f"{self.name}: field {source.field.name!r} ({column}) has type {self._typename(source.field)}, "
                    f"expected {expected}"
                )

        return check

    def _column(
        self,
        column: str,
        source: Ref,
        numbers: np.ndarray,
        valid: np.ndarray | None,
        start: int,
        check: Callable[[bool, str], None],
    ) -> pa.Array:
        typ = EVENT_SCHEMA.field(column).type
        mask = None if valid is None else ~valid
        if column in FLAG_COLUMNS:
            check(numbers.dtype.kind in "biu", "a bool or integer")
            return pa.array(numbers.astype(bool, copy=False), mask=mask)
        if column in FLOAT_COLUMNS:
            check(numbers.dtype.kind in "fiu", "a floating-point number")
            bad = first_beyond_float32(numbers)  # an entry without a value holds 0
            if bad >= 0:
                raise InputError(f"{self.name}: entry {start + bad}: field {str(source)!r}: "
                                 f"{beyond_float32(column, numbers[bad])}")  # fmt: skip
            with np.errstate(over="ignore", invalid="ignore"):  # NaN and infinities stay what they are
                return pa.array(numbers.astype(typ.to_pandas_dtype(), copy=False), typ, mask=mask)
        values = self._integers(column, source, numbers, valid, start, check, INTEGER_LIMITS[column])
        return pa.array(values, typ, mask=mask)

    def _integers(
        self,
        column: str,
        source: Ref,
        values: np.ndarray,
        valid: np.ndarray | None,
        start: int,
        check: Callable[[bool, str], None],
        limit: int,
    ) -> np.ndarray:
        """Integer values checked to lie in 0..limit (where valid), as int64."""
        check(values.dtype.kind in "iu", "an integer")
        bad = np.zeros(len(values), dtype=bool)
        if values.dtype.kind == "i":
            bad |= values < 0
        if np.iinfo(values.dtype).max > limit:
            bad |= values > limit
        if valid is not None:
            bad &= valid
        hits = np.flatnonzero(bad)
        if len(hits):
            value = int(values[hits[0]])
            why = (
                out_of_range(column, value)
                if column in INTEGER_LIMITS
                else f"{column} value {value} is outside 0..{limit}"
            )
            raise InputError(f"{self.name}: entry {start + int(hits[0])}: field {str(source)!r}: {why}")
        return values.astype(np.int64, copy=False)

    def _from_bits(self, column: str, source: Bits, step: dict[str, Any], rows: int) -> pa.Array:
        width = MASK_WIDTHS[column]
        matrix = np.zeros((rows, width * 8), dtype=bool)
        for i, field in enumerate(source.fields):
            values = step[field.name]
            ok = values.ndim == 1 and not _is_string(values)
            numbers = ak.to_numpy(values) if ok else None
            if numbers is None or numbers.dtype.kind not in "biu":
                raise InputError(
                    f"{self.name}: field {field.name!r} (bit {i} of {column}) has type {self._typename(field)}, "
                    f"expected a bool"
                )
            matrix[:, i] = numbers != 0
        return _binary(np.packbits(matrix, axis=1, bitorder="little"), np.ones(rows, dtype=bool))

    def _check_alignment(self, data: dict[int, dict[str, Any]], start: int) -> None:
        """A collection read beside the event tree must list the same events in the same order."""
        run, event = self.columns["run_number"], self.columns["event_number"]
        assert isinstance(run, Ref) and isinstance(event, Ref)
        mine = data[id(self.events)]
        for tokens in self.tokens:
            if tokens.tree is self.events:
                continue
            theirs = data[id(tokens.tree)]
            ours = (ak.to_numpy(mine[run.field.name]), ak.to_numpy(mine[event.field.name]))
            other = (ak.to_numpy(theirs[COLLECTION_KEYS[0]]), ak.to_numpy(theirs[COLLECTION_KEYS[1]]))
            differ = np.flatnonzero((ours[0] != other[0]) | (ours[1] != other[1]))
            if len(differ):
                i = int(differ[0])
                raise InputError(
                    f"{self.name}: entry {start + i}: POOL collection tree {tokens.tree.name} holds (run, event) "
                    f"({other[0][i]}, {other[1][i]}), tree {self.events.name} ({ours[0][i]}, {ours[1][i]}): "
                    f'the collection does not list the same events; index without its tokens: "collection": null'
                )

    def _provenance(self, data: dict[int, dict[str, Any]], rows: int, start: int) -> pa.Array:
        """One list of references per entry, the token fields' streams in order (an empty token: none)."""
        row_parts: list[np.ndarray] = []
        order_parts: list[np.ndarray] = []
        parsed: list[tuple[str, Any]] = []
        for order, tokens in enumerate(self.tokens):
            values = data[id(tokens.tree)][tokens.field.name]
            if not _is_string(values):
                raise InputError(
                    f"{self.name}: field {tokens.field.name!r} (provenance {tokens.stream}) has type "
                    f"{self._typename(tokens.field)}, expected a string"
                )
            texts = pc.utf8_trim_whitespace(ak.to_arrow(values, extensionarray=False).cast(pa.string()))
            given = pc.greater(pc.binary_length(texts), 0)
            present = np.flatnonzero(given.to_numpy(zero_copy_only=False))
            try:
                fields = parse_tokens(texts.filter(given))
            except TokenFormatError as exc:
                raise InputError(
                    f"{self.name}: entry {start + int(present[exc.index])}: field {tokens.field.name!r} "
                    f"(provenance {tokens.stream}) is not a POOL token: {exc.reason}"
                ) from None
            row_parts.append(present)
            order_parts.append(np.full(len(present), order))
            parsed.append((tokens.stream, fields))
        row_of = np.concatenate(row_parts)
        by_row = np.lexsort((np.concatenate(order_parts), row_of))  # each row's references in stream order
        children = []
        in_order = bool(np.array_equal(by_row, np.arange(len(by_row))))  # one token field: nothing to reorder
        for field in PROVENANCE_TYPE.value_type:
            if field.name == "stream":
                child = pa.concat_arrays(
                    [pa.array([stream]).take(np.zeros(len(fields.guid), dtype=np.int32)) for stream, fields in parsed]
                )
            else:
                child = pa.concat_arrays([getattr(fields, field.name) for _, fields in parsed])
            if field.name in PROVENANCE_LIMITS:
                numbers = child.to_numpy()
                over = np.flatnonzero(numbers > PROVENANCE_LIMITS[field.name])
                if len(over):
                    raise InputError(
                        f"{self.name}: entry {start + int(row_of[over[0]])}: a POOL token's "
                        f"{out_of_range(f'provenance.{field.name}', int(numbers[over[0]]))}"
                    )
            children.append(child.cast(field.type) if in_order else child.cast(field.type).take(pa.array(by_row)))
        structs = pa.StructArray.from_arrays(children, fields=list(PROVENANCE_TYPE.value_type))
        offsets = np.zeros(rows + 1, dtype=np.int32)
        np.cumsum(np.bincount(row_of, minlength=rows), out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), structs, type=PROVENANCE_TYPE)


def _text(value: object) -> str:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _is_string(values: Any) -> bool:
    """Is an Awkward array one string per entry?"""
    return bool(values.layout.parameter("__array__") == "string")


def _scalar(values: Any, element: int | None, check: Callable[[bool, str], None]) -> tuple[np.ndarray, Any]:
    """One number per entry -> (numbers, validity or None when all are present).

    With `element` k, the field is a vector per entry and the value is its element k, null where
    the vector is shorter.
    """
    if element is None:
        check(not _is_string(values) and values.ndim == 1, "a number (a vector is mapped by one element: NAME[k])")
        numbers = ak.to_numpy(values)
        check(numbers.dtype.kind in "biuf", "a number")
        return numbers, None
    check(not _is_string(values) and values.ndim == 2, "a vector of numbers (NAME[k] is element k of one)")
    counts, flat = _lists(values)
    check(flat.dtype.kind in "biuf", "a vector of numbers")
    valid = counts > element
    picked = np.zeros(len(counts), dtype=flat.dtype)
    picked[valid] = flat[(np.cumsum(counts) - counts)[valid] + element]
    return picked, None if valid.all() else valid


def _lists(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """A list per entry (variable or fixed length) -> (the entries' lengths, every element in order)."""
    layout = values.layout
    if (
        isinstance(layout, ak.contents.ListOffsetArray)
        and isinstance(layout.content, ak.contents.NumpyArray)
        and layout.content.data.ndim == 1
    ):  # what uproot reads a std::vector of numbers into: its buffers as they are (ak.num/flatten cost ~0.6 ms)
        offsets = np.asarray(layout.offsets.data, dtype=np.int64)
        return np.diff(offsets), np.asarray(layout.content.data)[offsets[0] : offsets[-1]]
    return ak.to_numpy(ak.num(values, axis=1)).astype(np.int64), ak.to_numpy(ak.flatten(values, axis=1))


def _mask(values: Any, width: int, check: Callable[[bool, str], None], start: int) -> pa.Array:
    """A vector per entry of integer words (bit i = bit i % w of word i // w) or bools -> width-byte bitmaps.

    An empty vector is a null mask; a shorter one is zero-padded; a longer one is an error naming the entry.
    """
    expected = f"a vector of integer words or bools of at most {width * 8} bits"
    check(values.ndim == 2 and not _is_string(values), expected)
    counts, flat = _lists(values)
    check(flat.dtype.kind in "biu", expected)
    bits_each = 1 if flat.dtype.kind == "b" else 8 * flat.dtype.itemsize
    if isinstance(values.layout, ak.contents.RegularArray):  # a fixed size: known before any entry is read
        check(
            values.layout.size * bits_each <= width * 8,
            f"{expected}, each entry holds {values.layout.size * bits_each}",
        )
    over = np.flatnonzero(counts * bits_each > width * 8)
    if len(over):
        check(False, f"{expected}, entry {start + int(over[0])} holds {int(counts[over[0]]) * bits_each}")
    valid = counts > 0
    kept = counts[valid]
    unit: np.dtype[Any] = np.dtype(bool) if bits_each == 1 else np.dtype(f"<u{flat.dtype.itemsize}")
    matrix = np.zeros((len(kept), width * 8 // bits_each), dtype=unit)
    if len(kept) and (kept == kept[0]).all():
        matrix[:, : kept[0]] = flat.reshape(len(kept), int(kept[0]))
    elif len(kept):  # element j of row r goes to flat index r * row_size + j: one scatter
        shift = np.arange(len(kept)) * matrix.shape[1] - (np.cumsum(kept) - kept)
        matrix.reshape(-1)[np.arange(len(flat)) + np.repeat(shift, kept)] = flat
    data = np.packbits(matrix, axis=1, bitorder="little") if bits_each == 1 else matrix.view(np.uint8)
    return _binary(data, valid)


def _binary(data: np.ndarray, valid: np.ndarray) -> pa.Array:
    """Bitmaps of the valid rows, (valid rows, width) uint8 -> a binary array with nulls where not valid."""
    rows, width = len(valid), data.shape[1]
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(valid.astype(np.int32) * width, out=offsets[1:])
    buffer = pa.py_buffer(np.ascontiguousarray(data))
    if valid.all():
        return pa.Array.from_buffers(pa.binary(), rows, [None, pa.py_buffer(offsets), buffer])
    validity = pa.array(valid).buffers()[1]
    return pa.Array.from_buffers(
        pa.binary(), rows, [validity, pa.py_buffer(offsets), buffer], null_count=int(rows - valid.sum())
    )
