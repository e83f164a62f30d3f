"""ROOT inputs: TTrees (and RNTuples) written with uproot from synthetic events, read back column by column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import uproot  # type: ignore[import-untyped]

from eventindex.columns import EVENT_SCHEMA, MASK_COLUMNS, PROVENANCE_TYPE
from eventindex.errors import ConfigError, InputError
from producer.inputs import open_input
from producer.inputs.branch_map import DEFAULT_BRANCHES, EVENT_TYPE_BITMASK, MAPPABLE
from producer.inputs.common import GUID_PATTERN
from producer.inputs.root import RootInput
from tests.helpers import one_line, read_all

ROOT = Path(__file__).resolve().parents[2]

#: The branch names these tests write: the first default spelling of each column.
NAMES = {column: candidates[0] for column, candidates in DEFAULT_BRANCHES.items()}
TOKEN_STREAMS = ("StreamAOD", "StreamESD", "StreamRAW")
TOKEN_MAP = [{"stream": s, "token": f"Token{s[6:]}"} for s in TOKEN_STREAMS]


def mask_matrix(column: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray:
    values = column.to_pylist()
    return np.frombuffer(b"".join(v or bytes(width) for v in values), dtype=np.uint8).reshape(len(values), width)


def tokens(events: pa.Table) -> dict[str, np.ndarray]:
    """The POOL token strings of each event's references, one string branch per stream."""
    out: dict[str, list[str]] = {f"Token{s[6:]}": [] for s in TOKEN_STREAMS}
    for refs in events.column("provenance").to_pylist():
        by_stream = {ref["stream"]: ref for ref in refs}
        for stream in TOKEN_STREAMS:
            ref = by_stream.get(stream)
            out[f"Token{stream[6:]}"].append(
                ""
                if ref is None
                else f"[DB={ref['guid']}][CNT={ref['container']}][CLID={ref['clid']}][TECH={ref['tech']:08X}]"
                f"[OID={ref['oid1']:016X}-{ref['oid2']:016X}]"
            )
    return {name: np.array(values, dtype=object) for name, values in out.items()}


def branches(events: pa.Table, names: dict[str, str] = NAMES, *, with_tokens: bool = False) -> dict[str, np.ndarray]:
    """The event columns as ROOT branch data: masks as uint32 words (bit 0 first); a column null for every
    event is not written; ROOT has no per-entry null, so a column null for some events holds 0 there."""
    data: dict[str, np.ndarray] = {}
    for field in EVENT_SCHEMA:
        column = events.column(field.name)
        if field.name in dict(MASK_COLUMNS):
            if column.null_count == len(column):
                continue
            width = dict(MASK_COLUMNS)[field.name]
            data[names[field.name]] = mask_matrix(column, width).view("<u4")
        elif field.name in ("provenance", "input_guid") or column.null_count == len(column):
            continue
        else:
            filled = column.fill_null(0) if column.null_count else column
            data[names[field.name]] = filled.to_numpy()
    if with_tokens:
        data.update(tokens(events))
    return data


def write_root(
    path: Path, data: dict[str, np.ndarray], *, tree: str = "EventIndex", step: int = 500, **extra: object
) -> Path:
    """A TTree written in several baskets (one per `step` entries), plus any extra objects."""
    n = len(next(iter(data.values())))
    with uproot.recreate(path) as file:
        file.mktree(tree, {name: values[:step] for name, values in data.items()})
        for start in range(step, n, step):
            file[tree].extend({name: values[start : start + step] for name, values in data.items()})
        for key, value in extra.items():
            file[key] = value
    return path


def expected(events: pa.Table, guid: str, *, provenance: bool = False) -> pa.Table:
    """What the ROOT format carries of `events`: 0 for the null extended_level1_ids, the file's GUID;
    without token branches, no provenance (null)."""
    table = events.set_column(
        EVENT_SCHEMA.get_field_index("extended_level1_id"),
        EVENT_SCHEMA.field("extended_level1_id"),
        events.column("extended_level1_id").fill_null(0),
    )
    table = table.set_column(
        EVENT_SCHEMA.get_field_index("input_guid"), EVENT_SCHEMA.field("input_guid"), pa.array([guid] * len(events))
    )
    if not provenance:
        absent = pa.nulls(len(events), PROVENANCE_TYPE)
        table = table.set_column(EVENT_SCHEMA.get_field_index("provenance"), EVENT_SCHEMA.field("provenance"), absent)
    return table


def assert_same_columns(actual: pa.Table, wanted: pa.Table) -> None:
    assert actual.schema.equals(wanted.schema)
    for name in wanted.column_names:
        assert actual.column(name).equals(wanted.column(name)), name


# ---------------------------------------------------------------- round trips


