"""JSON-lines inputs through the CLIs as processes: into the warehouse, and one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from tests.helpers import index_into_warehouse, produce_cli
from tests.unit.test_jsonl_input import GOOD, GUID, records, write
from tests.unit.test_root_input import assert_same_columns, sorted_events


def test_jsonl_file_round_trips_into_the_warehouse(tmp_path: Path, events: pa.Table) -> None:
    path = write(tmp_path / "ev.jsonl", records(events, trim=True), {"guid": GUID, "events": len(events)})
    loaded = index_into_warehouse(tmp_path, str(path), len(events))
    assert_same_columns(loaded, sorted_events(events))


def test_cli_refuses_a_short_file_against_its_header(tmp_path: Path, events: pa.Table) -> None:
    path = write(tmp_path / "ev.jsonl", records(events.slice(0, 10)), {"events": 11})
    proc = produce_cli(tmp_path, str(path))
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "declares 11 events, 10 were read" in lines[0], proc.stderr


def test_cli_reports_a_bad_line_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{oops\n")
    proc = produce_cli(tmp_path, str(path))
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}: line 2: not valid JSON" in lines[0], proc.stderr
