"""The crash-point switch refuses a name that is not a crash point (it would silently never fire)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from supersink.crashpoints import ENV, POINTS

ROOT = Path(__file__).resolve().parents[2]


def _import_with(value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import supersink.crashpoints"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), ENV: value},
        timeout=60,
    )


def test_a_misspelt_crash_point_is_refused() -> None:
    ran = _import_with("load.comitted:2")
    assert ran.returncode == 1
    assert ran.stderr.startswith(f"{ENV}='load.comitted': no such crash point; one of intake.fetched")


def test_every_listed_crash_point_is_accepted() -> None:
    for point in POINTS:
        assert _import_with(f"{point}:3").returncode == 0