def test_default_map_round_trips_every_column(tmp_path: Path, events: pa.Table) -> None:
    path = write_root(tmp_path / "ev.root", branches(events))
    source = open_input(str(path))
    assert isinstance(source, RootInput)
    assert source.tree_name == "EventIndex" and source.declared_events == len(events)
    assert GUID_PATTERN.fullmatch(source.guid) and source.guid == source.guid.upper()
    assert_same_columns(read_all(source), expected(events, source.guid))
    # l2 masks have no branch: null, as in the synthetic events.
    assert read_all(source).column("l2_passed_physics").null_count == len(events)


def test_batches_are_bounded_and_in_order(tmp_path: Path, events: pa.Table) -> None:
    source = RootInput(write_root(tmp_path / "ev.root", branches(events)), None)
    tables = list(source.batches(300))
    assert [t.num_rows for t in tables] == [300] * 6 + [200]
    assert_same_columns(pa.concat_tables(tables).combine_chunks(), expected(events, source.guid))


def test_content_guid_is_deterministic(tmp_path: Path, events: pa.Table) -> None:
    a = write_root(tmp_path / "a.root", branches(events))
    b = tmp_path / "b.root"
    b.write_bytes(a.read_bytes())
    c = write_root(tmp_path / "c.root", branches(events.slice(0, 10)))
    assert RootInput(a, None).guid == RootInput(b, None).guid != RootInput(c, None).guid


def test_branch_map_overrides_tree_branches_guid_and_provenance(tmp_path: Path, events: pa.Table) -> None:
    names = {**NAMES, "run_number": "Run", "event_number": "Evt", "bcid": "Bunch", "l1_tbp": "TBP"}
    data = branches(events, names, with_tokens=True)
    data["FileGuid"] = np.array(["0a1b2c3d-0000-4000-8000-00000000abcd"] * len(events), dtype=object)
    data["RunNumber"] = np.zeros(len(events), dtype=np.uint32)  # a decoy the map must not read
    path = write_root(tmp_path / "ev.root", data, tree="Events")
    branch_map = tmp_path / "map.json"
    branch_map.write_text(
        json.dumps(
            {
                "tree": "Events",
                "branches": {"run_number": "Run", "event_number": ["Nope", "Evt"], "bcid": "Bunch", "l1_tbp": "TBP"},
                "guid": {"branch": "FileGuid"},
                "provenance": TOKEN_MAP,
            }
        )
    )
    source = open_input(str(path), branch_map)
    assert source.guid == "0A1B2C3D-0000-4000-8000-00000000ABCD"
    assert_same_columns(read_all(source), expected(events, source.guid, provenance=True))


def test_branch_map_null_skips_a_column(tmp_path: Path, events: pa.Table) -> None:
    path = write_root(tmp_path / "ev.root", branches(events))
    branch_map = tmp_path / "map.json"
    branch_map.write_text(json.dumps({"branches": {"bcid": None, "l1_tav": None}}))
    table = read_all(RootInput(path, branch_map))
    assert table.column("bcid").null_count == len(events)  # absent: null, never 0
    assert table.column("l1_tav").null_count == len(events)


def test_guid_from_literal_object_and_pool_params(tmp_path: Path, events: pa.Table) -> None:
    small = branches(events.slice(0, 5))
    guid = "01234567-89AB-CDEF-0123-456789ABCDEF"
    path = write_root(tmp_path / "obj.root", small, Guid=guid.lower())
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({"guid": {"object": "Guid"}}))
    assert RootInput(path, mapped).guid == guid
    mapped.write_text(json.dumps({"guid": guid.lower()}))
    assert RootInput(path, mapped).guid == guid
    params = write_root(tmp_path / "pool.root", small)
    with uproot.update(params) as file:
        file.mktree("##Params", {"db_string": np.array(["[NAME=PFN][VALUE=x.root]", f"[NAME=FID][VALUE={guid}]"])})
    source = RootInput(params, None)
    assert source.guid == guid
    assert set(read_all(source).column("input_guid").to_pylist()) == {guid}


def test_rntuple_with_xaod_spellings_byte_masks_and_event_type_word(tmp_path: Path, events: pa.Table) -> None:
    n = 50
    part = events.slice(0, n)
    flags = np.array([1, 2, 4, 7, 0] * 10, dtype=np.uint32)  # simulation, testbeam, calibration bits
    data = {
        "EventInfoAuxDyn:runNumber": part.column("run_number").to_numpy().astype(np.int32),
        "eventNumber": part.column("event_number").to_numpy(),
        "lumiBlock": part.column("lumi_block").to_numpy().astype(np.int64),
        "eventTypeBitmask": flags,
        "mcEventWeight": np.linspace(0.5, 1.5, n).astype(np.float64),
        "L1_TBP": mask_matrix(part.column("l1_tbp"), 64),  # bytes
        "L1_TAP": np.unpackbits(mask_matrix(part.column("l1_tap"), 64), axis=1, bitorder="little").astype(bool),
        "HLTPassedThrough": mask_matrix(part.column("hlt_passed_through"), 1024)[:, :512].copy(),  # 4096 bits
    }
    path = tmp_path / "rn.root"
    with uproot.recreate(path) as file:
        file.mkrntuple("CollectionTree", data)  # what uproot >= 5.7 writes for file["CollectionTree"] = data
    with uproot.open(path) as file:
        assert file.classnames() == {"CollectionTree;1": "ROOT::RNTuple"}
    table = read_all(RootInput(path, None))
    for column in ("run_number", "event_number", "lumi_block", "l1_tbp", "l1_tap"):
        assert table.column(column).equals(part.column(column)), column
    assert table.column("is_simulation").to_pylist() == [bool(f & 1) for f in flags]
    assert table.column("is_testbeam").to_pylist() == [bool(f & 2) for f in flags]
    assert table.column("is_calibration").to_pylist() == [bool(f & 4) for f in flags]
    assert np.allclose(table.column("mc_event_weight").to_numpy(), np.linspace(0.5, 1.5, n))
    padded = table.column("hlt_passed_through").to_pylist()
    assert [v[:512] for v in padded] == [v[:512] for v in part.column("hlt_passed_through").to_pylist()]
    assert all(v[512:] == bytes(512) for v in padded)
    assert table.column("bcid").null_count == n and table.column("l1_tav").null_count == n


