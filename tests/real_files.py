"""What the real ROOT files of tests/data/root hold, read directly with uproot (not through the producer).

Each file's expected events are built here from the branches named explicitly below, with code
that shares nothing with producer.inputs.root: the tests compare the producer's events (and the
warehouse's rows) with these, event by event and bit by bit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak  # type: ignore[import-untyped]
import pyarrow as pa
import uproot  # type: ignore[import-untyped]

from eventindex.columns import EVENT_SCHEMA, MASK_COLUMNS

DATA = Path(__file__).resolve().parent / "data" / "root"
NANOAOD_MAP = DATA / "nanoaod.map.json"
MASK_BITS = {name: width * 8 for name, width in MASK_COLUMNS}
TOKEN = re.compile(
    r"\[DB=([0-9A-F-]{36})\]\[CNT=([^\]]*)\]\[CLID=([0-9A-F-]{36})\]\[TECH=([0-9A-F]{8})\]"
    r"\[OID=([0-9A-F]{16})-([0-9A-F]{16})\]"
)


@dataclass(frozen=True)
class RealFile:
    """Where each column of one file is, as explored with uproot (tests/data/root/README.md)."""

    name: str
    tree: str
    events: int
    #: column -> branch (or field) holding it, one value per event.
    scalars: dict[str, str]
    #: mask column -> branch of 32-bit words (bit i = bit i % 32 of word i // 32); empty vector = null.
    words: dict[str, str] = field(default_factory=dict)
    #: mask column -> the prefix of its boolean branches: bit i = the i-th of them in sorted order.
    bits: dict[str, str] = field(default_factory=dict)
    #: branch of the xAOD event-type word (bit 0 simulation, 1 testbeam, 2 calibration).
    event_type: str | None = None
    #: branch of the MC weights vector: the weight is element 0.
    weights: str | None = None
    #: TrigConfKeys: an object branch (TTree) or a record of fields (RNTuple), -> smk, l1_psk, hlt_psk.
    keys: str | None = None
    #: (tree, token branch, stream) of the events' own-file POOL tokens.
    tokens: tuple[str, str, str] | None = None
    branch_map: Path | None = None

    @property
    def path(self) -> Path:
        return DATA / self.name


def _xaod_words(prefix: str) -> dict[str, str]:
    names = {
        "l1_tbp": "tbp", "l1_tap": "tap", "l1_tav": "tav",
        "l2_passed_physics": "lvl2PassedPhysics", "l2_passed_through": "lvl2PassedThrough",
        "l2_resurrected": "lvl2Resurrected", "hlt_passed_physics": "efPassedPhysics",
        "hlt_passed_through": "efPassedThrough", "hlt_resurrected": "efResurrected",
    }  # fmt: skip
    return {column: prefix + member for column, member in names.items()}


def _info(prefix: str, members: dict[str, str]) -> dict[str, str]:
    return {column: prefix + member for column, member in members.items()}


_EVENT_INFO = {
    "run_number": "runNumber",
    "event_number": "eventNumber",
    "lumi_block": "lumiBlock",
    "bcid": "bcid",
    "timestamp": "timeStamp",
    "timestamp_ns_offset": "timeStampNSOffset",
}

FILES = {
    "run2-ttree": RealFile(
        name="uproot-issue-798.root",
        tree="CollectionTree",
        events=40,
        scalars={
            **_info("EventInfoAux.", {**_EVENT_INFO, "extended_level1_id": "extendedLevel1ID"}),
            "mc_channel_number": "EventInfoAuxDyn.mcChannelNumber",
        },
        words=_xaod_words("xTrigDecisionAux."),
        event_type="EventInfoAux.eventTypeBitmask",
        weights="EventInfoAuxDyn.mcEventWeights",
        keys="TrigConfKeys",
    ),
    "run3-ttree": RealFile(
        name="uproot-issue-951.root",
        tree="CollectionTree",
        events=50,
        scalars=_info("EventInfoAuxDyn.", {**_EVENT_INFO, "mc_channel_number": "mcChannelNumber"}),
        words=_xaod_words("xTrigDecisionAux."),
        event_type="EventInfoAuxDyn.eventTypeBitmask",
        weights="EventInfoAuxDyn.mcEventWeights",
        keys="TrigConfKeys",
        tokens=("POOLCollectionTree", "Token", "StreamDAOD_PHYSLITE"),
    ),
    "physlite-rntuple": RealFile(
        name="uproot-physlite-rntuple_v1-0-0-0.root",
        tree="EventData",
        events=100,
        scalars=_info("EventInfoAuxDyn:", {**_EVENT_INFO, "mc_channel_number": "mcChannelNumber"}),
        words=_xaod_words("xTrigDecisionAux:."),
        event_type="EventInfoAuxDyn:eventTypeBitmask",
        weights="EventInfoAuxDyn:mcEventWeights",
        keys="TrigConfKeys",
        tokens=("EventTag", "Token", "StreamDAOD_PHYSLITE"),
    ),
    "cms-nanoaod": RealFile(
        name="nanoAOD_2015_CMS_Open_Data_ttbar.root",
        tree="Events",
        events=200,
        scalars={"run_number": "run", "event_number": "event", "lumi_block": "luminosityBlock"},
        bits={"hlt_passed_physics": "HLT_"},
        weights="genWeight",
        branch_map=NANOAOD_MAP,
    ),
}


def _array(tree: Any, name: str) -> Any:
    return tree[name].array(library="ak")


def guid_of(path: Path) -> str:
    """The FID in the highest cycle of the POOL ##Params tree."""
    with uproot.open(path) as file:
        cycles = sorted(int(key.split(";")[1]) for key in file.keys(cycle=True) if key.startswith("##Params;"))
        for value in file[f"##Params;{cycles[-1]}"]["db_string"].array(library="np"):
            match = re.search(r"\[NAME=FID\]\[VALUE=([0-9A-Fa-f-]{36})\]", str(value))
            if match:
                return match.group(1).upper()
    raise AssertionError(f"{path}: no FID")


