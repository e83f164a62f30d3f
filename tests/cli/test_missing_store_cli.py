"""A file:// store directory that is missing when `ei-supersink run` or `load` starts (unmounted, moved, mistyped)
is refused with one line and exit 2, and is not created: an empty directory in its place would make every pointer
look like one to a missing object, and the tasks behind them go `damaged`."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import sink_cli


def _places(tmp_path: Path) -> list[str]:
    return ["--store", (tmp_path / "store").as_uri(), "--warehouse", (tmp_path / "wh").as_uri(),
            "--state", str(tmp_path / "ledger.db")]  # fmt: skip


def test_run_refuses_a_missing_store_directory_and_does_not_create_it(tmp_path: Path) -> None:
    run = ["run", "--broker", f"sqlite://{tmp_path / 'queue.db'}", *_places(tmp_path), "--until-idle", "0.5", "--quiet"]
    refused = sink_cli(*run)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr == f"ei-supersink: store directory {tmp_path / 'store'} does not exist\n"
    assert not (tmp_path / "store").exists()

    (tmp_path / "store").mkdir()
    ran = sink_cli(*run)
    assert ran.returncode == 0, ran.stderr


def test_load_refuses_a_missing_store_directory_and_does_not_create_it(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    made = sink_cli("run", "--broker", f"sqlite://{tmp_path / 'queue.db'}", *_places(tmp_path), "--until-idle", "0.2")
    assert made.returncode == 0, made.stderr  # a ledger to load from
    (tmp_path / "store").rmdir()

    refused = sink_cli("load", *_places(tmp_path), "--task", "t1")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr == f"ei-supersink: store directory {tmp_path / 'store'} does not exist\n"
    assert not (tmp_path / "store").exists()