def test_trigger_words_bit_order(tmp_path: Path) -> None:
    """Bit i of a vector is bit i % 32 of word i // 32: word 1 = 0x80000001 sets bits 32 and 63."""
    words = np.zeros((1, 16), dtype=np.uint32)
    words[0, 1] = 0x80000001
    path = write_root(tmp_path / "w.root", minimal(1, L1PassedTrigMaskTBP=words))
    mask = read_all(RootInput(path, None)).column("l1_tbp")[0].as_py()
    bits = np.unpackbits(np.frombuffer(mask, np.uint8), bitorder="little")
    assert np.flatnonzero(bits).tolist() == [32, 63]


def test_empty_tree_gives_no_batches(tmp_path: Path) -> None:
    path = tmp_path / "empty.root"
    with uproot.recreate(path) as file:
        file.mktree("EventIndex", {"RunNumber": np.uint32, "EventNumber": np.uint64})
    source = RootInput(path, None)
    assert source.declared_events == 0 and list(source.batches(100)) == []


def test_default_map_covers_every_mappable_column() -> None:
    names = set(EVENT_SCHEMA.names) - {"provenance", "input_guid"}
    assert names | {EVENT_TYPE_BITMASK} == MAPPABLE
    for column, candidates in DEFAULT_BRANCHES.items():
        assert candidates[-1] == column


# ---------------------------------------------------------------- failures


def minimal(n: int = 10, **override: np.ndarray) -> dict[str, np.ndarray]:
    data: dict[str, np.ndarray] = {"RunNumber": np.full(n, 7, np.uint32), "EventNumber": np.arange(n, dtype=np.uint64)}
    data.update(override)
    return data


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        open_input(str(tmp_path / "nope.root"))
    assert "nope.root" in one_line(exc) and "no such file" in str(exc.value)


def test_not_a_root_file(tmp_path: Path) -> None:
    path = tmp_path / "text.root"
    path.write_text("hello, this is not ROOT\n" * 20)
    with pytest.raises(InputError) as exc:
        RootInput(path, None)
    assert str(path) in one_line(exc) and "not a readable ROOT file" in str(exc.value)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.97])
def test_truncated_file(tmp_path: Path, events: pa.Table, keep: float) -> None:
    whole = write_root(tmp_path / "whole.root", branches(events)).read_bytes()
    path = tmp_path / "cut.root"
    path.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(InputError) as exc:
        list(RootInput(path, None).batches(1000))
    assert str(path) in one_line(exc)


def test_missing_required_branch(tmp_path: Path) -> None:
    path = write_root(tmp_path / "ev.root", {"RunNumber": np.arange(3, dtype=np.uint32)})
    with pytest.raises(InputError) as exc:
        RootInput(path, None)
    text = one_line(exc)
    assert str(path) in text and "event_number" in text and "EventNumber" in text


def test_missing_tree_lists_the_trees(tmp_path: Path) -> None:
    path = tmp_path / "two.root"
    with uproot.recreate(path) as file:
        file.mktree("A", minimal())
        file.mktree("B", minimal())
    with pytest.raises(InputError) as exc:
        RootInput(path, None)
    assert "trees in the file: A, B" in one_line(exc)
    single = write_root(tmp_path / "one.root", minimal(), tree="Whatever")
    assert RootInput(single, None).tree_name == "Whatever"
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({"tree": "Missing"}))
    with pytest.raises(InputError, match="no tree Missing"):
        RootInput(single, mapped)


def test_mapped_branch_must_exist(tmp_path: Path) -> None:
    path = write_root(tmp_path / "ev.root", minimal())
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({"branches": {"lumi_block": "LB"}}))
    with pytest.raises(InputError) as exc:
        RootInput(path, mapped)
    assert "'LB'" in one_line(exc) and "lumi_block" in str(exc.value)


