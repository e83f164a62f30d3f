"""ei-catalog's questions on DuckDB, checked against the events themselves (tests.catalog_expected) on a
warehouse the real pipeline wrote: duplicates across and within tasks, a partial task, an amended
task, and next to them a load that died in `_staging` and parts in place without a marker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from catalog.bits import parse_bits
from catalog.engines import duckdb_engine
from catalog.engines.base import Engine
from catalog.errors import QueryError
from catalog.keys import request_table
from catalog.questions import count, dataset_overlap, duplicates, lookup
from catalog.selection import Range
from catalog.session import Session
from tests import catalog_expected as expected
from tests.catalog_fixtures import catalog_case, duckdb_session
from tests.catalog_warehouse import CatalogCase, synthetic_events

__all__ = ["catalog_case", "duckdb_session"]  # fixtures


@pytest.fixture
def case(catalog_case: CatalogCase) -> CatalogCase:
    return catalog_case


@pytest.fixture
def session(duckdb_session: Session) -> Session:
    return duckdb_session


def uncommitted_keys() -> list[tuple[int, int]]:
    """Events only the uncommitted tasks hold (dsA/tU staged, dsA/tV in place without a marker)."""
    keys = []
    for seed in (9, 10):
        table = synthetic_events(seed).slice(0, 40)
        keys += list(zip(table.column("run_number").to_pylist(), table.column("event_number").to_pylist(), strict=True))
    return keys


def found_copies(document: dict[str, Any]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    found = {}
    for event in document["events"]:
        copies = [{k: v for k, v in copy.items() if k != "file"} for copy in event["copies"]]
        found[(event["run_number"], event["event_number"])] = copies
    return found


# ---------------------------------------------------------------- event picking


def test_lookup_finds_every_committed_copy_and_nothing_uncommitted(case: CatalogCase, session: Session) -> None:
    keys = expected.sample_keys(case, 1, 400) + uncommitted_keys() + [(456_000, 1), (1, 1)]
    answer = lookup(session, request_table(keys), ["*"])
    document = answer.document()
    want = expected.lookup(case, keys, ["dsA", "dsB"])
    assert found_copies(document) == want["found"]
    assert [(m["run_number"], m["event_number"]) for m in document["not_found"]] == want["missing"]
    assert set(uncommitted_keys()) <= set(want["missing"])
    assert document["requested"] == len(set(keys))
    # Table and CSV rows: one per provenance reference of each copy, one per event found nowhere.
    references = sum(len(c["provenance"]) for copies in want["found"].values() for c in copies)
    assert answer.table.num_rows == references + len(want["missing"])
    assert answer.table.column("status").to_pylist().count("not found") == len(want["missing"])


def test_a_large_pick_reads_in_two_phases_with_the_same_answer(
    case: CatalogCase, session: Session, monkeypatch: Any
) -> None:
    keys = expected.sample_keys(case, 5, 400) + uncommitted_keys() + [(456_000, 1), (1, 1)]
    one_join = lookup(session, request_table(keys), ["*"])
    monkeypatch.setattr(duckdb_engine, "TWO_PHASE_EVENTS", 0)

    def one_join_only(*args: Any) -> None:
        raise AssertionError("the pick was read in one join")

    monkeypatch.setattr(Engine, "pick", one_join_only)  # what DuckDBEngine.pick falls back to
    two_phases = lookup(session, request_table(keys), ["*"])
    assert two_phases.table.equals(one_join.table)
    want = expected.lookup(case, keys, ["dsA", "dsB"])
    assert found_copies(two_phases.document()) == want["found"]
    assert [(m["run_number"], m["event_number"]) for m in two_phases.document()["not_found"]] == want["missing"]
    # Keys inside the committed files' (run, event) ranges but held by no row: the files are read, nothing found.
    held = case.events()
    held_keys = set(zip(held.column("run_number").to_pylist(), held.column("event_number").to_pylist(), strict=True))
    absent = [(run, event + 1) for run, event in sorted(held_keys) if (run, event + 1) not in held_keys][:2]
    assert len(absent) == 2
    read: list[Any] = []
    monkeypatch.setattr(duckdb_engine.DuckDBEngine, "pick", _recording(duckdb_engine.DuckDBEngine.pick, read))
    nowhere = lookup(session, request_table(absent), ["*"]).document()
    assert read, "the two-phase pick ran on the files holding the keys' ranges"
    assert nowhere["found"] == 0 and [(m["run_number"], m["event_number"]) for m in nowhere["not_found"]] == absent


def _recording(method: Any, calls: list[Any]) -> Any:
    def recorded(self: Any, *args: Any) -> Any:
        calls.append(args)
        return method(self, *args)

    return recorded


def test_lookup_names_the_part_file_holding_each_copy(case: CatalogCase, session: Session) -> None:
    keys = expected.sample_keys(case, 2, 60)
    for event in lookup(session, request_table(keys), ["*"]).document()["events"]:
        for copy in event["copies"]:
            path = f"{case.warehouse.task_dir(copy['dataset'], copy['task'])}/{copy['file']}"
            table = pq.read_table(path, columns=["run_number", "event_number"])
            pairs = set(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))
            assert (event["run_number"], event["event_number"]) in pairs


def test_lookup_in_some_datasets_only(case: CatalogCase, session: Session) -> None:
    keys = expected.sample_keys(case, 3, 300)
    document = lookup(session, request_table(keys), ["dsB"]).document()
    want = expected.lookup(case, keys, ["dsB"])
    assert found_copies(document) == want["found"]
    assert len(want["found"]) > 20 and len(want["missing"]) > 20


def test_lookup_of_events_found_nowhere_is_an_answer(session: Session) -> None:
    document = lookup(session, request_table([(1, 2), (3, 4)]), ["*"]).document()
    assert document["events"] == [] and document["found"] == 0
    assert document["not_found"] == [{"run_number": 1, "event_number": 2}, {"run_number": 3, "event_number": 4}]


def test_lookup_reads_only_the_files_the_index_keeps(case: CatalogCase, session: Session, monkeypatch: Any) -> None:
    read: list[str] = []
    engine = session.engine
    use_data = engine.use_data

    def counted(files: Any) -> Any:
        read.extend(engine.path(f) for f in files)
        return use_data(files)

    monkeypatch.setattr(engine, "use_data", counted)
    key = expected.sample_keys(case, 4, 1)[0]
    lookup(session, request_table([key]), ["*"])
    total = sum(1 for _ in Path(case.warehouse.root).rglob("part-*.parquet"))
    assert 1 <= len(read) <= 3 < total
    for path in read:  # every file read is committed, and its footer's key range holds the key
        assert "_staging" not in path and "task=tU" not in path and "task=tV" not in path


def test_unknown_dataset_is_refused(session: Session) -> None:
    with pytest.raises(QueryError, match="no committed task"):
        lookup(session, request_table([(1, 1)]), ["dsZ*"])
    with pytest.raises(QueryError, match="no committed task"):
        dataset_overlap(session, ["dsA", "nope"])


# ---------------------------------------------------------------- trigger counts


BITS = "l1_tav:0,l1_tav:7,l1_tap:14,l1_tbp:21,l1_tav:1,hlt_passed_physics:3,hlt_passed_physics:40,hlt_passed_through:3"


def _bits(text: str) -> list[tuple[str, Any]]:
    return [(s.mask, s.number if s.number is not None else s.name) for s in parse_bits(text)]


@pytest.mark.parametrize(
    ("globs", "datasets", "runs", "lumi"),
    [
        (["*"], ["dsA", "dsB"], None, None),
        (["dsA"], ["dsA"], None, None),
        (["ds?"], ["dsA", "dsB"], (456_000, 456_000), None),
        (["dsA", "dsB"], ["dsA", "dsB"], None, (40, 41)),
        (["dsB"], ["dsB"], (456_001, 456_009), (1, 10_000)),
    ],
)
def test_count_bits_and_overlaps_match_the_bytes(
    case: CatalogCase, session: Session, globs: list[str], datasets: list[str], runs: Any, lumi: Any
) -> None:
    answer = count(session, globs, parse_bits(BITS), Range(*runs) if runs else None, Range(*lumi) if lumi else None,
                   overlap=True)  # fmt: skip
    document = answer.document()
    want = expected.count(case, datasets, _bits(BITS), runs, lumi)
    assert document["scanned"] == want["scanned"] > 0
    assert [b["events"] for b in document["bits"]] == want["counts"]
    assert document["overlap"]["events"] == want["pairs"]
    assert want["counts"][1] > 0 and want["counts"][4] == 0  # bit 7 is an L1 item, bit 1 is not
    assert answer.table.column("events").to_pylist() == want["counts"]


COUNT_BITS = (
    "l1_tav:0,l1_tav:7,l1_tap:14,l1_tbp:21,l1_tav:1,hlt_passed_physics:3,hlt_passed_through:3,l2_passed_physics:5"
)


@pytest.mark.parametrize(
    ("runs", "lumi"),
    [(None, None), ((456_000, 456_000), None), ((0, 10**9), (0, 10**6)), (None, (40, 41)),
     ((456_001, 456_009), (1, 10_000))],
)  # fmt: skip
def test_counts_from_the_index_match_the_bytes_and_a_scan(
    case: CatalogCase, session: Session, monkeypatch: Any, runs: Any, lumi: Any
) -> None:
    """Every row group here holds one run and one lumi block, so no range cuts one: no file is read.
    (tests/unit/test_catalog_counts.py has ranges that cut row groups.)"""
    scanned: list[str] = []
    use_data = session.engine.use_data

    def spy(files: Any) -> None:
        scanned.extend(f"{f.task.task}/{f.name}" for f in files)
        use_data(files)

    monkeypatch.setattr(session.engine, "use_data", spy)
    ranges = Range(*runs) if runs else None, Range(*lumi) if lumi else None
    document = count(session, ["*"], parse_bits(COUNT_BITS), *ranges, overlap=False).document()
    from_index = list(scanned)
    scanned.clear()
    read = count(session, ["*"], parse_bits(COUNT_BITS), *ranges, overlap=False, scan=True).document()
    want = expected.count(case, ["dsA", "dsB"], _bits(COUNT_BITS), runs, lumi)
    assert document == read
    assert document["scanned"] == want["scanned"] > 0
    assert [b["events"] for b in document["bits"]] == want["counts"]
    assert want["counts"][1] > 0 and want["counts"][4] == 0 and want["counts"][7] == 0  # l2 masks: all null
    assert from_index == [] and scanned


def test_count_by_name_where_input_files_disagree_reads_those_files(case: CatalogCase, session: Session) -> None:
    spec = "l1_tav:L1_ITEM_7,l1_tap:L1_ITEM_14,l1_tav:7"
    document = count(session, ["dsA"], parse_bits(spec), None, None, overlap=False).document()
    want = expected.count(case, ["dsA"], _bits(spec), None, None)
    assert [b["events"] for b in document["bits"]] == want["counts"] and document["scanned"] == want["scanned"]
    assert document == count(session, ["dsA"], parse_bits(spec), None, None, overlap=False, scan=True).document()


def test_count_by_trigger_name_takes_each_tasks_menu(case: CatalogCase, session: Session) -> None:
    spec = "l1_tav:L1_ITEM_7,l1_tav:L1_ITEM_14,l1_tbp:L1_ITEM_7,l1_tav:7,l1_tav:8"
    document = count(session, ["dsA"], parse_bits(spec), None, None, overlap=True).document()
    want = expected.count(case, ["dsA"], _bits(spec), None, None)
    assert [b["events"] for b in document["bits"]] == want["counts"]
    assert document["overlap"]["events"] == want["pairs"]
    assert document["bits"][0]["positions"] == [7, 8]  # t1 names bit 7 L1_ITEM_7, the later menu bit 8
    assert want["counts"][0] > 0


def test_count_names_need_recorded_names(session: Session) -> None:
    with pytest.raises(QueryError, match="records l1_tav trigger names"):
        count(session, ["dsB"], parse_bits("l1_tav:L1_ITEM_7"), None, None, overlap=False)
    with pytest.raises(QueryError, match="names a l1_tav bit 'L1_NOPE'"):
        count(session, ["dsA"], parse_bits("l1_tav:L1_NOPE"), None, None, overlap=False)
    with pytest.raises(QueryError, match="records no trigger names"):  # dsB's task has none: name per task
        count(session, ["ds*"], parse_bits("l1_tav:L1_ITEM_7"), None, None, overlap=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [("l1_tav:512", "out of range"), ("hlt_passed_physics:8192", "out of range"), ("l1_xyz:1", "unknown mask"),
     ("l1_tav", "expected MASK:BIT"), ("l1_tav:", "expected MASK:BIT"),
     ("l1_tav:\u00b2", "digits 0-9"), ("l1_tav:\u0663", "digits 0-9"), ("l1_tav:-\u0663", "digits 0-9")],
)  # fmt: skip
def test_bad_bits_are_refused(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_bits(text)


def test_a_bit_given_twice_is_counted_once(case: CatalogCase, session: Session) -> None:
    """Labels are the answer's column names: the same bit three times made a matrix without a column for it."""
    answer = count(session, ["*"], parse_bits("l1_tav:7,l1_tav:0,l1_tav:7,l1_tav:+7"), None, None, overlap=True)
    want = expected.count(case, ["dsA", "dsB"], [("l1_tav", 7), ("l1_tav", 0)])
    assert answer.table.column_names == ["bit", "mask", "position", "events", "scanned", "l1_tav:7", "l1_tav:0"]
    assert answer.document()["overlap"] == {"bits": ["l1_tav:7", "l1_tav:0"], "events": want["pairs"]}


