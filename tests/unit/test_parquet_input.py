"""Parquet inputs: files written with pyarrow from synthetic events, read back column by column."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eventindex.columns import EVENT_SCHEMA, PROVENANCE_TYPE
from eventindex.errors import InputError
from producer.inputs import open_input
from producer.inputs.common import GUID_PATTERN
from producer.inputs.parquet import ParquetInput
from tests.helpers import one_line, read_all
from tests.unit.test_root_input import assert_same_columns

GUID = "5F0C1A2B-3C4D-4E5F-8A9B-0C1D2E3F4A5B"
#: References as a writer may type them: every field nullable.
REFS = pa.list_(pa.struct([field.with_nullable(True) for field in PROVENANCE_TYPE.value_type]))


def write(path: Path, table: pa.Table, *, guid: str | None = None, row_group_size: int = 700) -> Path:
    if guid is not None:
        table = table.replace_schema_metadata({"eventindex.guid": guid})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_full_schema_round_trips(tmp_path: Path, events: pa.Table) -> None:
    source = open_input(str(write(tmp_path / "ev.parquet", events, guid=GUID.lower())))
    assert isinstance(source, ParquetInput)
    assert source.guid == GUID and source.declared_events == len(events)
    # input_guid is a column of the file: taken as it is.
    assert_same_columns(read_all(source), events)


def test_batches_are_bounded_across_row_groups(tmp_path: Path, events: pa.Table) -> None:
    source = ParquetInput(write(tmp_path / "ev.parquet", events))
    tables = list(source.batches(300))
    assert max(t.num_rows for t in tables) <= 300 and sum(t.num_rows for t in tables) == len(events)
    assert_same_columns(pa.concat_tables(tables).combine_chunks(), events)


def test_absent_columns_are_null(tmp_path: Path, events: pa.Table) -> None:
    subset = events.select(["event_number", "run_number", "lumi_block", "l1_tbp"])
    source = ParquetInput(write(tmp_path / "few.parquet", subset))
    assert GUID_PATTERN.fullmatch(source.guid) and source.guid == source.guid.upper()
    table = read_all(source)
    n = len(events)
    for name in ("run_number", "event_number", "lumi_block", "l1_tbp"):
        assert table.column(name).equals(events.column(name)), name
    for name in EVENT_SCHEMA.names:
        if name not in subset.column_names and name != "input_guid":
            assert table.column(name).null_count == n, name  # never a stand-in 0, false or empty list
    assert set(table.column("input_guid").to_pylist()) == {source.guid}


def test_null_values_stay_null(tmp_path: Path, events: pa.Table) -> None:
    n = 6
    table = pa.table(
        {
            "run_number": pa.array([1] * n, pa.uint32()),
            "event_number": pa.array(range(n), pa.uint64()),
            "mc_event_weight": pa.array([0.5, None, 0.0, None, -1.0, 2.0], pa.float64()),
            "mc_channel_number": pa.array([None, 410_000, None, 0, None, 1], pa.int32()),
            "is_simulation": pa.array([True, None, False, None, True, None]),
            "smk": pa.array([None] * n, pa.uint32()),
        }
    )
    read = read_all(ParquetInput(write(tmp_path / "nulls.parquet", table)))
    assert read.column("mc_event_weight").to_pylist() == [0.5, None, 0.0, None, -1.0, 2.0]
    assert read.column("mc_channel_number").to_pylist() == [None, 410_000, None, 0, None, 1]
    assert read.column("is_simulation").to_pylist() == [True, None, False, None, True, None]
    assert read.column("smk").null_count == n and read.schema.equals(EVENT_SCHEMA)


def test_compatible_types_are_cast(tmp_path: Path, events: pa.Table) -> None:
    n = 20
    part = events.slice(0, n)
    loose = pa.table(
        {
            "run_number": part.column("run_number").cast(pa.int64()),
            "event_number": part.column("event_number").cast(pa.int64()),
            "bcid": part.column("bcid").cast(pa.int16()),
            "mc_event_weight": pa.array(np.linspace(0, 1, n), pa.float64()),
            "l1_tbp": part.column("l1_tbp").cast(pa.large_binary()),
            "l1_tap": part.column("l1_tap").cast(pa.binary(64)),
            "hlt_passed_physics": pa.array([b"\x01", b"", None] + [b"\xff" * 1024] * (n - 3)),
            "input_guid": part.column("input_guid").cast(pa.large_string()).dictionary_encode(),
            "provenance": pa.array(
                [*part.column("provenance").to_pylist()[:-1], None],
                pa.large_list(pa.struct([("stream", pa.string()), ("guid", pa.string()), ("oid2", pa.int64())])),
            ),
            "task": pa.array(["t"] * n),  # a warehouse identity column: ignored
        }
    )
    table = read_all(ParquetInput(write(tmp_path / "loose.parquet", loose)))
    for name in ("run_number", "event_number", "bcid", "l1_tbp", "l1_tap", "input_guid"):
        assert table.column(name).equals(part.column(name)), name
    assert np.allclose(table.column("mc_event_weight").to_numpy(), np.linspace(0, 1, n), atol=1e-7)
    hlt = table.column("hlt_passed_physics").to_pylist()
    assert hlt[:3] == [b"\x01" + bytes(1023), None, None]
    refs = table.column("provenance").to_pylist()[0]
    assert table.column("provenance").null_count == 1
    wanted = part.column("provenance").to_pylist()[0]
    assert [(r["stream"], r["guid"], r["oid2"]) for r in refs] == [(r["stream"], r["guid"], r["oid2"]) for r in wanted]
    assert {(r["container"], r["clid"], r["tech"], r["oid1"]) for r in refs} == {(None, None, None, None)}
    assert table.column("provenance")[n - 1].as_py() is None  # a null list stays null


def test_content_guid_is_deterministic(tmp_path: Path, events: pa.Table) -> None:
    a = write(tmp_path / "a.parquet", events)
    b = tmp_path / "b.parquet"
    b.write_bytes(a.read_bytes())
    c = write(tmp_path / "c.parquet", events.slice(1))
    assert ParquetInput(a).guid == ParquetInput(b).guid != ParquetInput(c).guid


# ---------------------------------------------------------------- failures


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        open_input(str(tmp_path / "nope.parquet"))


def test_a_fifo_a_device_and_a_broken_link_are_named_as_such(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.parquet")
    with pytest.raises(InputError, match=r"pipe\.parquet: not a regular file"):
        open_input(str(tmp_path / "pipe.parquet"))
    with pytest.raises(InputError, match="/dev/null: not a regular file"):
        open_input("parquet:/dev/null")
    (tmp_path / "link.parquet").symlink_to(tmp_path / "gone.parquet")
    with pytest.raises(InputError, match=r"a symbolic link to .*gone\.parquet, which does not exist"):
        open_input(str(tmp_path / "link.parquet"))


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "text.parquet"
    path.write_text("not parquet at all\n" * 10)
    with pytest.raises(InputError) as exc:
        ParquetInput(path)
    assert str(path) in one_line(exc) and "not a readable Parquet file" in str(exc.value)


@pytest.mark.parametrize("keep", [0.1, 0.6, 0.999])
def test_truncated_file(tmp_path: Path, events: pa.Table, keep: float) -> None:
    whole = write(tmp_path / "whole.parquet", events).read_bytes()
    path = tmp_path / "cut.parquet"
    path.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(InputError) as exc:
        list(ParquetInput(path).batches(500))
    assert str(path) in one_line(exc)


def test_corrupt_row_group_names_it(tmp_path: Path, events: pa.Table) -> None:
    path = write(tmp_path / "ev.parquet", events)
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(1).column(0)
    data = bytearray(path.read_bytes())
    start = column.data_page_offset
    data[start : start + column.total_compressed_size] = b"\xa5" * column.total_compressed_size
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as exc:
        list(ParquetInput(path).batches(700))
    assert "row group 1 (rows 700..1399)" in one_line(exc)


@pytest.mark.parametrize(
    ("column", "array", "words"),
    [
        ("run_number", pa.array([1.0] * 3), "'run_number' has type double"),
        ("lumi_block", pa.array(["1"] * 3), "'lumi_block' has type string"),
        ("is_simulation", pa.array([1] * 3, pa.int8()), "'is_simulation' has type int8"),
        ("l1_tbp", pa.array(["ff"] * 3), "'l1_tbp' has type string"),
        ("provenance", pa.array([1] * 3), "'provenance' has type int64"),
        ("bcidd", pa.array([1] * 3), "'bcidd' is not an event column"),
    ],
)
def test_incompatible_column_is_refused(tmp_path: Path, column: str, array: pa.Array, words: str) -> None:
    table = pa.table({"run_number": pa.array([1, 1, 1], pa.uint32()), "event_number": pa.array([1, 2, 3], pa.uint64())})
    table = table.drop_columns([column]) if column in table.column_names else table
    path = write(tmp_path / "bad.parquet", table.append_column(column, array))
    with pytest.raises(InputError) as exc:
        ParquetInput(path)
    assert str(path) in one_line(exc) and words in str(exc.value)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"bcid": pa.array([0, -1, 0], pa.int32())}, "row 1: bcid value -1 is outside 0..4294967295"),
        ({"lumi_block": pa.array([0, 1, 2**32], pa.int64())}, "row 2: lumi_block value 4294967296 is outside"),
        ({"event_number": pa.array([1, 2**63, 3], pa.uint64())}, "row 1: event_number 9223372036854775808 is 2^63"),
        ({"event_number": pa.array([1, -2, 3], pa.int64())}, "row 1: event_number value -2 is outside"),
        (
            {
                "provenance": pa.array(
                    [[], [{"stream": "S", "guid": "G", "oid1": 2**64 - 1}], []],
                    pa.list_(pa.struct([("stream", pa.string()), ("guid", pa.string()), ("oid1", pa.uint64())])),
                )
            },
            "row 1: provenance.oid1 18446744073709551615 is 2^63 or more",
        ),
        (
            {
                "provenance": pa.array(
                    [[], [], [{"stream": "S", "guid": "G", "tech": 2**32}]],
                    pa.list_(pa.struct([("stream", pa.string()), ("guid", pa.string()), ("tech", pa.int64())])),
                )
            },
            "row 2: provenance.tech value 4294967296 is outside 0..4294967295",
        ),
        ({"run_number": pa.array([1, None, 1], pa.uint32())}, "row 1: column 'run_number' is null"),
        ({"l1_tav": pa.array([b"", b"", b"\0" * 65])}, "row 2: l1_tav has 65 bytes"),
        (
            {"provenance": pa.array([[], [], [{"stream": "S", "guid": None}]], REFS)},
            "row 2: a provenance reference has no guid",
        ),
        ({"input_guid": pa.array([GUID, "", GUID])}, "row 1: column 'input_guid' is an empty or blank string"),
        ({"input_guid": pa.array([GUID, GUID, " \t"]).dictionary_encode()}, "row 2: column 'input_guid' is an empty"),
        (
            {"provenance": pa.array([[], [{"stream": "S", "guid": GUID}, {"stream": "", "guid": GUID}], []], REFS)},
            "row 1: a provenance reference has an empty or blank stream",
        ),
        (
            {"provenance": pa.array([[], [], [{"stream": "S", "guid": "  "}]], REFS)},
            "row 2: a provenance reference has an empty or blank guid",
        ),
    ],
)
def test_bad_value_names_the_row(tmp_path: Path, extra: dict[str, pa.Array], words: str) -> None:
    columns = {"run_number": pa.array([1, 1, 1], pa.uint32()), "event_number": pa.array([1, 2, 3], pa.uint64())}
    columns.update(extra)
    path = write(tmp_path / "bad.parquet", pa.table(columns))
    with pytest.raises(InputError) as exc:
        list(ParquetInput(path).batches(10))
    assert str(path) in one_line(exc) and words in str(exc.value)


def test_a_column_given_twice_is_refused(tmp_path: Path) -> None:
    """Which of two `event_number` columns is the event number? Never a guess (nor a KeyError)."""
    numbers = pa.array([1, 2], pa.uint64())
    table = pa.Table.from_arrays(
        [pa.array([1, 1], pa.uint32()), numbers, numbers], names=["run_number", "event_number", "event_number"]
    )
    path = write(tmp_path / "twice.parquet", table)
    with pytest.raises(InputError) as exc:
        list(open_input(str(path)).batches(10))
    assert str(path) in one_line(exc) and "column 'event_number' is there twice" in str(exc.value)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"stream": "S", "guid": GUID, "oid_1": 4}, "provenance field 'oid_1' is not a provenance field"),
        ({"stream": "S", "guid": GUID, "contianer": "C"}, "provenance field 'contianer' is not a provenance field"),
        # a number is never cast to a string field ("5" was stored)
        ({"stream": 5, "guid": GUID}, "provenance field 'stream' has type int64, expected a string"),
        (
            {"stream": "S", "guid": GUID, "container": 7},
            "provenance field 'container' has type int64, expected a string",
        ),
    ],
)
def test_an_unknown_provenance_field_is_refused(tmp_path: Path, fields: dict[str, object], words: str) -> None:
    """A misspelt reference field is never silently taken for an absent one (null), as in JSON lines."""
    table = pa.table(
        {
            "run_number": pa.array([1, 1], pa.uint32()),
            "event_number": pa.array([1, 2], pa.uint64()),
            "provenance": pa.array([[], [fields]]),
        }
    )
    path = write(tmp_path / "refs.parquet", table)
    with pytest.raises(InputError) as exc:
        list(ParquetInput(path).batches(10))
    assert str(path) in one_line(exc) and words in str(exc.value)


def test_a_provenance_field_given_twice_is_refused(tmp_path: Path) -> None:
    struct = pa.StructArray.from_arrays(
        [pa.array(["S"]), pa.array([GUID]), pa.array(["T"])], names=["stream", "guid", "stream"]
    )
    refs = pa.ListArray.from_arrays(pa.array([0, 0, 1], pa.int32()), struct)
    table = pa.table({"run_number": pa.array([1, 1], pa.uint32()), "event_number": pa.array([1, 2], pa.uint64())})
    path = write(tmp_path / "refs.parquet", table.append_column("provenance", refs))
    with pytest.raises(InputError) as exc:
        list(ParquetInput(path).batches(10))
    assert str(path) in one_line(exc) and "provenance field 'stream' is there twice" in str(exc.value)


def test_missing_required_column(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.parquet", pa.table({"run_number": pa.array([1], pa.uint32())}))
    with pytest.raises(InputError, match="no event_number column"):
        ParquetInput(path)


def test_bad_guid_metadata(tmp_path: Path, events: pa.Table) -> None:
    path = write(tmp_path / "ev.parquet", events.slice(0, 3), guid="nope")
    with pytest.raises(InputError, match=r"eventindex\.guid.*not a GUID"):
        ParquetInput(path)


# ---------------------------------------------------------------- through the CLIs into the warehouse


def test_a_double_weight_beyond_float32_is_refused_not_stored_as_infinity(tmp_path: Path, events: pa.Table) -> None:
    """As JSON lines do: 3.5e38 would be stored as inf (a value the input never said). NaN and nulls stay."""
    part = events.slice(0, 4).select(["run_number", "event_number"])
    fine = part.append_column("mc_event_weight", pa.array([1.5, None, 1e-300, float("nan")], pa.float64()))
    weights = read_all(open_input(str(write(tmp_path / "fine.parquet", fine)))).column("mc_event_weight")
    assert weights.to_pylist()[:3] == [1.5, None, 0.0] and np.isnan(weights[3].as_py())
    big = part.append_column("mc_event_weight", pa.array([1.0, None, 3.5e38, 2.0], pa.float64()))
    with pytest.raises(InputError) as exc:
        read_all(open_input(str(write(tmp_path / "big.parquet", big))))
    assert one_line(exc).endswith("row 2: mc_event_weight value 3.5e+38 is beyond the range of a 32-bit float "
                                  "(about 3.4e38): it would be stored as infinity")  # fmt: skip