@pytest.mark.parametrize(
    ("branch", "values", "words"),
    [
        ("RunNumber", np.ones(10, np.float64), "expected an integer"),
        ("LumiBlock", np.ones(10, np.float32), "expected an integer"),
        ("IsSimulation", np.ones(10, np.float32), "expected a bool or integer"),
        ("L1PassedTrigMaskTBP", np.ones((10, 17), np.uint32), "at most 512 bits, each entry holds 544"),
        ("HLTPassedTrigMask", np.ones(10, np.uint32), "expected a vector of integer words or bools"),
        ("MCEventWeight", np.ones((10, 3), np.float32), "a vector is mapped by one element: NAME[k]"),
    ],
)
def test_wrong_branch_type(tmp_path: Path, branch: str, values: np.ndarray, words: str) -> None:
    override: dict[str, Any] = {branch: values}
    path = write_root(tmp_path / "ev.root", minimal(**override))
    with pytest.raises(InputError) as exc:
        RootInput(path, None)
    text = one_line(exc)
    assert str(path) in text and repr(branch) in text and words in text


def test_variable_length_masks_empty_is_null_longer_is_refused(tmp_path: Path) -> None:
    """std::vector<uint32_t> masks (xAOD): any length up to the width, bit i = bit i % 32 of word i // 32."""
    import awkward as ak  # type: ignore[import-untyped]

    words = ak.values_astype(ak.Array([[1, 0x80000000], [], [0, 0, 5]]), np.uint32)
    path = tmp_path / "jag.root"
    with uproot.recreate(path) as file:
        file.mktree("EventIndex", {**minimal(3), "L1PassedTrigMaskTBP": words})
    masks = read_all(RootInput(path, None)).column("l1_tbp").to_pylist()
    assert masks[1] is None and all(len(m) == 64 for m in (masks[0], masks[2]))
    bits = [
        np.flatnonzero(np.unpackbits(np.frombuffer(m, np.uint8), bitorder="little")).tolist()
        for m in (masks[0], masks[2])
    ]
    assert bits == [[0, 63], [64, 66]]
    too_long = tmp_path / "long.root"
    with uproot.recreate(too_long) as file:
        file.mktree(
            "EventIndex", {**minimal(2), "L1PassedTrigMaskTBP": ak.values_astype(ak.Array([[1], [0] * 17]), np.uint32)}
        )
    with pytest.raises(InputError, match=r"'L1PassedTrigMaskTBP'.*at most 512 bits, entry 1 holds 544"):
        list(RootInput(too_long, None).batches(10))


@pytest.mark.parametrize(
    ("branch", "dtype", "value", "words"),
    [
        ("EventNumber", np.int64, -5, "event_number value -5 is outside 0..9223372036854775807"),
        ("EventNumber", np.uint64, 2**63, "event_number 9223372036854775808 is 2^63 or more"),
        ("RunNumber", np.int64, 2**32, "run_number value 4294967296 is outside 0..4294967295"),
    ],
)
def test_value_out_of_range_names_the_entry(tmp_path: Path, branch: str, dtype: type, value: int, words: str) -> None:
    numbers: np.ndarray = np.arange(2000, dtype=dtype)
    numbers[1234] = value
    override: dict[str, Any] = {branch: numbers}
    path = write_root(tmp_path / "ev.root", minimal(2000, **override))
    with pytest.raises(InputError) as exc:
        list(RootInput(path, None).batches(500))
    assert "entry 1234" in one_line(exc) and f"field {branch!r}" in str(exc.value) and words in str(exc.value)


def test_bad_token_names_the_entry(tmp_path: Path) -> None:
    data = minimal(3, TokenAOD=np.array(["", "[DB=nonsense]", ""], dtype=object))
    path = write_root(tmp_path / "ev.root", data)
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({"provenance": [{"stream": "StreamAOD", "token": "TokenAOD"}]}))
    with pytest.raises(InputError) as exc:
        list(RootInput(path, mapped).batches(10))
    assert "entry 1" in one_line(exc) and "POOL token" in str(exc.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "not valid JSON"),
        ('["tree"]', "expected a JSON object"),
        ('{"trees": "x"}', "unknown key 'trees'"),
        ('{"branches": {"provenance": "x"}}', "not a mappable column"),
        ('{"branches": {"bcid": 3}}', "branches.bcid"),
        ('{"guid": "not-a-guid"}', "not a GUID"),
        ('{"provenance": [{"stream": "S"}]}', "provenance entry"),
        ('{"branches": {"bcid": {"bits": "HLT_*"}}}', "bcid is not one"),
        ('{"branches": {"l1_tbp": {"bits": ["a", "a"]}}}', "names a field twice"),
        ('{"branches": {"l1_tbp": {"bits": 3}}}', '{"bits": "GLOB"}'),
        ('{"branches": {"l1_tbp": "words[0]"}}', "not an element NAME[k]"),
        ('{"branches": {"mc_event_weight": "w[99999999999999999999]"}}', "element index 99999999999999999999 is too"),
        ('{"branches": {"mc_event_weight": ["w[9223372036854775807]"]}}', "element index 9223372036854775807 is too"),
        ('{"branches": {"bcid": "b[2147483647]"}}', "0..2147483646"),
        ('{"collection": 3}', "'collection' must be a tree name or null"),
        ('{"collection": "C", "provenance": [{"stream": "S", "token": "T"}]}', "give one"),
    ],
)
def test_bad_branch_map_is_a_config_error(tmp_path: Path, text: str, words: str) -> None:
    path = write_root(tmp_path / "ev.root", minimal())
    mapped = tmp_path / "map.json"
    mapped.write_text(text)
    with pytest.raises(ConfigError) as exc:
        RootInput(path, mapped)
    assert "map.json" in one_line(exc) and words in str(exc.value)


