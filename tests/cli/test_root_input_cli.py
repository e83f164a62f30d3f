"""ROOT inputs through `ei-producer` as a process: exit codes, one-line errors, a file into the warehouse."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from producer.inputs.root import RootInput
from tests.helpers import index_into_warehouse, produce_cli
from tests.unit.test_root_input import (
    UNREADABLE_EVENT_INFO,
    assert_same_columns,
    branches,
    expected,
    pool_file,
    sorted_events,
    write_root,
)


def test_cli_refuses_an_unreadable_event_info_with_exit_3(tmp_path: Path) -> None:
    path = pool_file(tmp_path / "aod.root", **UNREADABLE_EVENT_INFO)
    proc = produce_cli(tmp_path, str(path))
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "run_number" in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_root_file_round_trips_into_the_warehouse(tmp_path: Path, events: pa.Table) -> None:
    path = write_root(tmp_path / "ev.root", branches(events))
    guid = RootInput(path, None).guid
    loaded = index_into_warehouse(tmp_path, str(path), len(events))
    assert_same_columns(loaded, sorted_events(expected(events, guid)))


def test_cli_reports_a_truncated_root_file_in_one_line(tmp_path: Path, events: pa.Table) -> None:
    whole = write_root(tmp_path / "whole.root", branches(events)).read_bytes()
    cut = tmp_path / "cut.root"
    cut.write_bytes(whole[: len(whole) // 2])
    proc = produce_cli(tmp_path, str(cut))
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(cut) in lines[0], proc.stderr
