"""ROOT inputs: TTrees (and RNTuples) written with uproot from synthetic events, read back column by column."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import uproot

from eventindex.columns import EVENT_SCHEMA, MASK_COLUMNS, PROVENANCE_TYPE
from eventindex.errors import ConfigError, InputError
from producer.inputs import open_input
from producer.inputs.branch_map import DEFAULT_BRANCHES, EVENT_TYPE_BITMASK, MAPPABLE
from producer.inputs.common import GUID_PATTERN
from producer.inputs.root import RootInput

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
    """The event columns as ROOT branch data: masks as uint32 words (bit 0 first), absent masks not written."""
    data: dict[str, np.ndarray] = {}
    for field in EVENT_SCHEMA:
        column = events.column(field.name)
        if field.name in dict(MASK_COLUMNS):
            if column.null_count == len(column):
                continue
            width = dict(MASK_COLUMNS)[field.name]
            data[names[field.name]] = mask_matrix(column, width).view("<u4")
        elif field.name in ("provenance", "input_guid"):
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
    """What the ROOT format carries of `events`: no nulls in extended_level1_id, the file's GUID."""
    table = events.set_column(
        EVENT_SCHEMA.get_field_index("extended_level1_id"),
        EVENT_SCHEMA.field("extended_level1_id"),
        events.column("extended_level1_id").fill_null(0),
    )
    table = table.set_column(
        EVENT_SCHEMA.get_field_index("input_guid"), EVENT_SCHEMA.field("input_guid"), pa.array([guid] * len(events))
    )
    if not provenance:
        empty = pa.array([[]] * len(events), PROVENANCE_TYPE)
        table = table.set_column(EVENT_SCHEMA.get_field_index("provenance"), EVENT_SCHEMA.field("provenance"), empty)
    return table


def read_all(source: RootInput, max_rows: int = 10_000) -> pa.Table:
    return pa.concat_tables(source.batches(max_rows)).combine_chunks()


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
    assert pc.all(pc.equal(table.column("bcid"), 0)).as_py()
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
        "EventInfoAux.runNumber": part.column("run_number").to_numpy().astype(np.int32),
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
    assert table.column("bcid").to_pylist() == [0] * n and table.column("l1_tav").null_count == n


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


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def minimal(n: int = 10, **override: np.ndarray) -> dict[str, np.ndarray]:
    data = {"RunNumber": np.full(n, 7, np.uint32), "EventNumber": np.arange(n, dtype=np.uint64)}
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
        ("RunNumber", np.ones(10, np.float64), "expected an integer branch"),
        ("LumiBlock", np.ones(10, np.float32), "expected an integer branch"),
        ("IsSimulation", np.ones(10, np.float32), "expected a bool or integer branch"),
        ("L1PassedTrigMaskTBP", np.ones((10, 17), np.uint32), "at most 512 bits"),
        ("HLTPassedTrigMask", np.ones(10, np.uint32), "fixed-size array"),
    ],
)
def test_wrong_branch_type(tmp_path: Path, branch: str, values: np.ndarray, words: str) -> None:
    path = write_root(tmp_path / "ev.root", minimal(**{branch: values}))
    with pytest.raises(InputError) as exc:
        RootInput(path, None)
    text = one_line(exc)
    assert str(path) in text and repr(branch) in text and words in text


def test_jagged_mask_is_a_wrong_type(tmp_path: Path) -> None:
    import awkward as ak

    path = tmp_path / "jag.root"
    with uproot.recreate(path) as file:
        file.mktree("EventIndex", {**minimal(2), "L1PassedTrigMaskTBP": ak.Array([[1, 2], [3]])})
    with pytest.raises(InputError, match=r"'L1PassedTrigMaskTBP'.*fixed-size array"):
        RootInput(path, None)


def test_value_out_of_range_names_the_entry(tmp_path: Path) -> None:
    numbers = np.arange(2000, dtype=np.int64)
    numbers[1234] = -5
    path = write_root(tmp_path / "ev.root", minimal(2000, EventNumber=numbers))
    with pytest.raises(InputError) as exc:
        list(RootInput(path, None).batches(500))
    assert "entry 1234" in one_line(exc) and "'EventNumber'" in str(exc.value) and "-5" in str(exc.value)


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
    ],
)
def test_bad_branch_map_is_a_config_error(tmp_path: Path, text: str, words: str) -> None:
    path = write_root(tmp_path / "ev.root", minimal())
    mapped = tmp_path / "map.json"
    mapped.write_text(text)
    with pytest.raises(ConfigError) as exc:
        RootInput(path, mapped)
    assert "map.json" in one_line(exc) and words in str(exc.value)


# ---------------------------------------------------------------- through the CLIs into the warehouse


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def index_into_warehouse(tmp_path: Path, input_spec: str, events: int) -> pa.Table:
    """producer CLI -> supersink expect + run -> the committed warehouse rows of the task."""
    store, queue, warehouse = (tmp_path / "store").as_uri(), f"sqlite://{tmp_path / 'q.db'}", tmp_path / "wh"
    produced = cli(
        "producer.cli", "--task", "T", "--job", "J", "--attempt", "1", "--dataset", "D",
        "--input", input_spec, "--store", store, "--broker", queue, "--chunk-events", "700",
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    assert json.loads(produced.stdout)["events"] == events
    expect = cli("supersink.cli", "expect", "--broker", queue, "--task", "T", "--jobs", "1", "--events", str(events))
    assert expect.returncode == 0, expect.stderr
    ran = cli(
        "supersink.cli", "run", "--broker", queue, "--store", store, "--warehouse", warehouse.as_uri(),
        "--state", str(tmp_path / "state.db"), "--until-idle", "1",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    task_dir = warehouse / "D" / "T"
    assert (task_dir / "_SUCCESS.json").exists()
    parts = sorted(task_dir.glob("part-*.parquet"))
    table = pa.concat_tables(pq.read_table(part) for part in parts)
    return table.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA).combine_chunks()


def sorted_events(table: pa.Table) -> pa.Table:
    return table.sort_by([("run_number", "ascending"), ("event_number", "ascending")]).combine_chunks()


def test_root_file_round_trips_into_the_warehouse(tmp_path: Path, events: pa.Table) -> None:
    path = write_root(tmp_path / "ev.root", branches(events))
    guid = RootInput(path, None).guid
    loaded = index_into_warehouse(tmp_path, str(path), len(events))
    assert_same_columns(loaded, sorted_events(expected(events, guid)))


def test_cli_reports_a_truncated_root_file_in_one_line(tmp_path: Path, events: pa.Table) -> None:
    whole = write_root(tmp_path / "whole.root", branches(events)).read_bytes()
    cut = tmp_path / "cut.root"
    cut.write_bytes(whole[: len(whole) // 2])
    proc = cli(
        "producer.cli", "--task", "T", "--job", "J", "--attempt", "1", "--dataset", "D", "--input", str(cut),
        "--store", (tmp_path / "s").as_uri(), "--broker", f"sqlite://{tmp_path / 'q.db'}",
    )  # fmt: skip
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(cut) in lines[0], proc.stderr
