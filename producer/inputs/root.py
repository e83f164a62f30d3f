"""`*.root` / `root:PATH`: a ROOT TTree of EventInfo-like branches, read with uproot.

Which tree and branches are read is producer.inputs.branch_map: by default the first of the trees
`EventIndex`, `EventInfo`, `CollectionTree` (else the file's only tree), and for each column the
first present of its usual spellings (`RunNumber`/`runNumber`/`EventInfoAux.runNumber`/
`run_number`, ...; the table is in docs/inputs.md). `--branch-map FILE` overrides it. An RNTuple
(what uproot >= 5.7 writes for `file["name"] = {...}`) is read the same way as a TTree.

Branch types accepted (anything else is an InputError naming the file and the branch):
- integer columns: any integer branch, signed or not; each value must fit the column's type
  (a negative or too large value is an error naming the entry);
- flags: bool or integer branches (non-zero is true); without a flag branch, the xAOD
  `eventTypeBitmask` word gives it (bit 0 simulation, bit 1 testbeam, bit 2 calibration);
- `mc_event_weight`: a floating-point or integer branch;
- trigger masks: a fixed-size array per entry of integer words, bit 0 of each word first and the
  words in order (ATLAS: 16 x uint32 for each L1 vector, 256 x uint32 for each HLT vector), or
  of bytes (64 / 1024 x uint8), or of bools (one per bit). Fewer bits than the vector's width are
  zero-padded; more are an error. ROOT has no per-entry null: a mask branch gives a mask for
  every event (all-zero when nothing fired); a mask with no branch is null for every event, and
  so is `extended_level1_id`;
- GUID and provenance token branches: strings.

The file is read in steps of at most `max_rows` entries (`TTree.iterate(step_size=...)`), so
memory stays bounded whatever the file's size. Entry numbers in messages start at 0.

The file's GUID: from the branch map when it names one, else the POOL `##Params` tree's FID,
else derived from the file's bytes (producer.inputs.common.content_guid). Every event's
`input_guid` is the file's GUID.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import uproot  # type: ignore[import-untyped]

from eventindex.columns import EVENT_SCHEMA, PROVENANCE_TYPE
from eventindex.errors import InputError
from producer.inputs.base import InputSource
from producer.inputs.branch_map import EVENT_TYPE_BITMASK, EVENT_TYPE_BITS, BranchMap
from producer.inputs.common import (
    MASK_WIDTHS,
    REQUIRED_COLUMNS,
    binary_from_matrix,
    complete_table,
    content_guid,
    first_true,
    normalize_guid,
)

TREE_CLASSES = frozenset({"TTree", "TNtuple", "ROOT::RNTuple"})
PARAMS_TREE = "##Params"
PARAMS_FID = re.compile(r"\[NAME=FID\]\[VALUE=([0-9A-Fa-f-]{36})\]")
TOKEN = re.compile(
    r"\[DB=([0-9A-Fa-f-]{36})\]\[CNT=([^\]]*)\]\[CLID=([^\]]*)\]\[TECH=([0-9A-Fa-f]{1,8})\]"
    r"\[OID=([0-9A-Fa-f]{1,16})-([0-9A-Fa-f]{1,16})\]"
)
FLOAT_COLUMNS = frozenset({"mc_event_weight"})
FLAG_COLUMNS = frozenset(EVENT_TYPE_BITS)
UINT_LIMITS = {
    field.name: np.iinfo(field.type.to_pandas_dtype())
    for field in EVENT_SCHEMA
    if pa.types.is_unsigned_integer(field.type)
}
UINT_LIMITS[EVENT_TYPE_BITMASK] = np.iinfo(np.uint32)


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
    except Exception as exc:
        raise InputError(f"{where}: {_one_line(exc)}") from None


def _branch_type(typenames: dict[str, str], branch: str) -> str:
    return typenames.get(branch, "?")


class RootInput(InputSource):
    def __init__(self, path: Path, branch_map: Path | None) -> None:
        self.path = path
        self.name = str(path)
        self.map = BranchMap.from_file(branch_map)
        with self._open() as file:
            self.tree_name = self._find_tree(file)
            with _reading(f"{self.name}: tree {self.tree_name}"):
                tree = file[self.tree_name]
                self.entries = int(tree.num_entries)
                names = set(tree.keys(recursive=True, full_paths=False))
                self.typenames = {str(k): str(v) for k, v in tree.itertypenames(recursive=True, full_paths=False)}
            self.columns = self._resolve(names)
            for ref in self.map.provenance:
                if ref.branch not in names:
                    raise InputError(
                        f"{self.name}: tree {self.tree_name} has no provenance token branch {ref.branch!r}"
                    )
            self.guid = self._file_guid(file, tree, names)
            with _reading(f"{self.name}: tree {self.tree_name}: entry 0"):
                probe = tree.arrays(
                    filter_name=self._wanted().__contains__, entry_stop=min(1, self.entries), library="np"
                )
            self._convert(probe, 0)  # the type checks, before any event is indexed

    def _open(self) -> Any:
        with _reading(f"{self.name}: not a readable ROOT file"):
            return uproot.open(self.path)

    @property
    def declared_events(self) -> int:
        return self.entries

    # ---------------------------------------------------------------- layout

    def _find_tree(self, file: Any) -> str:
        with _reading(f"{self.name}: not a readable ROOT file"):
            found = {str(k): str(v) for k, v in file.classnames(recursive=True, cycle=False).items()}
        trees = sorted(name for name, cls in found.items() if cls in TREE_CLASSES)
        for name in self.map.trees:
            if name in found:
                if found[name] not in TREE_CLASSES:
                    raise InputError(f"{self.name}: {name} is a {found[name]}, not a TTree")
                return name
        candidates = [name for name in trees if not name.rsplit("/", 1)[-1].startswith("##")]
        if not self.map.tree_named and len(candidates) == 1:
            return candidates[0]
        wanted = " or ".join(self.map.trees)
        have = ", ".join(trees) or "none"
        raise InputError(f"{self.name}: no tree {wanted} (trees in the file: {have}; name one with --branch-map)")

    def _resolve(self, names: set[str]) -> dict[str, str]:
        """column -> the branch that gives it."""
        columns: dict[str, str] = {}
        for column, candidates in self.map.branches.items():
            present = [name for name in candidates if name in names]
            if present:
                columns[column] = present[0]
            elif column in self.map.required:
                raise InputError(
                    f"{self.name}: tree {self.tree_name} has no branch {candidates[0]!r} (the branch map's {column})"
                )
        for column in REQUIRED_COLUMNS:
            if column not in columns:
                tried = ", ".join(self.map.branches[column]) or "none"
                raise InputError(f"{self.name}: tree {self.tree_name} has no {column} branch (tried: {tried})")
        return columns

    def _wanted(self) -> set[str]:
        return set(self.columns.values()) | {ref.branch for ref in self.map.provenance}

    def _file_guid(self, file: Any, tree: Any, names: set[str]) -> str:
        where = f"{self.name}: the branch map's guid"
        if self.map.guid is not None:
            return self.map.guid
        if self.map.guid_branch is not None:
            branch = self.map.guid_branch
            if branch not in names:
                raise InputError(f"{self.name}: tree {self.tree_name} has no guid branch {branch!r}")
            if not self.entries:
                raise InputError(f"{self.name}: tree {self.tree_name} has no entries to read the guid branch from")
            with _reading(f"{self.name}: guid branch {branch!r}: entry 0"):
                values = tree.arrays(filter_name=[branch].__contains__, entry_stop=1, library="np")[branch]
            return normalize_guid(_text(values[0]), f"{self.name}: guid branch {branch!r}: entry 0")
        if self.map.guid_object is not None:
            key = self.map.guid_object
            with _reading(f"{self.name}: guid object {key!r}"):
                obj = file[key]
                text = str(obj) if isinstance(obj, str) else obj.member("fTitle")
            return normalize_guid(text, where)
        with _reading(f"{self.name}: {PARAMS_TREE}"):
            if PARAMS_TREE in file.keys(cycle=False):
                for value in file[PARAMS_TREE].arrays(library="np").get("db_string", []):
                    match = PARAMS_FID.search(_text(value))
                    if match:
                        return normalize_guid(match.group(1), f"{self.name}: {PARAMS_TREE} FID")
        return content_guid(self.path)

    # ---------------------------------------------------------------- reading

    def batches(self, max_rows: int) -> Iterator[pa.Table]:
        where = f"{self.name}: tree {self.tree_name}"
        with self._open() as file:
            with _reading(where):
                tree = file[self.tree_name]
                steps = tree.iterate(filter_name=self._wanted().__contains__, step_size=max_rows, library="np")
            start = 0
            while True:
                with _reading(f"{where}: entries from {start}"):
                    step = next(steps, None)
                if step is None:
                    break
                table = self._convert(step, start)
                start += table.num_rows
                if table.num_rows:
                    yield table
        if start != self.entries:
            raise InputError(f"{where}: the tree declares {self.entries} entries, {start} were read")

    def _convert(self, step: dict[str, np.ndarray], start: int) -> pa.Table:
        rows = len(step[self.columns["run_number"]])
        arrays: dict[str, pa.Array] = {}
        for column, branch in self.columns.items():
            values = step[branch]
            if len(values) != rows:
                raise InputError(
                    f"{self.name}: entries from {start}: branch {branch!r} has {len(values)} values, "
                    f"{self.columns['run_number']!r} has {rows}"
                )
            check = self._checker(column, branch)
            if column in MASK_WIDTHS:
                arrays[column] = _mask(values, MASK_WIDTHS[column], check)
            elif column in FLAG_COLUMNS:
                check(values.ndim == 1 and values.dtype.kind in "biu", "a bool or integer branch")
                arrays[column] = pa.array(values.astype(bool, copy=False))
            elif column in FLOAT_COLUMNS:
                check(values.ndim == 1 and values.dtype.kind in "fiu", "a floating-point branch")
                arrays[column] = pa.array(values.astype(np.float32, copy=False))
            else:
                arrays[column] = pa.array(self._unsigned(column, branch, values, start, check))
        bitmask = arrays.pop(EVENT_TYPE_BITMASK, None)
        if bitmask is not None:
            words = bitmask.to_numpy()
            for flag, bit in EVENT_TYPE_BITS.items():
                if flag not in arrays:
                    arrays[flag] = pa.array((words & bit) != 0)
        if self.map.provenance:
            arrays["provenance"] = self._provenance(step, rows, start)
        return complete_table(arrays, rows, self.guid)

    def _checker(self, column: str, branch: str) -> Callable[[bool, str], None]:
        def check(ok: bool, expected: str) -> None:
            if not ok:
                raise InputError(
                    f"{self.name}: branch {branch!r} ({column}) has type {_branch_type(self.typenames, branch)}, "
                    f"expected {expected}"
                )

        return check

    def _unsigned(
        self, column: str, branch: str, values: np.ndarray, start: int, check: Callable[[bool, str], None]
    ) -> np.ndarray:
        check(values.ndim == 1 and values.dtype.kind in "iu", "an integer branch")
        limits = UINT_LIMITS[column]
        target = np.dtype(limits.dtype)
        if len(values) and not np.can_cast(values.dtype, target, casting="safe"):
            bad = first_true((values < 0) | (values > limits.max))
            if bad >= 0:
                raise InputError(
                    f"{self.name}: entry {start + bad}: branch {branch!r} ({column}) value {values[bad]} "
                    f"does not fit {target.name}"
                )
        return values.astype(target, copy=False)

    def _provenance(self, step: dict[str, np.ndarray], rows: int, start: int) -> pa.Array:
        fields: list[list[Any]] = [[] for _ in PROVENANCE_TYPE.value_type]
        counts = np.zeros(rows, dtype=np.int32)
        parsed = []
        for ref in self.map.provenance:
            values = step[ref.branch]
            if values.ndim != 1 or values.dtype.kind not in "OUS":
                raise InputError(
                    f"{self.name}: branch {ref.branch!r} (provenance {ref.stream}) has type "
                    f"{_branch_type(self.typenames, ref.branch)}, expected a string branch"
                )
            parsed.append((ref, values))
        for row in range(rows):
            for ref, values in parsed:
                token = _text(values[row]).strip()
                if not token:
                    continue
                match = TOKEN.fullmatch(token)
                if match is None:
                    raise InputError(
                        f"{self.name}: entry {start + row}: branch {ref.branch!r} holds {token[:80]!r}, "
                        f"not a POOL token [DB=..][CNT=..][CLID=..][TECH=..][OID=..-..]"
                    )
                guid, container, clid, tech, oid1, oid2 = match.groups()
                for out, value in zip(
                    fields,
                    (ref.stream, guid.upper(), container, clid, int(tech, 16), int(oid1, 16), int(oid2, 16)),
                    strict=True,
                ):
                    out.append(value)
                counts[row] += 1
        children = [
            pa.array(values, field.type) for values, field in zip(fields, PROVENANCE_TYPE.value_type, strict=True)
        ]
        structs = pa.StructArray.from_arrays(children, fields=list(PROVENANCE_TYPE.value_type))
        offsets = np.zeros(rows + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), structs, type=PROVENANCE_TYPE)


def _text(value: object) -> str:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _mask(values: np.ndarray, width: int, check: Callable[[bool, str], None]) -> pa.Array:
    """A fixed-size array per entry (integer words, bit 0 first; or bools, one per bit) -> width-byte bitmaps."""
    expected = f"a fixed-size array of integer words or bools of at most {width * 8} bits"
    check(values.ndim == 2 and values.dtype.kind in "biu", expected)
    rows = values.shape[0]
    if values.dtype.kind == "b":
        check(values.shape[1] % 8 == 0 and values.shape[1] <= width * 8, expected)
        data = np.packbits(values, axis=1, bitorder="little")
    else:
        check(values.shape[1] * values.dtype.itemsize <= width, expected)
        little = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
        data = little.view(np.uint8).reshape(rows, -1)
    if data.shape[1] < width:
        data = np.concatenate([data, np.zeros((rows, width - data.shape[1]), dtype=np.uint8)], axis=1)
    return binary_from_matrix(data)