# ---------------------------------------------------------------- xAOD and POOL layouts, written with uproot

FID = "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D"
TOKENS = [
    f"[DB={FID}][CNT=POOLContainer(DataHeader)][CLID=4DDBD295-EFCE-472A-9EC8-15CD35A9EB8D][TECH=00000203]"
    f"[OID=0000000000000062-{i:016X}]"
    for i in range(4)
]


def pool_file(
    path: Path,
    *,
    collection: dict[str, np.ndarray] | None = None,
    links: bool = True,
    **collection_tree: np.ndarray,
) -> Path:
    """A POOL file: `CollectionTree` (the given branches), ##Params (FID), ##Links naming the stream, and
    a `POOLCollectionTree` when `collection` is given."""
    with uproot.recreate(path) as file:
        file.mktree("CollectionTree", collection_tree)
        file.mktree("##Params", {"db_string": np.array([f"[NAME=FID][VALUE={FID}]", "[NAME=PFN][VALUE=x.pool.root]"])})
        if links:
            link = "[DB=00000000-0000-0000-0000-000000000000][CNT=MetaData(StreamAOD)][CLID=11DF1B8C][TECH=00000202]"
            file.mktree("##Links", {"db_string": np.array(["[DB=x][CNT=POOLContainer(DataHeader)]", link])})
        if collection is not None:
            file.mktree("POOLCollectionTree", collection)
    return path


def collection(n: int = 4, **override: np.ndarray) -> dict[str, np.ndarray]:
    data = {
        "Token": np.array(TOKENS[:n], dtype=object),
        "RunNumber": np.full(n, 410000, np.uint32),
        "EventNumber": np.arange(100, 100 + n, dtype=np.uint64),
        "LumiBlockN": np.full(n, 3, np.uint32),
        "EventWeight": np.linspace(1, 2, n).astype(np.float32),
        "IsSimulation": np.ones(n, bool),
        "IsCalibration": np.zeros(n, bool),
        "IsTestBeam": np.zeros(n, bool),
    }
    data.update(override)
    return data


#: An xAOD CollectionTree whose EventInfo uproot cannot read: only `EventInfoAux.` (here a stand-in
#: leaf; in real files the unsplit xAOD::EventAuxInfo_v1) and the pile-up RandomRunNumber decoy.
UNREADABLE_EVENT_INFO: dict[str, Any] = {
    "EventInfoAux.": np.zeros(4, np.uint8),
    "EventInfoAuxDyn.RandomRunNumber": np.full(4, 349114, np.uint32),
}


def test_unreadable_event_info_falls_back_to_the_collection(tmp_path: Path) -> None:
    path = pool_file(tmp_path / "aod.root", collection=collection(), **UNREADABLE_EVENT_INFO)
    source = RootInput(path, None)
    assert source.tree_name == "POOLCollectionTree" and source.guid == FID
    (note,) = source.notes
    assert "tree CollectionTree has no run_number" in note and "POOLCollectionTree" in note
    assert "EventInfoAux." in note  # says why: the object is there, its members are not
    table = read_all(source)
    assert table.column("run_number").to_pylist() == [410000] * 4  # never the RandomRunNumber
    assert table.column("event_number").to_pylist() == [100, 101, 102, 103]
    assert table.column("lumi_block").to_pylist() == [3] * 4
    assert table.column("mc_event_weight").to_pylist() == np.linspace(1, 2, 4).astype(np.float32).tolist()
    assert table.column("is_simulation").to_pylist() == [True] * 4
    for column in ("bcid", "timestamp", "mc_channel_number", "smk", "l1_tbp", "extended_level1_id"):
        assert table.column(column).null_count == 4, column  # the collection does not carry them
    refs = table.column("provenance").to_pylist()
    assert [r[0]["oid2"] for r in refs] == [0, 1, 2, 3]
    assert {(r[0]["stream"], r[0]["guid"], r[0]["tech"], r[0]["oid1"]) for r in refs} == {
        ("StreamAOD", FID, 0x203, 0x62)
    }


