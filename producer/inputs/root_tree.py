"""A TTree or an RNTuple as a flat set of named per-event fields, enumerated once, read by entry range.

Names are full names, so that a name never matches a nested field by its short name:

- TTree: a top-level branch by its name; a sub-branch by its name when ROOT already prefixed it
  with its parent's (`EventInfoAux.` -> `EventInfoAux.runNumber`), else `PARENT.NAME`; a member of
  an unsplit object branch that uproot reads as fixed-width records by `BRANCH.MEMBER`
  (`TrigConfKeys.m_smk`).
- RNTuple: a top-level field by its name (ATLAS writes `EventInfoAuxDyn:runNumber`); a member of a
  record field by `RECORD.MEMBER` (`xTrigDecisionAux:.smk`, `TrigConfKeys.m_smk`), looking through
  the anonymous `:_N` base-class records as uproot does. Fields inside collections (the elements
  of a vector) are not per-event fields and are not listed.

The RNTuple's fields are listed from its field records in one pass: uproot's own `keys()` costs
O(fields²) (about 6 s of CPU per call on an ATLAS PHYSLITE file of 2,401 fields). Reads return Awkward arrays
(`library="ak"`), except `element` (one element of a TTree vector branch, from its baskets, as numpy);
uproot errors are left to the caller, which names the file.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import awkward as ak  # type: ignore[import-untyped]
import numpy as np
import uproot  # type: ignore[import-untyped]

TREE_CLASSES = frozenset({"TTree", "TNtuple", "ROOT::RNTuple"})
_ANONYMOUS = re.compile(r":_\d+")


@dataclass(frozen=True)
class Field:
    """A per-event field: its full name and where uproot finds it."""

    name: str
    #: TTree: the branch; RNTuple: the RField.
    source: Any
    #: TTree: the member of an unsplit object branch, else None.
    member: str | None = None
    #: ROOT's type name when known up front (RNTuple), else asked of the branch when needed.
    type_name: str | None = None

    @property
    def typename(self) -> str:
        """ROOT's type name, for messages (uproot works a TTree branch's out from its streamer: not cheap)."""
        if self.type_name is not None:
            return self.type_name
        if self.member is not None:
            return f"member {self.member} of {self.source.typename}"
        return str(self.source.typename)


class Tree(ABC):
    """One TTree or RNTuple of an open file."""

    name: str
    entries: int
    fields: dict[str, Field]
    #: Names two fields share: never resolved (the map must not pick one at random).
    ambiguous: set[str]

    @abstractmethod
    def _read(self, field: Field, start: int, stop: int) -> Any:
        """The field's values for entries [start, stop), as an Awkward array."""

    def get(self, name: str) -> Field | None:
        """The field of that full name, if the tree has exactly one."""
        if name in self.ambiguous:
            return None
        return self.fields.get(name)

    def read(self, names: Collection[str], start: int, stop: int) -> dict[str, Any]:
        """name -> Awkward array of entries [start, stop); an object branch is read once for all its members."""
        out: dict[str, Any] = {}
        whole: dict[int, Any] = {}
        for name in names:
            field = self.get(name)
            assert field is not None, name
            if field.member is None:
                out[name] = self._read(field, start, stop)
                continue
            key = id(field.source)
            if key not in whole:
                whole[key] = self._read(field, start, stop)
            out[name] = whole[key][field.member]
        return out

    def empty(self, names: Collection[str]) -> dict[str, Any]:
        """name -> an Awkward array of no entries, of the field's type (for checking types up front)."""
        return self.read(names, 0, 0)

    def element(self, field: Field, k: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Element `k` of a vector-of-numbers field for entries [start, stop), and where the vector
        has one, without reading the whole vectors into arrays; None where this tree cannot (the
        caller then reads the field whole)."""
        return None

    def _add(self, field: Field) -> None:
        if field.name in self.fields:
            self.ambiguous.add(field.name)
        self.fields[field.name] = field


class TTreeFields(Tree):
    def __init__(self, name: str, tree: Any) -> None:
        self.name = name
        self.entries = int(tree.num_entries)
        self.fields = {}
        self.ambiguous = set()
        for branch in tree.branches:
            self._walk(branch, None)

    def _walk(self, branch: Any, parent: str | None) -> None:
        own = str(branch.name)
        if parent is None or own.startswith(parent if parent.endswith(".") else parent + "."):
            name = own
        else:
            name = f"{parent}.{own}"
        self._add(Field(name, branch))
        for sub in branch.branches:
            self._walk(sub, name)

    def get(self, name: str) -> Field | None:
        """A branch, or a member of an unsplit object branch that uproot reads as fixed-width records.

        Members are looked up when asked for: working out a branch's interpretation is not cheap.
        """
        found = super().get(name)
        if found is not None or name in self.ambiguous or "." not in name:
            return found
        head, _, member = name.rpartition(".")
        parent = super().get(head)
        if parent is None or parent.source.branches:
            return None
        interpretation = parent.source.interpretation
        if not isinstance(interpretation, uproot.interpretation.objects.AsStridedObjects):
            return None
        if member not in {str(m) for m, _ in interpretation.members}:
            return None
        field = Field(name, parent.source, member=member)
        self.fields[name] = field
        return field

    def _read(self, field: Field, start: int, stop: int) -> Any:
        return field.source.array(entry_start=start, entry_stop=stop, library="ak")

    def element(self, field: Field, k: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray] | None:
        """From the branch's baskets: an xAOD `mcEventWeights` vector holds ~200 floats an event of
        which one is indexed, and converting them all costs as much as decompressing them.

        A `std::vector` of numbers (uproot's AsJagged of AsDtype): each entry's bytes are
        `header_bytes` of header, then the elements; element k is the k-th item after the header.
        """
        interpretation = field.source.interpretation
        if field.member is not None or not isinstance(interpretation, uproot.interpretation.jagged.AsJagged):
            return None
        content = interpretation.content
        if not isinstance(content, uproot.interpretation.numerical.AsDtype):
            return None
        dtype = np.dtype(content.from_dtype)
        if dtype.shape or dtype.kind not in "biuf":
            return None
        branch, size = field.source, dtype.itemsize
        values = np.zeros(stop - start, dtype=dtype.newbyteorder("="))
        valid = np.zeros(stop - start, dtype=bool)
        bounds = branch.entry_offsets
        for i in range(branch.num_baskets):
            first, last = max(start, bounds[i]), min(stop, bounds[i + 1])
            if first >= last:
                continue
            basket = branch.basket(i)
            if basket.byte_offsets is None:
                return None
            offsets = basket.byte_offsets.astype(np.int64)  # int32: (k + 1) * size may not fit
            begin = offsets[first - bounds[i] : last - bounds[i]] + interpretation.header_bytes
            has = offsets[first - bounds[i] + 1 : last - bounds[i] + 1] - begin >= (k + 1) * size
            at = begin[has] + k * size
            picked = basket.data[at[:, None] + np.arange(size)].reshape(-1).view(dtype)
            values[first - start : last - start][has] = picked
            valid[first - start : last - start] = has
        return values, valid

    def empty(self, names: Collection[str]) -> dict[str, Any]:
        """From the branches' types alone: uproot reads (and decompresses) a basket even for no entries."""
        out: dict[str, Any] = {}
        for name in names:
            field = self.get(name)
            assert field is not None, name
            branch = field.source
            values = ak.Array(branch.interpretation.awkward_form(branch.file).length_zero_array())
            out[name] = values if field.member is None else values[field.member]
        return out


class RNTupleFields(Tree):
    def __init__(self, name: str, ntuple: Any) -> None:
        self.name = name
        self.entries = int(ntuple.num_entries)
        self.fields = {}
        self.ambiguous = set()
        records = ntuple.field_records
        paths: dict[int, str | None] = {}

        def path(i: int) -> str | None:
            """The field's full name; None inside a collection or variant (not a per-event field)."""
            if i in paths:
                return paths[i]
            record = records[i]
            parent = record.parent_field_id
            found: str | None
            if parent == i:
                found = str(record.field_name)
            elif records[parent].struct_role != uproot.const.RNTupleFieldRole.RECORD:
                found = None
            else:
                base = path(parent)
                if base is None or _ANONYMOUS.fullmatch(record.field_name):
                    found = base  # a base-class record: its members belong to the parent
                else:
                    found = f"{base}.{record.field_name}"
            paths[i] = found
            return found

        fields = ntuple.all_fields
        children: dict[int, list[int]] = {}
        for i, record in enumerate(records):
            full = path(i)
            if full is not None and not _ANONYMOUS.fullmatch(record.field_name):
                self._add(Field(full, fields[i], type_name=str(record.type_name)))
            if record.parent_field_id != i:
                children.setdefault(record.parent_field_id, []).append(i)
        _seed_subfields(fields, children)

    def _read(self, field: Field, start: int, stop: int) -> Any:
        return field.source.array(entry_start=start, entry_stop=stop, library="ak")


def _seed_subfields(fields: list[Any], children: dict[int, list[int]]) -> None:
    """Give every RField its list of subfields, from one pass over the field records.

    uproot works out an RField's subfields when first asked, by a scan of all the RNTuple's field
    records: reading one field of an ATLAS PHYSLITE file (2,401 fields) scans them once per field
    of its subtree, ~0.2 CPU-s for the 21 fields the default map reads. The list is uproot's own
    (`HasFields.fields`: the direct subfields in field-record order, an anonymous one replaced by its
    own subfields), cached where uproot caches it; a version of uproot without that cache
    (`_fields`) just works it out itself again.
    """
    done: dict[int, list[Any]] = {}

    def subfields(i: int) -> list[Any]:
        if i not in done:
            out: list[Any] = []
            for child in children.get(i, ()):
                out.extend(subfields(child) if fields[child].is_anonymous else [fields[child]])
            done[i] = out
        return done[i]

    for i, field in enumerate(fields):
        if getattr(field, "_fields", ()) is None:
            field._fields = subfields(i)


def open_tree(file: Any, name: str) -> Tree:
    """The tree `name` (the highest cycle) of an open uproot file, its fields listed."""
    obj = file[name]
    if isinstance(obj, uproot.behaviors.RNTuple.RNTuple):
        return RNTupleFields(name, obj)
    return TTreeFields(name, obj)
