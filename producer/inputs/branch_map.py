"""Which TTree and which branches of a ROOT file hold the event columns: the default, and `--branch-map FILE`.

The default (DEFAULT_TREES, DEFAULT_BRANCHES) knows the usual spellings of ATLAS EventInfo-like
ntuples (`RunNumber`/`runNumber`, ..., the xAOD `EventInfoAux.*` names) and the schema's own
column names. For each column the first candidate present in the tree is read; a column none of
whose candidates is present gets its default (producer.inputs.common).

A branch-map file is JSON; every key is optional:

    {
      "tree": "MyTree",
      "branches": {"run_number": "Run", "event_number": ["EvtNum", "EventNumber"], "bcid": null},
      "guid": "0123ABCD-...",          or {"branch": "FileGuid"}, or {"object": "Guid"}
      "provenance": [{"stream": "StreamAOD", "token": "Token"}, {"stream": "StreamRAW", "token": "TokenRAW"}]
    }

- `tree` replaces the tree candidates; the named tree must exist.
- `branches` overrides the candidates of the columns it names (the others keep the defaults): a
  string names the one branch to read, which must exist; a list gives candidates in order (none
  present: the column gets its default); null means "do not read this column". Keys are the
  schema's column names, except `provenance` and `input_guid`, plus `event_type_bitmask` (the xAOD
  EventInfo word whose bits 0, 1, 2 are simulation, testbeam, calibration; used for a flag column
  that no branch of its own gives).
- `guid` names the file's GUID: literally, as the first entry of a string branch, or as a
  TObjString/TNamed (its title) stored under that key in the file. Without it the reader looks
  for a POOL `##Params` tree (`[NAME=FID][VALUE=<GUID>]`), then derives the GUID from the bytes.
- `provenance` lists string branches holding POOL tokens
  `[DB=<GUID>][CNT=<container>][CLID=<clid>][TECH=<hex>][OID=<hex>-<hex>]`, one reference per
  entry in this order (an empty token: no reference of that stream for the event). Without it
  the provenance of every event is an empty list.

A branch-map file that is not valid JSON or not of this shape is a ConfigError (a bad option);
a tree or a named branch that the ROOT file lacks is an InputError (a bad input).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from eventindex.errors import ConfigError
from producer.inputs.common import GUID_PATTERN

#: Trees tried in order. A file with none of them but exactly one tree uses that tree.
DEFAULT_TREES: tuple[str, ...] = ("EventIndex", "EventInfo", "CollectionTree")

#: Not a column: the xAOD EventInfo event-type word, a source for the three flags.
EVENT_TYPE_BITMASK = "event_type_bitmask"
#: Bits of the event-type word (xAOD::EventInfo::EventType).
EVENT_TYPE_BITS = {"is_simulation": 1, "is_testbeam": 2, "is_calibration": 4}


def _spellings(column: str, *names: str) -> tuple[str, ...]:
    return (*names, column)


#: column -> branch names tried in order (the column's own name is always the last candidate).
DEFAULT_BRANCHES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "run_number": _spellings("run_number", "RunNumber", "runNumber", "EventInfoAux.runNumber"),
        "event_number": _spellings("event_number", "EventNumber", "eventNumber", "EventInfoAux.eventNumber"),
        "lumi_block": _spellings("lumi_block", "LumiBlock", "lumiBlock", "LumiBlockN", "EventInfoAux.lumiBlock"),
        "bcid": _spellings("bcid", "BCID", "BunchId", "EventInfoAux.bcid"),
        "timestamp": _spellings("timestamp", "TimeStamp", "timeStamp", "EventInfoAux.timeStamp"),
        "timestamp_ns_offset": _spellings(
            "timestamp_ns_offset", "TimeStampNSOffset", "timeStampNSOffset", "EventInfoAux.timeStampNSOffset"
        ),
        "extended_level1_id": _spellings(
            "extended_level1_id", "ExtendedLevel1ID", "extendedLevel1ID", "EventInfoAux.extendedLevel1ID"
        ),
        "is_simulation": _spellings("is_simulation", "IsSimulation", "isSimulation"),
        "is_calibration": _spellings("is_calibration", "IsCalibration", "isCalibration"),
        "is_testbeam": _spellings("is_testbeam", "IsTestBeam", "isTestBeam"),
        EVENT_TYPE_BITMASK: _spellings(
            EVENT_TYPE_BITMASK, "EventTypeBitmask", "eventTypeBitmask", "EventInfoAux.eventTypeBitmask"
        ),
        "mc_channel_number": _spellings(
            "mc_channel_number", "MCChannelNumber", "mcChannelNumber", "EventInfoAux.mcChannelNumber"
        ),
        "mc_event_weight": _spellings("mc_event_weight", "MCEventWeight", "mcEventWeight"),
        "smk": _spellings("smk", "SMK"),
        "hlt_psk": _spellings("hlt_psk", "HLTPSK", "hltPSK"),
        "l1_psk": _spellings("l1_psk", "L1PSK", "l1PSK"),
        "l1_tbp": _spellings("l1_tbp", "L1PassedTrigMaskTBP", "L1_TBP"),
        "l1_tap": _spellings("l1_tap", "L1PassedTrigMaskTAP", "L1_TAP"),
        "l1_tav": _spellings("l1_tav", "L1PassedTrigMaskTAV", "L1_TAV"),
        "l2_passed_physics": _spellings("l2_passed_physics", "L2PassedTrigMask", "L2PassedPhysics"),
        "l2_passed_through": _spellings("l2_passed_through", "L2PassedThrough"),
        "l2_resurrected": _spellings("l2_resurrected", "L2Resurrected"),
        "hlt_passed_physics": _spellings(
            "hlt_passed_physics", "HLTPassedTrigMask", "EFPassedTrigMask", "HLTPassedPhysics", "EFPassedPhysics"
        ),
        "hlt_passed_through": _spellings("hlt_passed_through", "HLTPassedThrough", "EFPassedThrough"),
        "hlt_resurrected": _spellings("hlt_resurrected", "HLTResurrected", "EFResurrected"),
    }
)
MAPPABLE = frozenset(DEFAULT_BRANCHES)

MAP_KEYS = frozenset({"tree", "branches", "guid", "provenance"})


@dataclass(frozen=True)
class TokenBranch:
    """A string branch of POOL tokens: one provenance reference of `stream` per entry."""

    stream: str
    branch: str


@dataclass(frozen=True)
class BranchMap:
    trees: tuple[str, ...] = DEFAULT_TREES
    #: True when the map named the tree: it must exist, no fallback.
    tree_named: bool = False
    #: column -> candidate branches, first present wins (an empty tuple: not read).
    branches: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_BRANCHES)
    #: Columns whose one branch the map named: it must exist.
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
        branches = dict(DEFAULT_BRANCHES)
        required = set()
        overrides = spec.get("branches", {})
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}: 'branches' must be an object of column: branch")
        for column, value in overrides.items():
            if column not in MAPPABLE:
                raise ConfigError(f"{where}: 'branches' names {column!r}, which is not a mappable column")
            if value is None:
                branches[column] = ()
            elif isinstance(value, str) and value:
                branches[column] = (value,)
                required.add(column)
            elif isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
                branches[column] = tuple(value)
            else:
                raise ConfigError(f"{where}: branches.{column} must be a branch name, a list of them, or null")
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
        return cls(
            trees=trees,
            tree_named=tree_named,
            branches=MappingProxyType(branches),
            required=frozenset(required),
            guid=guid,
            guid_branch=guid_branch,
            guid_object=guid_object,
            provenance=tuple(provenance),
        )
