"""Which tree and which fields of a ROOT file hold the event columns: the default, and `--branch-map FILE`.

The default map (DEFAULT_TREES, COLLECTION_TREES, DEFAULT_BRANCHES) reads, with no option:

- ATLAS xAOD files: the `CollectionTree` TTree with EventInfo split as `EventInfoAux.*` (Run 2) or
  `EventInfoAuxDyn.*` (Run 3), or the `EventData` RNTuple (`EventInfoAuxDyn:*`, `xTrigDecisionAux:.*`);
  the trigger masks from `xTrigDecisionAux`, the keys from `TrigConfKeys` (or `xTrigDecisionAux.smk`);
- POOL collection trees (`POOLCollectionTree`, RNTuple `EventTag`): `RunNumber`, `EventNumber`, ...;
- flat ntuples spelling the EventIndex fields (`RunNumber`/`runNumber`/`run_number`, ...).

Every candidate is a field's full name (producer.inputs.root_tree): a candidate never matches a
nested field by its short name. For each column the first candidate the tree has is read; a
column none of whose candidates is present is null (absent). No candidate is a substitute for
its column: `RandomRunNumber` is not a run number, `ConditionsRun` neither.

A branch-map file is JSON; every key is optional:

    {
      "tree": "Events",
      "collection": null,
      "branches": {
        "run_number": "run",
        "event_number": ["EvtNum", "event"],
        "mc_event_weight": "EventInfoAuxDyn.mcEventWeights[0]",
        "hlt_passed_physics": {"bits": "HLT_*"},
        "bcid": null
      },
      "guid": "0123ABCD-...",          or {"branch": "FileGuid"}, or {"object": "Guid"}
      "provenance": [{"stream": "StreamAOD", "token": "Token"}]
    }

- `tree` replaces the tree candidates; the named tree must exist.
- `collection` names the POOL collection tree read for the events' own tokens (and as the
  fallback when the tree's EventInfo is unreadable), or null for none.
- `branches` overrides the candidates of the columns it names (the others keep the defaults): a
  string names the one field to read, which must exist; a list gives candidates in order (none
  present: the column is null); null means "do not read this column". `NAME[k]` reads element k
  of a vector field (null for an event whose vector is shorter). A trigger-mask column may be
  `{"bits": "GLOB"}` (the boolean fields matching the glob, in sorted order) or
  `{"bits": [NAME, ...]}` (in the listed order): bit i of the mask is the i-th field. Keys are the
  schema's column names, except `provenance` and `input_guid`, plus `event_type_bitmask` (the xAOD
  EventInfo word whose bits 0, 1, 2 are simulation, testbeam, calibration; used for a flag column
  that no field of its own gives).
- `guid` names the file's GUID: literally, as the first entry of a string field, or as a
  TObjString/TNamed (its title) stored under that key in the file. Without it the reader looks
  for a POOL `##Params` tree (`[NAME=FID][VALUE=<GUID>]`, highest cycle), then derives the GUID
  from the bytes.
- `provenance` lists string fields of the tree holding POOL tokens, one reference per entry in
  this order (an empty token: no reference of that stream for the event). It replaces the
  collection tree (its tokens and the fallback); giving both is an error.

A branch-map file that is not valid JSON or not of this shape is a ConfigError (a bad option);
a tree or a named field that the ROOT file lacks is an InputError (a bad input).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from eventindex.columns import MASK_COLUMNS
from eventindex.errors import ConfigError
from producer.inputs.common import GUID_PATTERN

#: Event trees tried in order. A file with none of them reads its collection tree, else its only tree.
DEFAULT_TREES: tuple[str, ...] = ("EventIndex", "EventInfo", "CollectionTree", "EventData")
#: POOL collection trees (TTree, RNTuple) tried in order: the events' tokens, and the EventInfo fallback.
COLLECTION_TREES: tuple[str, ...] = ("POOLCollectionTree", "EventTag")
#: The token field of a POOL collection: a reference to the event in its own file.
COLLECTION_TOKEN = "Token"
#: A collection's (run, event) fields, checked against the event tree's entry by entry.
COLLECTION_KEYS: tuple[str, str] = ("RunNumber", "EventNumber")

#: Not a column: the xAOD EventInfo event-type word, a source for the three flags.
EVENT_TYPE_BITMASK = "event_type_bitmask"
#: Bits of the event-type word (xAOD::EventInfo::EventType).
EVENT_TYPE_BITS = {"is_simulation": 1, "is_testbeam": 2, "is_calibration": 4}
MASK_NAMES = frozenset(name for name, _ in MASK_COLUMNS)

_ELEMENT = re.compile(r"(?P<name>.+)\[(?P<index>\d+)\]")
#: The largest element index `NAME[k]` may name: a ROOT vector's length is a 32-bit integer.
MAX_ELEMENT = 2**31 - 2


def parse_ref(text: str) -> tuple[str, int | None]:
    """`NAME` -> (NAME, None); `NAME[k]` -> (NAME, k): element k of a vector field."""
    match = _ELEMENT.fullmatch(text)
    if match is None:
        return text, None
    return match.group("name"), int(match.group("index"))


def _xaod(member: str) -> tuple[str, ...]:
    """An xAOD EventInfo member as the four layouts name it: TTree Run 2, Run 3; RNTuple static, dynamic."""
    return (
        f"EventInfoAux.{member}",
        f"EventInfoAuxDyn.{member}",
        f"EventInfoAux:.{member}",
        f"EventInfoAuxDyn:{member}",
    )


def _decision(member: str) -> tuple[str, ...]:
    """An xAOD TrigDecision member: TTree, RNTuple."""
    return (f"xTrigDecisionAux.{member}", f"xTrigDecisionAux:.{member}")


def _spellings(column: str, *names: str) -> tuple[str, ...]:
    return (*names, column)


#: column -> field names tried in order (the column's own name is always the last candidate).
DEFAULT_BRANCHES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "run_number": _spellings("run_number", "RunNumber", "runNumber", *_xaod("runNumber")),
        "event_number": _spellings("event_number", "EventNumber", "eventNumber", *_xaod("eventNumber")),
        "lumi_block": _spellings("lumi_block", "LumiBlock", "lumiBlock", "LumiBlockN", *_xaod("lumiBlock")),
        "bcid": _spellings("bcid", "BCID", "BunchId", *_xaod("bcid")),
        "timestamp": _spellings("timestamp", "TimeStamp", "timeStamp", "EventTime", *_xaod("timeStamp")),
        "timestamp_ns_offset": _spellings(
            "timestamp_ns_offset",
            "TimeStampNSOffset",
            "timeStampNSOffset",
            "EventTimeNanoSec",
            *_xaod("timeStampNSOffset"),
        ),
        "extended_level1_id": _spellings(
            "extended_level1_id", "ExtendedLevel1ID", "extendedLevel1ID", *_xaod("extendedLevel1ID")
        ),
        "is_simulation": _spellings("is_simulation", "IsSimulation", "isSimulation"),
        "is_calibration": _spellings("is_calibration", "IsCalibration", "isCalibration"),
        "is_testbeam": _spellings("is_testbeam", "IsTestBeam", "isTestBeam"),
        EVENT_TYPE_BITMASK: _spellings(
            EVENT_TYPE_BITMASK, "EventTypeBitmask", "eventTypeBitmask", *_xaod("eventTypeBitmask")
        ),
        "mc_channel_number": _spellings(
            "mc_channel_number", "MCChannelNumber", "mcChannelNumber", "McChannel", *_xaod("mcChannelNumber")
        ),
        "mc_event_weight": _spellings(
            "mc_event_weight",
            "MCEventWeight",
            "mcEventWeight",
            "EventWeight",
            *(f"{name}[0]" for name in _xaod("mcEventWeights")),
        ),
        "smk": _spellings("smk", "SMK", "TrigConfKeys.m_smk", *_decision("smk")),
        "hlt_psk": _spellings("hlt_psk", "HLTPSK", "hltPSK", "TrigConfKeys.m_hltpsk"),
        "l1_psk": _spellings("l1_psk", "L1PSK", "l1PSK", "TrigConfKeys.m_l1psk"),
        "l1_tbp": _spellings("l1_tbp", "L1PassedTrigMaskTBP", "L1_TBP", *_decision("tbp")),
        "l1_tap": _spellings("l1_tap", "L1PassedTrigMaskTAP", "L1_TAP", *_decision("tap")),
        "l1_tav": _spellings("l1_tav", "L1PassedTrigMaskTAV", "L1_TAV", *_decision("tav")),
        "l2_passed_physics": _spellings(
            "l2_passed_physics", "L2PassedTrigMask", "L2PassedPhysics", *_decision("lvl2PassedPhysics")
        ),
        "l2_passed_through": _spellings("l2_passed_through", "L2PassedThrough", *_decision("lvl2PassedThrough")),
        "l2_resurrected": _spellings("l2_resurrected", "L2Resurrected", *_decision("lvl2Resurrected")),
        "hlt_passed_physics": _spellings(
            "hlt_passed_physics",
            "HLTPassedTrigMask",
            "EFPassedTrigMask",
            "HLTPassedPhysics",
            "EFPassedPhysics",
            *_decision("efPassedPhysics"),
        ),
        "hlt_passed_through": _spellings(
            "hlt_passed_through", "HLTPassedThrough", "EFPassedThrough", *_decision("efPassedThrough")
        ),
        "hlt_resurrected": _spellings(
            "hlt_resurrected", "HLTResurrected", "EFResurrected", *_decision("efResurrected")
        ),
    }
)
MAPPABLE = frozenset(DEFAULT_BRANCHES)

MAP_KEYS = frozenset({"tree", "collection", "branches", "guid", "provenance"})


@dataclass(frozen=True)
class TokenBranch:
    """A string field of POOL tokens: one provenance reference of `stream` per entry."""

    stream: str
    branch: str


@dataclass(frozen=True)
class BitsSpec:
    """A trigger mask built from boolean fields: bit i is the i-th name (a glob's matches sorted)."""

    names: tuple[str, ...] = ()
    pattern: str | None = None

    def __str__(self) -> str:
        return repr(self.pattern) if self.pattern is not None else ", ".join(self.names)


@dataclass(frozen=True)
class BranchMap:
    trees: tuple[str, ...] = DEFAULT_TREES
    #: True when the map named the tree: it must exist, no fallback.
    tree_named: bool = False
    #: Collection trees tried for the events' tokens and as the EventInfo fallback (empty: none).
    collections: tuple[str, ...] = COLLECTION_TREES
    #: column -> candidate fields (`NAME` or `NAME[k]`), first present wins (an empty tuple: not read).
    branches: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_BRANCHES)
    #: mask column -> the boolean fields its bits come from (replaces `branches` for that column).
    bits: Mapping[str, BitsSpec] = field(default_factory=lambda: MappingProxyType({}))
    #: Columns whose one field the map named: it must exist.
    required: frozenset[str] = frozenset()
    guid: str | None = None
    guid_branch: str | None = None
    guid_object: str | None = None
    provenance: tuple[TokenBranch, ...] = field(default=())

    @classmethod
    def from_file(cls, path: Path | None) -> BranchMap:
        """The default map, overridden by the JSON file at `path` when given."""
        if path is None:
            return cls()
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"--branch-map {path}: cannot read it ({exc.strerror or exc})") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--branch-map {path}: not valid JSON ({exc})") from None
        return cls.from_dict(spec, f"--branch-map {path}")

    @classmethod
    def from_dict(cls, spec: object, where: str) -> BranchMap:
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        unknown = sorted(set(spec) - MAP_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected {', '.join(sorted(MAP_KEYS))})")
        trees, tree_named = DEFAULT_TREES, False
        if "tree" in spec:
            if not isinstance(spec["tree"], str) or not spec["tree"]:
                raise ConfigError(f"{where}: 'tree' must be a tree name")
            trees, tree_named = (spec["tree"],), True
        collections = COLLECTION_TREES
        if "collection" in spec:
            value = spec["collection"]
            if value is not None and not (isinstance(value, str) and value):
                raise ConfigError(f"{where}: 'collection' must be a tree name or null")
            collections = () if value is None else (value,)
        branches, bits, required = _branches(spec.get("branches", {}), where)
        guid = guid_branch = guid_object = None
        if "guid" in spec:
            value = spec["guid"]
            if isinstance(value, str):
                if not GUID_PATTERN.fullmatch(value):
                    raise ConfigError(f"{where}: 'guid' {value!r} is not a GUID (8-4-4-4-12 hex digits)")
                guid = value.upper()
            elif isinstance(value, dict) and len(value) == 1 and isinstance(value.get("branch"), str):
                guid_branch = value["branch"]
            elif isinstance(value, dict) and len(value) == 1 and isinstance(value.get("object"), str):
                guid_object = value["object"]
            else:
                raise ConfigError(f'{where}: \'guid\' must be a GUID, {{"branch": NAME}} or {{"object": KEY}}')
        refs = spec.get("provenance", [])
        if not isinstance(refs, list):
            raise ConfigError(f'{where}: \'provenance\' must be a list of {{"stream": ..., "token": BRANCH}}')
        provenance = []
        for ref in refs:
            if not (
                isinstance(ref, dict)
                and set(ref) == {"stream", "token"}
                and all(isinstance(v, str) and v for v in ref.values())
            ):
                raise ConfigError(f'{where}: each provenance entry must be {{"stream": NAME, "token": BRANCH}}')
            provenance.append(TokenBranch(ref["stream"], ref["token"]))
        if provenance:
            if spec.get("collection") is not None:
                raise ConfigError(f"{where}: 'provenance' and 'collection' are two sources of tokens: give one")
            collections = ()  # the map's tokens replace the collection's
        return cls(
            trees=trees,
            tree_named=tree_named,
            collections=collections,
            branches=MappingProxyType(branches),
            bits=MappingProxyType(bits),
            required=frozenset(required),
            guid=guid,
            guid_branch=guid_branch,
            guid_object=guid_object,
            provenance=tuple(provenance),
        )


