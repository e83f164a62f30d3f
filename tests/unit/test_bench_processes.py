"""The child processes and servers of `ei-bench compare`, as the harness handles them: real processes only."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from benchmarks import harness
from benchmarks.cli import build_parser, config_from
from benchmarks.config import BenchError
from benchmarks.harness import Run
from benchmarks.processes import JobOutcome, ProducerPool, SinkProcess
from benchmarks.servers import Broker, Store


def test_a_producer_spawned_while_the_pool_is_cancelled_is_killed_not_waited_for(tmp_path: Path) -> None:
    # cancel() kills the producers it sees running; one being spawned at that moment used to run to its end
    jobs = [JobOutcome(task="t", job="j1", seed=1)]
    pool: ProducerPool

    def argv(job: JobOutcome) -> list[str]:
        pool.cancel()  # Ctrl-C arrives between the check for cancellation and the spawn
        return ["sleep", "60"]

    pool = ProducerPool(argv, jobs, 1, {}, timeout=120, cwd=tmp_path)
    started = time.monotonic()
    pool.start()
    pool.close()
    assert time.monotonic() - started < 30
    assert jobs[0].returncode == -9


def test_a_supersinks_last_lines_are_one_line_for_a_runs_reason(tmp_path: Path) -> None:
    (tmp_path / "err").write_text("starting\nei-supersink: could not connect\n\nei-supersink: broker error: refused\n")
    sink = SinkProcess(None, tmp_path / "out", tmp_path / "err")  # type: ignore[arg-type]
    assert sink.stderr_tail(2) == "ei-supersink: could not connect | ei-supersink: broker error: refused"


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_store_that_cannot_be_reached_is_one_bench_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "bench-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "bench-test")
    port = _refused_port()
    with pytest.raises(BenchError) as raised:  # was botocore's EndpointConnectionError, a traceback
        Store("seaweedfs", f"http://127.0.0.1:{port}").create_bucket("ei-bench-x")
    assert f"127.0.0.1:{port}" in str(raised.value) and "\n" not in str(raised.value)


def test_a_store_without_credentials_is_one_bench_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(BenchError, match="credentials"):  # was botocore's NoCredentialsError, a traceback
        Store("seaweedfs", f"http://127.0.0.1:{_refused_port()}").create_bucket("ei-bench-x")


def test_a_broker_given_by_address_must_accept_connections() -> None:
    port = _refused_port()
    with pytest.raises(BenchError, match=f"127.0.0.1:{port}"):
        Broker("activemq", f"stomp://127.0.0.1:{port}").check_reachable()
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        Broker("activemq", f"stomp://127.0.0.1:{listening.getsockname()[1]}").check_reachable()
    Broker("activemq", None).check_reachable()  # one the harness starts: checked when started


def test_a_broker_that_accepts_and_never_answers_fails_the_run_not_the_harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `ei-supersink expect` tries 5 x 30 s against such a port; the harness's limit on it (120 s) raised
    # subprocess.TimeoutExpired out of the comparison: a traceback instead of a failed run
    monkeypatch.setattr(harness, "CLI_TIMEOUT", 3.0)
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)  # connections complete in the backlog; nothing ever answers them
        cfg = config_from(build_parser().parse_args(["compare", "--quick"]), tmp_path, tmp_path)
        run = Run(cfg, "store", 1, 1, 1, "s", None, None, "b", None, "")  # type: ignore[arg-type]
        run.broker_url = f"stomp://127.0.0.1:{mute.getsockname()[1]}/queue/q"
        started = time.monotonic()
        reason = run._send_expectations()
    assert time.monotonic() - started < 30
    assert reason.startswith("ei-supersink expect failed") and "no answer within 3 s" in reason, reason
    assert "\n" not in reason


def test_each_comparison_runs_in_a_directory_of_its_own(tmp_path: Path) -> None:
    # a --work kept from an earlier comparison held the same run directories: the second comparison's supersink
    # reused the first one's ledger and counted its tasks ("100 events loaded, 50 sent")
    cfg = config_from(build_parser().parse_args(["compare", "--quick"]), tmp_path, tmp_path)
    first = Run(cfg, "store", 1, 1, 1, "20261208-000000-aaaa", None, None, "b", None, "")  # type: ignore[arg-type]
    again = Run(cfg, "store", 1, 1, 1, "20261208-000000-bbbb", None, None, "b", None, "")  # type: ignore[arg-type]
    assert first.dir != again.dir and first.dir.parent.parent == again.dir.parent.parent == tmp_path
