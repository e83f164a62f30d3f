"""`ei-producer --metrics-file`: a file node exporter's textfile collector can read (another user, whatever
the job's umask), replaced whole, that promtool accepts."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer.metrics import FIGURES, write_metrics
from tests.unit.test_metrics_rules import promtool


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """The umask of a batch job that keeps its files to itself."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("strict_umask")
def test_the_file_is_readable_by_the_exporter_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "ei-producer.prom"
    write_metrics(path, 0, dict.fromkeys(FIGURES, 1.0))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    write_metrics(path, 3, {})  # replaced by the next job's, still readable
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert "ei_producer_last_job_exit_code 3.0" in path.read_text()
    assert "ei_producer_last_job_events" not in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ei-producer.prom"], "no temporary file left"


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ei-producer.prom"
    path.mkdir()  # cannot be replaced by a file
    with pytest.raises(OSError):
        write_metrics(path, 0, {})
    assert [p.name for p in tmp_path.iterdir()] == ["ei-producer.prom"]


def test_the_producer_textfile_passes_promtool(tmp_path: Path) -> None:
    tool = promtool()
    path = tmp_path / "ei-producer.prom"
    write_metrics(path, 0, dict.fromkeys(FIGURES, 1.0))
    result = subprocess.run([tool, "check", "metrics"], input=path.read_bytes(), capture_output=True, timeout=60)
    assert result.returncode == 0 and not result.stdout and not result.stderr, result
