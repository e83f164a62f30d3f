"""JSON-lines inputs: files written with json from synthetic events, read back column by column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from eventindex.columns import EVENT_SCHEMA, MASK_COLUMNS
from eventindex.errors import InputError
from producer.inputs import open_input
from producer.inputs.common import GUID_PATTERN
from producer.inputs.jsonl import JsonLinesInput
from tests.helpers import one_line, read_all
from tests.unit.test_root_input import assert_same_columns

GUID = "0F1E2D3C-4B5A-4968-8776-655443322110"
MASKS = dict(MASK_COLUMNS)


def records(events: pa.Table, *, trim: bool = False) -> list[dict[str, Any]]:
    """Events as JSON objects: masks as hex (optionally without trailing zero bytes; "00" when all zero)."""
    out = []
    for row in events.to_pylist():
        for name in MASKS:
            if row[name] is not None:
                row[name] = ((row[name].rstrip(b"\0") or b"\0") if trim else row[name]).hex()
        out.append(row)
    return out


def write(path: Path, rows: list[dict[str, Any]], header: dict[str, Any] | None = None) -> Path:
    with path.open("w") as stream:
        if header is not None:
            stream.write(json.dumps({"eventindex": header}) + "\n")
        for row in rows:
            stream.write(json.dumps(row) + "\n")
    return path


def test_full_schema_round_trips(tmp_path: Path, events: pa.Table) -> None:
    path = write(tmp_path / "ev.jsonl", records(events), {"guid": GUID.lower(), "events": len(events)})
    source = open_input(str(path))
    assert isinstance(source, JsonLinesInput)
    assert source.guid == GUID and source.declared_events == len(events)
    assert_same_columns(read_all(source), events)


def test_trimmed_masks_blank_lines_and_ndjson(tmp_path: Path, events: pa.Table) -> None:
    path = tmp_path / "ev.ndjson"
    rows = records(events, trim=True)
    path.write_text("\n".join(json.dumps(row) for row in rows[:10]) + "\n\n   \n" + json.dumps(rows[10]))  # no final \n
    source = open_input(str(path))
    assert source.declared_events is None
    assert_same_columns(read_all(source), events.slice(0, 11))


def test_batches_are_bounded_and_in_order(tmp_path: Path, events: pa.Table) -> None:
    source = JsonLinesInput(write(tmp_path / "ev.jsonl", records(events)))
    tables = list(source.batches(300))
    assert [t.num_rows for t in tables] == [300] * 6 + [200]
    assert_same_columns(pa.concat_tables(tables).combine_chunks(), events)


def test_absent_keys_are_null(tmp_path: Path) -> None:
    path = write(tmp_path / "min.jsonl", [{"run_number": 1, "event_number": 2}, {"run_number": 1, "event_number": 3}])
    source = JsonLinesInput(path)
    assert GUID_PATTERN.fullmatch(source.guid) and source.guid == source.guid.upper()
    table = read_all(source)
    assert table.column("event_number").to_pylist() == [2, 3]
    for name in EVENT_SCHEMA.names:
        if name not in ("run_number", "event_number", "input_guid"):
            assert table.column(name).null_count == 2, name  # never a stand-in 0, false or empty list
    assert table.column("input_guid").to_pylist() == [source.guid] * 2


def test_null_values_are_null_and_zeros_stay_values(tmp_path: Path) -> None:
    from producer.inputs.jsonl import CHECKS, _fast

    rows: list[dict[str, Any]] = [
        {**GOOD, "lumi_block": 0, "is_simulation": False, "mc_event_weight": 0.0, "smk": None, "provenance": []},
        {**GOOD, "lumi_block": None, "is_simulation": None, "mc_event_weight": None, "smk": 0, "provenance": None},
    ]
    source = JsonLinesInput(write(tmp_path / "n.jsonl", rows))
    table = read_all(source)
    expected: dict[str, list[Any]] = {
        "lumi_block": [0, None],
        "is_simulation": [False, None],
        "mc_event_weight": [0.0, None],
        "smk": [None, 0],
        "provenance": [[], None],
    }
    for name, values in expected.items():
        assert table.column(name).to_pylist() == values, name
        # The line-by-line conversion (taken when the bulk check fails) agrees with the bulk one.
        field = EVENT_SCHEMA.field(name)
        bulk = _fast(name, field.type, values)
        assert bulk is not None and bulk.to_pylist() == values, name
        assert pa.array(source._checked(name, CHECKS[name], values, [2, 3]), field.type).to_pylist() == values, name


GOOD = {"run_number": 1, "event_number": 2}


def test_provenance_defaults_and_explicit_nulls(tmp_path: Path) -> None:
    row = {
        "run_number": 1,
        "event_number": 2,
        "extended_level1_id": None,
        "l1_tbp": "",
        "l1_tap": None,
        "mc_event_weight": 1,
        "provenance": [{"stream": "StreamAOD", "guid": GUID, "oid2": 7}],
        "task": "ignored",
    }
    ref = {"stream": "StreamAOD", "guid": GUID, "container": None, "clid": None, "tech": None, "oid1": None}
    table = read_all(JsonLinesInput(write(tmp_path / "p.jsonl", [row, {**GOOD, "provenance": None}])))
    assert table.column("provenance").to_pylist() == [[{**ref, "oid2": 7}], None]
    assert table.column("l1_tbp").null_count == table.column("l1_tap").null_count == 2
    assert table.column("mc_event_weight").to_pylist() == [1.0, None]
    # Explicit nulls in a reference, and a float that sends the column line by line: the same references.
    rows = [{**GOOD, "provenance": [{**ref, "oid2": 7}]}, {**GOOD, "provenance": [{**ref, "oid2": 7}]}]
    table = read_all(JsonLinesInput(write(tmp_path / "q.jsonl", rows)))
    assert table.column("provenance").to_pylist() == [[{**ref, "oid2": 7}]] * 2


def test_content_guid_is_deterministic(tmp_path: Path, events: pa.Table) -> None:
    a = write(tmp_path / "a.jsonl", records(events.slice(0, 50)))
    b = tmp_path / "b.jsonl"
    b.write_bytes(a.read_bytes())
    c = write(tmp_path / "c.jsonl", records(events.slice(0, 49)))
    assert JsonLinesInput(a).guid == JsonLinesInput(b).guid != JsonLinesInput(c).guid


# ---------------------------------------------------------------- failures


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        open_input(str(tmp_path / "nope.jsonl"))


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "dir.jsonl"
    path.mkdir()
    with pytest.raises(InputError) as exc:
        JsonLinesInput(path)
    assert str(path) in one_line(exc)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"run_number": 1, "event_', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ("\xff\xfe", "not valid JSON"),
        ('{"run_number": 1}', "no event_number"),
        ('{"run_number": 1, "event_number": 2, "bcidd": 3}', "'bcidd' is not an event column"),
        ('{"run_number": -1, "event_number": 2}', "run_number: value -1 is outside 0..4294967295"),
        ('{"run_number": 4294967296, "event_number": 2}', "run_number: value 4294967296 is outside 0..4294967295"),
        ('{"run_number": 1, "event_number": 9223372036854775808}', "event_number: 9223372036854775808 is 2^63 or more"),
        ('{"run_number": 1, "event_number": 18446744073709551616}', "event_number: 18446744073709551616 is 2^63"),
        ('{"run_number": 1.5, "event_number": 2}', "run_number: expected an integer, got 1.5"),
        ('{"run_number": true, "event_number": 2}', "run_number: expected an integer, got true"),
        ('{"run_number": 1, "event_number": null}', "event_number: null is not allowed"),
        ('{"run_number": 1, "event_number": 2, "input_guid": null}', "input_guid: null is not allowed"),
        ('{"run_number": 1, "event_number": 2, "is_simulation": 1}', "is_simulation: expected true or false"),
        ('{"run_number": 1, "event_number": 2, "mc_event_weight": "1"}', "mc_event_weight: expected a number"),
        ('{"run_number": 1, "event_number": 2, "l1_tbp": "xyz0"}', "l1_tbp: not a hex string"),
        ('{"run_number": 1, "event_number": 2, "l1_tbp": "00 11"}', "l1_tbp: not a hex string"),
        ('{"run_number": 1, "event_number": 2, "l1_tav": "' + "00" * 65 + '"}', "l1_tav: 130 hex digits"),
        ('{"run_number": 1, "event_number": 2, "l1_tap": 5}', "l1_tap: expected a hex string"),
        ('{"run_number": 1, "event_number": 2, "provenance": {}}', "provenance: expected a list"),
        ('{"run_number": 1, "event_number": 2, "provenance": [{"stream": "S"}]}', "reference 0 has no guid"),
        ('{"run_number": 1, "event_number": 2, "provenance": [{"stream": "S", "guid": "G", "oid1": -1}]}', "oid1"),
        (
            '{"run_number": 1, "event_number": 2, "provenance": [{"stream": "S", "guid": "G", '
            '"oid1": 9223372036854775808}]}',
            "reference 0: oid1: 9223372036854775808 is 2^63 or more",
        ),
        (
            '{"run_number": 1, "event_number": 2, "provenance": [{"stream": "S", "guid": "G", "tech": 4294967296}]}',
            "reference 0: tech: value 4294967296 is outside 0..4294967295",
        ),
        ('{"run_number": 1, "event_number": 2, "provenance": [{"stream": "S", "guid": "G", "oid": 1}]}', "unknown key"),
        (
            '{"run_number": 1, "event_number": 2, "provenance": [{"stream": "S", "guid": "G", "container": "", '
            '"clid": "", "tech": 0, "oid1": 0, "oid2": 2.5}]}',
            "reference 0: oid2: expected an integer, got 2.5",
        ),
        ('{"run_number": 1, "event_number": 2, "input_guid": 7}', "input_guid: expected a string"),
        ('{"run_number": 1, "event_number": 2, "input_guid": ""}', "input_guid: an empty or blank string"),
        ('{"run_number": 1, "event_number": 2, "input_guid": " "}', "input_guid: an empty or blank string"),
        (
            '{"run_number": 1, "event_number": 2, "provenance": [{"stream": "", "guid": "G"}]}',
            "reference 0: stream is an empty or blank string",
        ),
        (
            '{"run_number": 1, "event_number": 2, "provenance": [{"stream": "S", "guid": " "}]}',
            "reference 0: guid is an empty or blank string",
        ),
        ('{"run_number": 1, "event_number": 2, "mc_event_weight": NaN}', "expected a finite number, got NaN"),
        ('{"run_number": 1, "event_number": 2, "mc_event_weight": Infinity}', "expected a finite number"),
        ('{"run_number": 1, "event_number": 2, "mc_event_weight": -Infinity}', "expected a finite number"),
        ('{"run_number": 1, "event_number": 2, "mc_event_weight": 1e400}', "expected a finite number"),
        ('{"run_number": 1, "event_number": 2, "mc_event_weight": 1e39}', "beyond the range of a 32-bit float"),
        ('{"run_number": 1, "event_number": 2, "mc_event_weight": ' + "9" * 400 + "}", "beyond the range"),
        ("[" * 100_000, "JSON nested too deeply"),
        ('{"run_number": 1, "event_number": 2, "provenance": ' + "[" * 100_000, "JSON nested too deeply"),
    ],
)
def test_bad_line_names_its_number(tmp_path: Path, line: str, words: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps(GOOD)
    path.write_bytes(("\n".join([json.dumps({"eventindex": {}}), good, "", good, line, good]) + "\n").encode("latin-1"))
    with pytest.raises(InputError) as exc:
        list(JsonLinesInput(path).batches(2))
    text = one_line(exc)
    assert text.startswith(f"{path}: line 5: ") and words in text, text


def test_a_deeply_nested_first_line_is_not_taken_for_a_header(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text('{"eventindex": ' + "[" * 100_000 + "\n")
    with pytest.raises(InputError) as exc:
        list(JsonLinesInput(path).batches(10))
    assert one_line(exc) == f"{path}: line 1: JSON nested too deeply to be an event"


def test_the_largest_weights_a_float32_holds_are_read(tmp_path: Path) -> None:
    lines = [{**GOOD, "event_number": n, "mc_event_weight": w} for n, w in enumerate([3.4e38, -3.4e38, 1e-50, 2])]
    path = write(tmp_path / "w.jsonl", lines)
    weights = read_all(JsonLinesInput(path)).column("mc_event_weight").to_pylist()
    assert weights == pytest.approx([3.4e38, -3.4e38, 0.0, 2.0], rel=1e-6)


def test_an_integer_weight_beyond_2_24_is_rounded_like_the_same_float(tmp_path: Path) -> None:
    """A float32 holds integers exactly up to 2^24: 16777217 is stored as 16777216.0, as 16777217.0 is (it was
    an internal error, exit 1)."""
    lines = [{**GOOD, "event_number": n, "mc_event_weight": w} for n, w in enumerate([16777217, 16777217.0, 3, 2**60])]
    path = write(tmp_path / "w.jsonl", lines)
    weights = read_all(JsonLinesInput(path)).column("mc_event_weight").to_pylist()
    assert weights == [16777216.0, 16777216.0, 3.0, float(2**60)]


def test_truncated_file_names_the_last_line(tmp_path: Path, events: pa.Table) -> None:
    whole = write(tmp_path / "ev.jsonl", records(events.slice(0, 20))).read_bytes()
    path = tmp_path / "cut.jsonl"
    path.write_bytes(whole[: len(whole) // 2])
    lines = path.read_bytes().count(b"\n") + 1
    with pytest.raises(InputError) as exc:
        list(JsonLinesInput(path).batches(1000))
    assert f"line {lines}: not valid JSON" in one_line(exc)


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ({"guid": "nope"}, "header guid: 'nope' is not a GUID"),
        ({"events": -1}, "events must be a non-negative integer"),
        ({"guids": GUID}, "header: expected"),
    ],
)
def test_bad_header(tmp_path: Path, header: dict[str, Any], words: str) -> None:
    path = write(tmp_path / "h.jsonl", [GOOD], header)
    with pytest.raises(InputError) as exc:
        JsonLinesInput(path)
    assert "line 1" in one_line(exc) and words in str(exc.value)


# ---------------------------------------------------------------- through the CLIs into the warehouse


def test_bulk_and_line_by_line_conversions_agree(tmp_path: Path, events: pa.Table) -> None:
    from producer.inputs.jsonl import CHECKS, COLUMNS, _fast

    source = JsonLinesInput(write(tmp_path / "ev.jsonl", records(events.slice(0, 300), trim=True)))
    rows = records(events.slice(0, 300), trim=True)
    lines = list(range(1, len(rows) + 1))
    for name in COLUMNS:
        field = events.schema.field(name)
        values = [row[name] for row in rows]
        bulk = _fast(name, field.type, values)
        assert bulk is not None, name
        assert bulk.equals(pa.array(source._checked(name, CHECKS[name], values, lines), field.type)), name


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('{"run_number": 1, "event_number": 1, "event_number": 2}', "event_number"),
        ('{"run_number": 1, "event_number": 1, "lumi_block": 5, "lumi_block": null}', "lumi_block"),
        ('{"run_number": 1, "event_number": 1, "provenance": [{"stream": "S", "stream": "T", "guid": "G"}]}', "stream"),
    ],
)
def test_a_key_given_twice_is_refused_not_the_last_one_taken(tmp_path: Path, line: str, key: str) -> None:
    """As the Parquet reader refuses a column given twice: which of them is the value? never a guess."""
    path = tmp_path / "twice.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(InputError) as exc:
        read_all(JsonLinesInput(path))
    assert one_line(exc) == f"{path}: line 1: key {key!r} is given twice"