def _branches(overrides: object, where: str) -> tuple[dict[str, tuple[str, ...]], dict[str, BitsSpec], set[str]]:
    """The `branches` object -> (candidates per column, bit specs per mask column, required columns)."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: 'branches' must be an object of column: branch")
    branches = dict(DEFAULT_BRANCHES)
    bits: dict[str, BitsSpec] = {}
    required: set[str] = set()
    for column, value in overrides.items():
        if column not in MAPPABLE:
            raise ConfigError(f"{where}: 'branches' names {column!r}, which is not a mappable column")
        what = f"{where}: branches.{column}"
        if isinstance(value, dict):
            if column not in MASK_NAMES:
                raise ConfigError(f'{what}: {{"bits": ...}} builds a trigger mask; {column} is not one')
            bits[column] = _bits(value.get("bits") if set(value) == {"bits"} else None, what)
            branches[column] = ()
            required.add(column)
            continue
        if value is None:
            names: tuple[str, ...] = ()
        elif isinstance(value, str) and value:
            names = (value,)
            required.add(column)
        elif isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
            names = tuple(value)
        else:
            raise ConfigError(f'{what} must be a branch name, a list of them, null, or {{"bits": ...}}')
        if column in MASK_NAMES and any(parse_ref(name)[1] is not None for name in names):
            raise ConfigError(f"{what}: a trigger mask is a whole vector field, not an element NAME[k]")
        for name in names:
            element = parse_ref(name)[1]
            if element is not None and element > MAX_ELEMENT:
                raise ConfigError(
                    f"{what}: {name[:80]!r}: element index {str(element)[:30]} is too large "
                    f"(a vector holds at most {MAX_ELEMENT + 1} elements: 0..{MAX_ELEMENT})"
                )
        branches[column] = names
    return branches, bits, required


def _bits(value: object, what: str) -> BitsSpec:
    if isinstance(value, str) and value:
        return BitsSpec(pattern=value)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        if len(set(value)) != len(value):
            raise ConfigError(f"{what}: a bits list names a field twice")
        return BitsSpec(names=tuple(value))
    raise ConfigError(f'{what} must be {{"bits": "GLOB"}} or {{"bits": [NAME, ...]}}')