def test_count_over_a_range_without_rows_is_an_answer(session: Session) -> None:
    document = count(session, ["*"], parse_bits("l1_tav:7"), Range(1, 2), None, overlap=True).document()
    assert document == {
        "scanned": 0,
        "bits": [{"bit": "l1_tav:7", "mask": "l1_tav", "positions": [7], "events": 0}],
        "overlap": {"bits": ["l1_tav:7"], "events": [[0]]},
    }


# ---------------------------------------------------------------- dataset overlap and duplicates


def test_dataset_overlap_counts_distinct_events_in_each_and_each_pair(case: CatalogCase, session: Session) -> None:
    document = dataset_overlap(session, ["dsA", "dsB"]).document()
    matrix = expected.dataset_overlap(case, ["dsA", "dsB"])
    assert document["events"] == {"dsA": matrix[0][0], "dsB": matrix[1][1]}
    assert document["pairs"] == [{"a": "dsA", "b": "dsB", "events": matrix[0][1]}]
    assert matrix[0][1] == 1_500  # t1/j2's events are t7/j1's


def test_duplicates_across_tasks_and_within_a_task(case: CatalogCase, session: Session) -> None:
    for globs, datasets in ((["*"], ["dsA", "dsB"]), (["dsA"], ["dsA"]), (["dsB"], ["dsB"])):
        document = duplicates(session, globs).document()
        seen = {
            (e["run_number"], e["event_number"]): sorted(
                (c["dataset"], c["task"], c["job"], c["attempt"], c["input_guid"], c["lumi_block"], c["loaded"])
                for c in e["copies"]
            )
            for e in document["duplicates"]
        }
        assert seen == expected.duplicates(case, datasets)
    document = duplicates(session, ["*"]).document()
    assert document["events"] == 1_500 + 1_500 + 250
    loaded_files = {c["file"] for e in document["duplicates"] for c in e["copies"] if c["loaded"]}
    assert None not in loaded_files and all(name.startswith("part-") for name in loaded_files)
    assert duplicates(session, ["dsB"]).document()["events"] == 0
