"""`ei-bench compare`'s command line: bad arguments end in one line and exit 2 before anything runs; the results
and work directories are checked and locked first; an unreachable server is exit 4 in one line; signals."""

from __future__ import annotations

import fcntl
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import cli
from benchmarks.config import BenchConfig
from benchmarks.progress import Progress


@pytest.fixture
def no_compare(monkeypatch: pytest.MonkeyPatch) -> list[BenchConfig]:
    """The harness's entry point, replaced by one that records its configuration: a usage error must stop
    before it, and nothing here starts a server."""
    called: list[BenchConfig] = []

    def compare(cfg: BenchConfig, progress: Any = None) -> dict[str, Any]:
        called.append(cfg)
        raise AssertionError("compare ran")

    monkeypatch.setattr(cli, "compare", compare)
    return called


def run(args: list[str], tmp_path: Path) -> int:
    argv = ["compare", *args]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "out")]
    if "--work" not in args:
        argv += ["--work", str(tmp_path / "work")]
    return cli.main(argv)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ei-bench: "), err
    return err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--tasks", "0"], "--tasks"),
        (["--jobs", "0"], "--jobs"),
        (["--events", "0"], "--events"),
        (["--quick", "--events", "0"], "--events"),
        (["--run-timeout", "0"], "--run-timeout"),
        (["--run-timeout", "nan"], "--run-timeout"),
        (["--run-timeout", "inf"], "--run-timeout"),
        (["--transports", "store,bogus"], "--transports"),
        (["--protocol", "amqp"], "--protocol amqp"),
        (["--broker-url", "http://127.0.0.1:61613"], "--broker-url"),
        (["--broker-url", "stomp://"], "--broker-url"),
        (["--store-url", "stomp://127.0.0.1:8333"], "--store-url"),
    ],
)
def test_bad_values_are_refused_with_one_line_and_exit_2(
    args: list[str], says: str, tmp_path: Path, no_compare: list[BenchConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    # a zero used to be replaced by the default (`--tasks 0` ran the full 4-task sweep), and a bad URL was exit 4
    assert run(args, tmp_path) == cli.EXIT_USAGE
    assert says in one_line(capsys)
    assert no_compare == []
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_the_same_producer_count_or_transport_twice_is_run_once(tmp_path: Path, no_compare: list[BenchConfig]) -> None:
    with pytest.raises(AssertionError, match="compare ran"):
        run(["--producers", "4,1,4", "--transports", "store,mq,store"], tmp_path)
    assert no_compare[0].producers == (4, 1) and no_compare[0].transports == ("store", "mq")


def test_a_results_dir_that_is_a_file_is_refused_before_the_runs(
    tmp_path: Path, no_compare: list[BenchConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("not a directory")
    assert run(["--out", str(tmp_path / "file")], tmp_path) == cli.EXIT_USAGE
    assert "--out" in one_line(capsys)
    assert run(["--out", str(tmp_path / "file" / "below")], tmp_path) == cli.EXIT_USAGE
    assert "--out" in one_line(capsys)
    assert run(["--work", str(tmp_path / "file")], tmp_path) == cli.EXIT_USAGE
    assert "--work" in one_line(capsys)
    assert no_compare == []


def test_a_results_dir_that_cannot_be_written_is_refused(
    tmp_path: Path, no_compare: list[BenchConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    # /proc refuses new directories even to root
    assert run(["--out", "/proc/ei-bench-results"], tmp_path) == cli.EXIT_USAGE
    assert "--out" in one_line(capsys)
    assert no_compare == []


def test_earlier_results_are_not_overwritten(
    tmp_path: Path, no_compare: list[BenchConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert run([], tmp_path) == cli.EXIT_USAGE
    assert "already holds results" in one_line(capsys)
    assert (out / "results.json").read_text() == "{}"
    assert no_compare == []


@pytest.mark.parametrize("which", ["out", "work"])
def test_a_directory_in_use_by_another_ei_bench_is_refused(
    which: str, tmp_path: Path, no_compare: list[BenchConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / which
    directory.mkdir()
    with (directory / cli.LOCK_NAME).open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run([], tmp_path) == cli.EXIT_USAGE
    assert "another ei-bench" in one_line(capsys)
    assert no_compare == []


def test_the_default_results_dir_is_new_for_every_invocation(tmp_path: Path) -> None:
    # two ei-bench started in the same second used to share benchmarks/results/<timestamp>
    first = cli.new_results_dir(tmp_path, "20261207-120000")
    second = cli.new_results_dir(tmp_path, "20261207-120000")
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name == "20261207-120000"


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_servers_that_cannot_be_reached_are_exit_4_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "bench-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "bench-test")
    port = _refused_port()
    args = ["--store-url", f"http://127.0.0.1:{port}", "--broker-url", f"stomp://127.0.0.1:{port}"]
    assert run(args, tmp_path) == cli.EXIT_SERVER  # was a botocore traceback, exit 1
    assert f"127.0.0.1:{port}" in one_line(capsys)
    assert not (tmp_path / "out" / "results.json").exists()


def test_the_first_signal_unwinds_and_a_second_does_not_interrupt_the_stopping(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = [signal.getsignal(s) for s in handled]
    with cli.StopSignals(Progress(sys.stderr)) as signals:
        assert all(signal.getsignal(s) is signals for s in handled), "a closed terminal (SIGHUP) too"
        with pytest.raises(KeyboardInterrupt):
            signals(signal.SIGTERM, None)
        signals(signal.SIGINT, None)  # while stopping: noted, not raised
        signals(signal.SIGHUP, None)
    assert [signal.getsignal(s) for s in handled] == before
    assert "still stopping" in capsys.readouterr().err


def test_a_signal_that_was_ignored_stays_ignored() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with cli.StopSignals(Progress(sys.stderr)):
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["compare", "--help"]):
        with pytest.raises(SystemExit) as done:
            cli.main(argv)
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert "130" in out and "exit" in out.lower(), out


def test_a_default_results_root_that_cannot_be_created_asks_for_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_compare: list[BenchConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    # an installed (not editable) package's benchmarks/results/ may not be writable
    monkeypatch.setattr(cli, "RESULTS", Path("/proc/ei-bench-results"))
    assert cli.main(["compare", "--work", str(tmp_path / "work")]) == cli.EXIT_USAGE
    assert "give --out" in one_line(capsys)
    assert no_compare == []