def bit_names(real: RealFile, column: str) -> list[str]:
    """The boolean branches behind a mask built from them, in bit order."""
    with uproot.open(real.path) as file:
        return sorted(file[real.tree].keys(filter_name=real.bits[column] + "*"))


def _mask_bytes(rows: Sequence[list[int] | None], bits: int) -> list[bytes | None]:
    """Per event: the set bit positions -> a bitmap of `bits` bits (bit i = bit i % 8 of byte i // 8); None = null."""
    out: list[bytes | None] = []
    for row in rows:
        if row is None:
            out.append(None)
            continue
        data = bytearray(bits // 8)
        for position in row:
            data[position // 8] |= 1 << (position % 8)
        out.append(bytes(data))
    return out


def set_bits_of_words(words: list[int]) -> list[int] | None:
    """A vector of 32-bit words -> its set bit positions (bit i is bit i % 32 of word i // 32); [] -> None."""
    if not words:
        return None
    return [32 * w + b for w, word in enumerate(words) for b in range(32) if word >> b & 1]


_EXPECTED: dict[str, dict[str, list[Any]]] = {}


def expected_columns(real: RealFile) -> dict[str, list[Any]]:
    """column -> one value per event (None = null), straight from the file (read once per test session)."""
    if real.name not in _EXPECTED:
        _EXPECTED[real.name] = _read_expected(real)
    return _EXPECTED[real.name]


def _read_expected(real: RealFile) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {name: [None] * real.events for name in EVENT_SCHEMA.names}
    with uproot.open(real.path) as file:
        tree = file[real.tree]
        for column, name in real.scalars.items():
            columns[column] = _array(tree, name).tolist()
        for column, name in real.words.items():
            columns[column] = _mask_bytes(
                [set_bits_of_words(words) for words in _array(tree, name).tolist()], MASK_BITS[column]
            )
        for column in real.bits:
            names = bit_names(real, column)
            arrays = tree.arrays(names, library="np")
            values = [arrays[name].tolist() for name in names]
            rows = [[i for i, fired in enumerate(event) if fired] for event in zip(*values, strict=True)]
            columns[column] = _mask_bytes(rows, MASK_BITS[column])
        if real.event_type is not None:
            words = _array(tree, real.event_type).tolist()
            columns["is_simulation"] = [bool(w & 1) for w in words]
            columns["is_testbeam"] = [bool(w & 2) for w in words]
            columns["is_calibration"] = [bool(w & 4) for w in words]
        if real.weights is not None:
            weights = _array(tree, real.weights)
            columns["mc_event_weight"] = (
                [w[0] if len(w) else None for w in weights.tolist()] if weights.ndim == 2 else weights.tolist()
            )
        if real.keys is not None:
            if isinstance(tree, uproot.behaviors.RNTuple.RNTuple):
                keys = {m: _array(tree, f"{real.keys}.{m}").tolist() for m in ("m_smk", "m_l1psk", "m_hltpsk")}
            else:
                records = _array(tree, real.keys)
                keys = {m: ak.to_list(records[m]) for m in ("m_smk", "m_l1psk", "m_hltpsk")}
            columns["smk"], columns["l1_psk"], columns["hlt_psk"] = keys["m_smk"], keys["m_l1psk"], keys["m_hltpsk"]
        guid = guid_of(real.path) if real.branch_map is None else _content_guid(real.path)
        columns["input_guid"] = [guid] * real.events
        if real.tokens is not None:
            tree_name, branch, stream = real.tokens
            refs = []
            for token in _array(file[tree_name], branch).tolist():
                match = TOKEN.fullmatch(token)
                assert match, token
                db, cnt, clid, tech, oid1, oid2 = match.groups()
                refs.append(
                    [
                        {
                            "stream": stream,
                            "guid": db,
                            "container": cnt,
                            "clid": clid,
                            "tech": int(tech, 16),
                            "oid1": int(oid1, 16),
                            "oid2": int(oid2, 16),
                        }
                    ]
                )
            columns["provenance"] = refs
    return columns


def _content_guid(path: Path) -> str:
    """A file that names no GUID: UUIDv5(NAMESPACE_URL, "sha256:" + its hex digest), uppercase (docs/inputs.md)."""
    import hashlib
    import uuid

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sha256:" + digest)).upper()


def expected_table(real: RealFile) -> pa.Table:
    """The file's expected events as a table of the warehouse's event columns."""
    columns = expected_columns(real)
    return pa.table({f.name: pa.array(columns[f.name], f.type) for f in EVENT_SCHEMA}, schema=EVENT_SCHEMA)