def test_unreadable_event_info_without_a_collection_is_refused(tmp_path: Path) -> None:
    path = pool_file(tmp_path / "aod.root", **UNREADABLE_EVENT_INFO)
    with pytest.raises(InputError) as exc:
        RootInput(path, None)
    text = one_line(exc)
    assert str(path) in text and "tree CollectionTree has no run_number" in text
    assert "EventInfoAuxDyn.runNumber" in text and "EventInfoAux." in text
    assert "no POOL collection tree" in text and "RandomRunNumber" not in text
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({"collection": None}))
    aod = pool_file(tmp_path / "aod2.root", collection=collection(), **UNREADABLE_EVENT_INFO)
    with pytest.raises(InputError, match="branch map says null"):
        RootInput(aod, mapped)


def test_a_collection_without_a_run_number_is_refused_too(tmp_path: Path) -> None:
    data = collection()
    del data["RunNumber"]
    path = pool_file(tmp_path / "aod.root", collection=data, **UNREADABLE_EVENT_INFO)
    with pytest.raises(InputError, match="and its POOL collection tree POOLCollectionTree none either"):
        RootInput(path, None)
    alone = tmp_path / "tag.root"
    with uproot.recreate(alone) as file:
        file.mktree("POOLCollectionTree", data)
    with pytest.raises(InputError) as exc:
        RootInput(alone, None)
    assert one_line(exc).startswith(f"{alone}: tree POOLCollectionTree has no run_number (tried: RunNumber,")
    assert "collection tree to read" not in str(exc.value)


def xaod(n: int = 4) -> dict[str, Any]:
    """A Run-3 CollectionTree's EventInfo."""
    return {
        "EventInfoAuxDyn.runNumber": np.full(n, 410000, np.uint32),
        "EventInfoAuxDyn.eventNumber": np.arange(100, 100 + n, dtype=np.uint64),
        "EventInfoAuxDyn.eventTypeBitmask": np.full(n, 1, np.uint32),
    }


def test_collection_tokens_beside_the_event_tree(tmp_path: Path) -> None:
    source = RootInput(pool_file(tmp_path / "aod.root", collection=collection(), **xaod()), None)
    assert source.tree_name == "CollectionTree" and source.notes == []
    refs = read_all(source).column("provenance").to_pylist()
    assert [(r[0]["stream"], r[0]["oid2"]) for r in refs] == [("StreamAOD", i) for i in range(4)]


def test_a_collection_that_lists_other_events_is_refused(tmp_path: Path) -> None:
    shuffled = collection(EventNumber=np.array([100, 101, 103, 102], np.uint64))
    source = RootInput(pool_file(tmp_path / "aod.root", collection=shuffled, **xaod()), None)
    with pytest.raises(InputError) as exc:
        read_all(source)
    text = one_line(exc)
    assert "entry 2" in text and "(410000, 103)" in text and "(410000, 102)" in text and '"collection": null' in text


def test_tokens_not_read_are_said_so(tmp_path: Path) -> None:
    shorter = RootInput(pool_file(tmp_path / "a.root", collection=collection(3), **xaod()), None)
    assert shorter.notes == [
        "POOL collection tree POOLCollectionTree has 3 entries, tree CollectionTree 4: its tokens were not read"
    ]
    assert read_all(shorter).column("provenance").null_count == 4
    nameless = RootInput(pool_file(tmp_path / "b.root", collection=collection(), links=False, **xaod()), None)
    assert len(nameless.notes) == 1 and "stream" in nameless.notes[0] and "not read" in nameless.notes[0]
    assert read_all(nameless).column("provenance").null_count == 4


def test_guid_from_the_highest_params_cycle(tmp_path: Path) -> None:
    path = write_root(tmp_path / "ev.root", minimal(3))
    newer = "FFFFFFFF-0000-4000-8000-000000000001"
    with uproot.update(path) as file:
        file.mktree("##Params", {"db_string": np.array([f"[NAME=FID][VALUE={FID}]"])})
        file.mktree("##Params", {"db_string": np.array([f"[NAME=FID][VALUE={newer}]"])})
    with uproot.open(path) as file:
        assert {"##Params;1", "##Params;2"} <= set(file.keys(cycle=True))
    assert RootInput(path, None).guid == newer


def rntuple_xaod(path: Path, n: int = 3, **extra: object) -> Path:
    """An ATLAS-style RNTuple: `EventInfoAuxDyn:*` fields and records of members."""
    import awkward as ak

    data: dict[str, object] = {
        "EventInfoAuxDyn:runNumber": np.full(n, 450000, np.uint32),
        "EventInfoAuxDyn:eventNumber": np.arange(n, dtype=np.uint64),
        "EventInfoAuxDyn:mcEventWeights": ak.values_astype(ak.Array([[0.5, 2.0], [], [1.5]][:n]), np.float32),
        **extra,
    }
    with uproot.recreate(path) as file:
        file.mkrntuple("EventData", data)
    return path


