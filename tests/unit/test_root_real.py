"""Real ATLAS and CMS files (tests/data/root): the producer reads exactly what uproot reads from them.

The expected events come from tests/real_files.py, which reads the branches named there directly
with uproot; the producer's reader must give the same value for every event and every mapped
column, the trigger masks bit by bit, and null for everything the file does not carry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import uproot  # type: ignore[import-untyped]

from eventindex.columns import EVENT_SCHEMA
from eventindex.errors import InputError
from producer.inputs import open_input
from producer.inputs.root import RootInput
from producer.inputs.root_tree import RNTupleFields, TTreeFields, open_tree
from tests.real_files import FILES, MASK_BITS, RealFile, bit_names, expected_columns


def read(real: RealFile, branch_map: Path | None = None) -> tuple[RootInput, pa.Table]:
    """Every event of the file, read in several batches (of 16 events; of 64 for the 441 branches of NanoAOD)."""
    source = open_input(str(real.path), branch_map or real.branch_map)
    assert isinstance(source, RootInput)
    step = 64 if real.bits else 16
    tables = list(source.batches(step))
    assert len(tables) > 1 and [t.num_rows for t in tables[:-1]] == [step] * (len(tables) - 1)
    return source, pa.concat_tables(tables).combine_chunks()


def set_bits(value: bytes | None) -> list[int] | None:
    if value is None:
        return None
    return np.flatnonzero(np.unpackbits(np.frombuffer(value, np.uint8), bitorder="little")).tolist()


def assert_columns_equal(table: pa.Table, wanted: dict[str, list[Any]]) -> None:
    """Every column, event by event; masks compared as lists of set bits, and by width."""
    assert table.schema.equals(EVENT_SCHEMA)
    for name in EVENT_SCHEMA.names:
        got = table.column(name).to_pylist()
        if name in MASK_BITS:
            assert all(v is None or len(v) == MASK_BITS[name] // 8 for v in got), name
            got_bits, want_bits = [set_bits(v) for v in got], [set_bits(v) for v in wanted[name]]
            for event, (g, w) in enumerate(zip(got_bits, want_bits, strict=True)):
                assert g == w, f"{name}, event {event}: bits {g} != {w}"
        else:
            for event, (g, w) in enumerate(zip(got, wanted[name], strict=True)):
                assert g == w, f"{name}, event {event}: {g!r} != {w!r}"


@pytest.mark.parametrize("key", sorted(FILES))
def test_every_event_and_field_equals_what_uproot_reads(key: str) -> None:
    real = FILES[key]
    source, table = read(real)
    wanted = expected_columns(real)
    assert source.declared_events == real.events == table.num_rows
    assert source.tree_name == real.tree and source.notes == []
    assert source.guid == wanted["input_guid"][0]
    assert_columns_equal(table, wanted)
    mapped = {name for name, values in wanted.items() if any(v is not None for v in values)}
    # Run and event numbers, GUID, and at least the EventInfo numbers and the weight: never a null there.
    assert {"run_number", "event_number", "lumi_block", "mc_event_weight", "input_guid"} <= mapped
    assert table.column("mc_event_weight").null_count == 0


def test_what_each_file_carries() -> None:
    """The layouts differ: what is present in one file is null in another (never 0 or false)."""
    carried = {key: expected_columns(real) for key, real in FILES.items()}

    def present(key: str, column: str) -> bool:
        return all(v is not None for v in carried[key][column])

    assert present("run2-ttree", "extended_level1_id") and not present("run3-ttree", "extended_level1_id")
    assert present("run2-ttree", "l2_passed_physics")  # Run 2 xAOD: 256 words of zeros, present
    assert carried["run3-ttree"]["hlt_passed_through"] == [None] * 50  # Run 3: empty vectors
    assert present("physlite-rntuple", "provenance") and not present("run2-ttree", "provenance")
    for column in ("is_simulation", "smk", "l1_tbp", "provenance", "bcid"):
        assert carried["cms-nanoaod"][column] == [None] * 200, column
    assert all(carried["run3-ttree"]["is_simulation"])


def test_nanoaod_trigger_names_are_the_sorted_hlt_branches() -> None:
    real = FILES["cms-nanoaod"]
    source, table = read(real)
    names = bit_names(real, "hlt_passed_physics")
    assert len(names) == 441 and names == sorted(names)
    assert source.trigger_names == {"hlt_passed_physics": tuple(names)}
    index = names.index("HLT_HcalPhiSym")  # fired in 140 of the 200 events
    with uproot.open(real.path) as file:
        fired = file["Events"]["HLT_HcalPhiSym"].array(library="np")
    bit = [index in (set_bits(v) or []) for v in table.column("hlt_passed_physics").to_pylist()]
    assert bit == fired.tolist() and 0 < sum(bit) < real.events


def test_nanoaod_without_a_map_is_refused_naming_what_is_missing() -> None:
    with pytest.raises(InputError) as exc:
        open_input(str(FILES["cms-nanoaod"].path))
    text = str(exc.value)
    assert "\n" not in text and "run_number" in text and "RunNumber" in text


def test_declared_bit_order_is_kept(tmp_path: Path) -> None:
    real = FILES["cms-nanoaod"]
    names = ["HLT_HcalPhiSym", "HLT_IsoMu20", "HLT_Ele27_WPLoose_Gsf"]  # not in sorted order
    mapped = tmp_path / "map.json"
    spec = json.loads(real.branch_map.read_text()) if real.branch_map else {}
    spec["branches"]["hlt_passed_physics"] = {"bits": names}
    mapped.write_text(json.dumps(spec))
    source, table = read(real, mapped)
    assert source.trigger_names == {"hlt_passed_physics": tuple(names)}
    with uproot.open(real.path) as file:
        fired = [file["Events"][n].array(library="np").tolist() for n in names]
    wanted = [[i for i in range(3) if fired[i][event]] for event in range(real.events)]
    assert [set_bits(v) for v in table.column("hlt_passed_physics").to_pylist()] == wanted


# ---------------------------------------------------------------- EventInfo unreadable: the collection


@pytest.mark.parametrize(
    ("key", "missing"), [("run3-ttree", "EventInfoAuxDyn.noRunNumber"), ("physlite-rntuple", "EventInfoAuxDyn:none")]
)
def test_fallback_to_the_collection_tree(tmp_path: Path, key: str, missing: str) -> None:
    """An event tree without a run number is read from the POOL collection tree, and the notes say so."""
    real = FILES[key]
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({"branches": {"run_number": [missing, "RunNumber"]}}))
    source, table = read(real, mapped)
    collection = real.tokens[0] if real.tokens else ""
    assert source.tree_name == collection
    assert len(source.notes) == 1 and collection in source.notes[0] and "run_number" in source.notes[0]
    columns = {
        "run_number": "RunNumber", "event_number": "EventNumber", "lumi_block": "LumiBlockN", "bcid": "BunchId",
        "timestamp": "EventTime", "timestamp_ns_offset": "EventTimeNanoSec", "mc_channel_number": "McChannel",
        "mc_event_weight": "EventWeight", "is_simulation": "IsSimulation", "is_calibration": "IsCalibration",
        "is_testbeam": "IsTestBeam",
    }  # fmt: skip
    with uproot.open(real.path) as file:
        tree = file[collection]
        for column, branch in columns.items():
            assert table.column(column).to_pylist() == tree[branch].array(library="ak").tolist(), column
    assert table.column("provenance").to_pylist() == expected_columns(real)["provenance"]
    for column in ("extended_level1_id", "smk", "l1_tbp", "hlt_passed_physics"):
        assert table.column(column).null_count == real.events, column


# ---------------------------------------------------------------- field names


def test_rntuple_fields_are_full_names_never_short_ones() -> None:
    with uproot.open(FILES["physlite-rntuple"].path) as file:
        tree = open_tree(file, "EventData")
        assert isinstance(tree, RNTupleFields) and tree.entries == 100
        for name in (
            "EventInfoAuxDyn:runNumber",
            "xTrigDecisionAux:.smk",
            "xTrigDecisionAux:.tbp",
            "TrigConfKeys.m_smk",
        ):
            assert tree.get(name) is not None, name
        for short in ("smk", "tbp", "m_smk", "runNumber", "_0", "xTrigDecisionAux:._0"):
            assert tree.get(short) is None, short
        assert tree.get("xTrigDecisionAux:.smk").typename == "std::uint32_t"  # type: ignore[union-attr]


def test_ttree_fields_and_members_of_unsplit_objects() -> None:
    with uproot.open(FILES["run2-ttree"].path) as file:
        tree = open_tree(file, "CollectionTree")
        assert isinstance(tree, TTreeFields) and tree.entries == 40
        assert tree.get("EventInfoAux.runNumber") is not None and tree.get("runNumber") is None
        member = tree.get("TrigConfKeys.m_smk")
        assert member is not None and member.member == "m_smk"
        assert tree.get("m_smk") is None and tree.get("TrigConfKeys.nothing") is None
        values = tree.read(["TrigConfKeys.m_smk", "TrigConfKeys.m_hltpsk"], 0, 3)
        assert values["TrigConfKeys.m_smk"].tolist() == [2216] * 3
        assert values["TrigConfKeys.m_hltpsk"].tolist() == [260] * 3


def test_the_rntuple_is_not_enumerated_by_uproots_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """uproot's keys() on the whole RNTuple costs O(fields^2), ~6 s per call on the PHYSLITE file: never called."""
    from uproot.behaviors.RNTuple import HasFields  # type: ignore[import-untyped]
    from uproot.behaviors.RNTuple import RNTuple as NTuple

    calls: list[str] = []
    original = HasFields.keys

    def counting(self: HasFields, *args: object, **kwargs: object) -> list[str]:
        if isinstance(self, NTuple):
            calls.append(self.name)
        return original(self, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(HasFields, "keys", counting)
    _, table = read(FILES["physlite-rntuple"])
    assert table.num_rows == 100 and calls == []


def test_rntuple_subfields_listed_in_one_pass_are_uproots_own() -> None:
    """The subfields given to every RField up front (one pass over the field records) are the ones
    uproot works out itself (a scan of all 2,401 field records per field), for every field of the file."""
    path = FILES["physlite-rntuple"].path
    with uproot.open(path) as seeded_file, uproot.open(path) as plain_file:
        for name in ("EventData", "EventTag"):
            open_tree(seeded_file, name)
            seeded, plain = seeded_file[name].all_fields, plain_file[name].all_fields
            assert len(seeded) == len(plain) > 0
            assert all(field._fields is not None for field in seeded)  # seeded: uproot will not scan again
            for ours, theirs in zip(seeded, plain, strict=True):
                assert [f.field_id for f in ours.fields] == [f.field_id for f in theirs.fields], theirs.path


@pytest.mark.parametrize("key", ["run2-ttree", "run3-ttree"])
def test_vector_element_read_from_the_baskets_equals_uproots_arrays(key: str) -> None:
    """`mcEventWeights[0]` is read from the branch's baskets (std::vector<float>, 10-byte headers, 4-5
    baskets): for entry ranges inside one basket and across basket boundaries, the values equal
    uproot's whole-vector read, element 0."""
    with uproot.open(FILES[key].path) as file:
        tree = open_tree(file, "CollectionTree")
        field = tree.get("EventInfoAuxDyn.mcEventWeights")
        assert field is not None
        whole = field.source.array(library="np")
        bounds = [int(b) for b in field.source.entry_offsets]
        assert len(bounds) > 3
        for start, stop in [(0, tree.entries), (0, 1), (bounds[1] - 1, bounds[2] + 1), (3, tree.entries - 2)]:
            found = tree.element(field, 0, start, stop)
            assert found is not None
            values, valid = found
            assert valid.all()
            assert values.tolist() == [float(v[0]) for v in whole[start:stop]]
        beyond = tree.element(field, 10_000, 0, tree.entries)  # no vector is that long: all null
        assert beyond is not None and not beyond[1].any()


@pytest.mark.parametrize("key", sorted(FILES))
@pytest.mark.parametrize("cut", [10, 500, 5000])
def test_a_real_file_cut_short_is_an_input_error_naming_it(tmp_path: Path, key: str, cut: int) -> None:
    """A file whose end is missing (the streamers, the keys): refused, naming the file, even when uproot
    could read every event of it (it never looks at the end the header records)."""
    real = FILES[key]
    path = tmp_path / f"cut-{real.name}"
    path.write_bytes(real.path.read_bytes()[:-cut])
    with pytest.raises(InputError) as exc:
        list(open_input(str(path), real.branch_map).batches(1000))
    text = str(exc.value)
    assert "\n" not in text and str(path) in text and "truncated ROOT file" in text


@pytest.mark.parametrize("offset", [0, 40, 1000])
def test_damaged_streamers_are_an_input_error_naming_the_file(tmp_path: Path, offset: int) -> None:
    """The streamers of a Run-2 xAOD file zeroed in part: looking up `TrigConfKeys.m_smk` (a member of an
    unsplit object, whose type comes from the streamers) fails in uproot, an InputError naming the field."""
    real = FILES["run2-ttree"]
    data = bytearray(real.path.read_bytes())
    with uproot.open(real.path) as file:
        seek = file.file.fSeekInfo
    data[seek + offset : seek + offset + 200] = bytes(200)
    path = tmp_path / "damaged.root"
    path.write_bytes(data)
    with pytest.raises(InputError) as exc:
        list(open_input(str(path)).batches(1000))
    text = str(exc.value)
    assert "\n" not in text and str(path) in text and "TrigConfKeys.m_smk" in text


def test_a_root_file_the_job_may_not_read_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """chmod 000 (the tests run as root, who reads it anyway: the refusal is injected where the file is opened)."""

    def refused(self: RootInput) -> None:
        raise PermissionError(13, "Permission denied", str(self.path))

    monkeypatch.setattr(RootInput, "_check_length", refused)
    with pytest.raises(InputError, match=r"not a readable ROOT file: .*Permission denied"):
        open_input(str(FILES["run2-ttree"].path), None)
