"""On a terminal, `ei-producer` draws a progress line; an error that ends the run starts on a line of its own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from producer.cli import main
from tests.helpers import store_dir


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_error_after_the_progress_line_is_on_its_own_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dry_run: bool
) -> None:
    path = tmp_path / "events.jsonl"
    good = "".join(json.dumps({"run_number": 1, "event_number": n}) + "\n" for n in range(3_000))
    path.write_text(good + "{not json\n")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    argv = [
        "--task",
        "t",
        "--job",
        "j",
        "--attempt",
        "1",
        "--dataset",
        "d",
        "--input",
        str(path),
        "--store",
        store_dir(tmp_path / "s"),
        "--broker",
        f"sqlite://{tmp_path / 'q.db'}",
        "--chunk-events",
        "500",
    ]
    code = main([*argv, "--dry-run"] if dry_run else argv)
    err = capsys.readouterr().err
    assert code == 3
    assert "\r  " in err, "the progress line was drawn"
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith("ei-producer: input error") and "line 3001" in last, err
