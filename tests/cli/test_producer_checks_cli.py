"""`ei-producer` refusing bad inputs as a process: 2^63, pairs shared by two files, a directory, a bad map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import producer
from tests.unit.test_producer_checks import jsonl


def test_producer_refuses_an_event_number_of_2_63_naming_the_file(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "big.jsonl", [(1, 5), (1, 2**63)])
    proc = producer(tmp_path, "--input", str(path))
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "2^63 or more" in lines[0], proc.stderr


def test_producer_refuses_shared_pairs_with_exit_3(tmp_path: Path) -> None:
    a = jsonl(tmp_path / "a.jsonl", [(1, 1)])
    b = jsonl(tmp_path / "b.jsonl", [(1, 1)])
    proc = producer(tmp_path, "--input", str(a), "--input", str(b), "--dry-run")
    assert proc.returncode == 3 and f"{a} and {b} hold 1 of the same" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    allowed = producer(tmp_path, "--input", str(a), "--input", str(b), "--dry-run", "--allow-mismatch")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["events"] == 2


def test_a_directory_is_not_an_input_file(tmp_path: Path) -> None:
    folder = tmp_path / "inputs.parquet"
    folder.mkdir()
    proc = producer(tmp_path, "--input", str(folder))
    assert proc.returncode == 3
    assert proc.stderr.strip() == f"ei-producer: input error: input {folder}: a directory, not a file " + (
        "(give each file of it as an --input of its own)"
    )


@pytest.mark.parametrize("content", [None, "{not json", '{"tree": 5}'])
def test_a_bad_branch_map_is_refused_without_any_root_input(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "map.json"
    if content is not None:
        path.write_text(content)
    proc = producer(tmp_path, "--input", "synthetic:10", "--branch-map", str(path), "--dry-run")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--branch-map {path}" in lines[0], proc.stderr
