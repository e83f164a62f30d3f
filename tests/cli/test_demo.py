"""scripts/demo.py (README command 1), small: the pipeline through the real CLIs, then the catalogue's answers,
each checked by the demo against the produced events."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("duckdb")


def test_the_demo_verifies_the_warehouse_and_the_catalogues_answers(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--jobs", "3", "--events", "3000", "--chunk-events",
         "1000", "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["events_loaded"] == summary["events_produced"] == 9000
    assert summary["events_verified"] is True and summary["catalog_answers_verified"] is True
    assert [s["job"] for s in summary["superseded"]] == ["job001"]
    assert any(line.startswith("[5/5] asking the catalogue") for line in lines)
    assert sum("not found" in line for line in lines) == 1
