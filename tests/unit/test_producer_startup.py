"""The `ei-producer` command starts with the cyclic garbage collector paused (producer.startup): off from
its first import until its inputs are open, then on again, with what start-up made frozen; a caller
that had the collector off keeps it off, and `producer.cli.main` called directly changes nothing."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer import cli, startup
from producer.run import RunConfig
from producer.run import open_inputs as open_inputs_of_run
from tests.helpers import store_dir


@pytest.fixture(autouse=True)
def collector() -> Iterator[None]:
    """Each test starts with the collector on and nothing paused, and leaves it so."""
    enabled = gc.isenabled()
    gc.enable()
    monkey = pytest.MonkeyPatch()
    monkey.setattr(startup, "_paused", False)
    yield
    monkey.undo()
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:  # pragma: no cover - pytest runs with it on
        gc.disable()


def _args(tmp_path: Path, source: str) -> list[str]:
    store, queue = store_dir(tmp_path / "store"), f"sqlite://{tmp_path / 'q.db'}"
    return ["--task", "t", "--job", "j", "--attempt", "1", "--dataset", "d", "--input", source,
            "--store", store, "--broker", queue, "--quiet"]  # fmt: skip


def test_pause_then_resume_freezes_start_up_and_turns_the_collector_back_on() -> None:
    startup.pause()
    assert not gc.isenabled()
    startup.resume()
    assert gc.isenabled() and gc.get_freeze_count() > 0
    startup.resume()  # a second resume does nothing
    assert gc.isenabled()


def test_a_collector_the_caller_turned_off_stays_off() -> None:
    gc.disable()
    startup.pause()
    startup.resume()
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_the_console_script_runs_the_command_with_the_collector_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []

    def command() -> int:
        seen.append(gc.isenabled())
        return 7

    monkeypatch.setattr(cli, "main", command)
    assert startup.main() == 7
    assert seen == [False] and gc.isenabled()


def test_the_command_turns_the_collector_on_once_its_inputs_are_open(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[bool] = []
    real = open_inputs_of_run

    def open_inputs(config: RunConfig) -> object:
        seen.append(gc.isenabled())
        return real(config)

    monkeypatch.setattr(cli, "open_inputs", open_inputs)
    startup.pause()
    assert cli.main(_args(tmp_path, "synthetic:10:1")) == 0
    assert seen == [False] and gc.isenabled()


def test_a_bad_input_still_turns_the_collector_back_on(tmp_path: Path) -> None:
    startup.pause()
    assert cli.main(_args(tmp_path, str(tmp_path / "nope.root"))) != 0
    assert gc.isenabled()