def test_rntuple_nested_names_never_match_short_names(tmp_path: Path) -> None:
    """The default `smk` candidate must not pick up a nested `Other.smk` (it once did: KeyError 'smk')."""
    import awkward as ak

    other = ak.zip({"smk": np.full(3, 9, np.uint32)}, depth_limit=1)
    decision = ak.zip({"smk": np.full(3, 7, np.uint32)}, depth_limit=1)
    alone = read_all(RootInput(rntuple_xaod(tmp_path / "a.root", Other=other), None))
    assert alone.column("smk").null_count == 3
    both = read_all(RootInput(rntuple_xaod(tmp_path / "b.root", Other=other, **{"xTrigDecisionAux:": decision}), None))
    assert both.column("smk").to_pylist() == [7, 7, 7]
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({"branches": {"smk": "Other.smk"}}))
    assert read_all(RootInput(tmp_path / "a.root", mapped)).column("smk").to_pylist() == [9, 9, 9]
    mapped.write_text(json.dumps({"branches": {"smk": "smk"}}))
    with pytest.raises(InputError, match="has no field 'smk'"):
        RootInput(tmp_path / "a.root", mapped)


def test_vector_element_mapping(tmp_path: Path) -> None:
    path = rntuple_xaod(tmp_path / "w.root")
    assert read_all(RootInput(path, None)).column("mc_event_weight").to_pylist() == [0.5, None, 1.5]
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({"branches": {"mc_event_weight": "EventInfoAuxDyn:mcEventWeights[1]"}}))
    assert read_all(RootInput(path, mapped)).column("mc_event_weight").to_pylist() == [2.0, None, None]
    mapped.write_text(json.dumps({"branches": {"mc_event_weight": "EventInfoAuxDyn:mcEventWeights"}}))
    with pytest.raises(InputError, match=r"std::vector<float>, expected a number \(a vector is mapped by one element"):
        RootInput(path, mapped)
    mapped.write_text(json.dumps({"branches": {"lumi_block": "EventInfoAuxDyn:runNumber[0]"}}))
    with pytest.raises(InputError, match="expected a vector of numbers"):
        RootInput(path, mapped)


def test_vector_element_of_a_ttree_across_baskets(tmp_path: Path) -> None:
    """`NAME[k]` of a TTree vector branch (read from its baskets, not as whole vectors): empty and short
    vectors give null, every batch size and basket boundary gives the same values as the whole vectors."""
    import awkward as ak

    rng = np.random.default_rng(4)
    counts = rng.integers(0, 4, 1_000)
    weights = ak.unflatten(rng.normal(size=int(counts.sum())).astype(np.float32), counts)
    data = {"run": np.full(1_000, 7, np.uint32), "event": np.arange(1_000, dtype=np.uint64), "w": weights}
    path = write_root(tmp_path / "v.root", data, tree="CollectionTree", step=300)
    mapped = tmp_path / "map.json"
    for k in (0, 2):
        branches = {"run_number": "run", "event_number": "event", "mc_event_weight": f"w[{k}]"}
        mapped.write_text(json.dumps({"branches": branches}))
        source = RootInput(path, mapped)
        field = source.events.get("w")
        assert field is not None and source.events.element(field, k, 0, 10) is not None  # the basket path
        wanted = [float(v[k]) if len(v) > k else None for v in weights.tolist()]
        for step in (1_000, 299, 7):
            got = read_all(RootInput(path, mapped), step).column("mc_event_weight").to_pylist()
            assert got == wanted and None in got


def test_the_largest_vector_element_index_reads_null(tmp_path: Path) -> None:
    """`NAME[2^31-2]`, the largest index a branch map may give: null for every event (read from the
    baskets of a TTree, or from whole vectors of an RNTuple), never an overflow."""
    import awkward as ak

    weights = ak.Array([[1.0, 2.0], [], [3.0]])
    data = {"run": np.full(3, 7, np.uint32), "event": np.arange(3, dtype=np.uint64), "w": weights}
    path = write_root(tmp_path / "v.root", data, tree="CollectionTree")
    mapped = tmp_path / "map.json"
    branches = {"run_number": "run", "event_number": "event", "mc_event_weight": "w[2147483646]"}
    mapped.write_text(json.dumps({"branches": branches}))
    assert read_all(RootInput(path, mapped)).column("mc_event_weight").to_pylist() == [None] * 3
    mapped.write_text(json.dumps({"branches": {"mc_event_weight": "EventInfoAuxDyn:mcEventWeights[2147483646]"}}))
    table = read_all(RootInput(rntuple_xaod(tmp_path / "w.root"), mapped))
    assert table.column("mc_event_weight").to_pylist() == [None] * 3


def test_columns_the_file_does_not_carry_are_null(tmp_path: Path) -> None:
    table = read_all(RootInput(write_root(tmp_path / "ev.root", minimal(5)), None))
    present = {"run_number", "event_number", "input_guid"}
    for name in EVENT_SCHEMA.names:
        assert table.column(name).null_count == (0 if name in present else 5), name


def test_bits_from_boolean_branches(tmp_path: Path) -> None:
    fired = np.array([[True, False, True], [False, False, False], [False, True, True]])
    data = minimal(3, HLT_b=fired[:, 0], HLT_a=fired[:, 1], HLT_c=fired[:, 2], Other=np.zeros(3, bool))
    path = write_root(tmp_path / "ev.root", data)
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({"branches": {"hlt_passed_physics": {"bits": "HLT_*"}}}))
    source = RootInput(path, mapped)
    assert source.trigger_names == {"hlt_passed_physics": ("HLT_a", "HLT_b", "HLT_c")}  # sorted
    masks = read_all(source).column("hlt_passed_physics").to_pylist()
    assert [np.flatnonzero(np.unpackbits(np.frombuffer(m, np.uint8), bitorder="little")).tolist() for m in masks] == [
        [1, 2], [], [0, 2]
    ]  # fmt: skip
    mapped.write_text(json.dumps({"branches": {"l1_tav": {"bits": ["HLT_c", "HLT_a"]}}}))
    source = RootInput(path, mapped)
    assert source.trigger_names == {"l1_tav": ("HLT_c", "HLT_a")}  # as listed
    masks = read_all(source).column("l1_tav").to_pylist()
    assert [len(m) for m in masks] == [64] * 3 and [m[0] for m in masks] == [0b01, 0b00, 0b11]


@pytest.mark.parametrize(
    ("bits", "words"),
    [
        ({"bits": "NOPE_*"}, "no field matching 'NOPE_*'"),
        ({"bits": ["HLT_a", "HLT_zz"]}, "no field 'HLT_zz'"),
        ({"bits": ["HLT_a", "Run"]}, "'Run' (bit 1 of hlt_passed_physics) has type float, expected a bool"),
    ],
)
def test_bits_refused(tmp_path: Path, bits: dict[str, object], words: str) -> None:
    path = write_root(tmp_path / "ev.root", minimal(3, HLT_a=np.ones(3, bool), Run=np.ones(3, np.float32)))
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({"branches": {"hlt_passed_physics": bits}}))
    with pytest.raises(InputError) as exc:
        RootInput(path, mapped)
    assert words in one_line(exc)


def test_more_bits_than_the_mask_holds_is_refused(tmp_path: Path) -> None:
    data = minimal(2, **{f"L1_{i:03d}": np.zeros(2, bool) for i in range(513)})
    path = write_root(tmp_path / "ev.root", data)
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({"branches": {"l1_tbp": {"bits": "L1_*"}}}))
    with pytest.raises(InputError, match="name 513 fields, more than the 512 bits of l1_tbp"):
        RootInput(path, mapped)


# ---------------------------------------------------------------- through the CLIs into the warehouse


def sorted_events(table: pa.Table) -> pa.Table:
    return table.sort_by([("run_number", "ascending"), ("event_number", "ascending")]).combine_chunks()


def test_a_double_weight_beyond_float32_is_refused_not_stored_as_infinity(tmp_path: Path) -> None:
    """As JSON lines do: 1e300 would be stored as inf (a value the input never said). NaN stays NaN, and a
    value too small for a float32 is rounded to 0 as any float is."""
    run = np.full(4, 7, dtype=np.uint32)
    event = np.arange(1, 5, dtype=np.uint64)
    branch_map = tmp_path / "map.json"
    branch_map.write_text(json.dumps({"branches": {"run_number": "r", "event_number": "e", "mc_event_weight": "w"}}))
    fine = write_root(tmp_path / "fine.root", {"r": run, "e": event, "w": np.array([1.5, np.nan, 1e-300, -2.0])})
    weights = read_all(open_input(str(fine), branch_map)).column("mc_event_weight").to_pylist()
    assert weights[0] == 1.5 and np.isnan(weights[1]) and weights[2:] == [0.0, -2.0]
    big = write_root(tmp_path / "big.root", {"r": run, "e": event, "w": np.array([1.0, 2.0, 1e300, 3.0])})
    with pytest.raises(InputError) as exc:
        read_all(open_input(str(big), branch_map))
    assert one_line(exc).endswith("entry 2: field 'w': mc_event_weight value 1e+300 is beyond the range of a 32-bit "
                                  "float (about 3.4e38): it would be stored as infinity")  # fmt: skip


def test_a_run_or_event_number_missing_from_its_vector_names_the_entry(tmp_path: Path) -> None:
    """`EvVec[0]` of an empty vector is no event number: one line naming the entry (was an internal error)."""
    import awkward as ak

    path = tmp_path / "vec.root"
    with uproot.recreate(path) as file:
        file["EventIndex"] = {"RunVec": ak.Array([[7], [7], [7], [7]]), "EvVec": ak.Array([[1], [2], [], [4]])}
    branch_map = tmp_path / "map.json"
    branch_map.write_text(json.dumps({"branches": {"run_number": "RunVec[0]", "event_number": "EvVec[0]"}}))
    with pytest.raises(InputError) as exc:
        read_all(open_input(str(path), branch_map))
    assert one_line(exc).endswith(
        "entry 2: field 'EvVec[0]': the vector has no element 0, and event_number may not be missing"
    )
