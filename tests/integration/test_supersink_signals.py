"""`ei-supersink run` and its stop signals, on the embedded default (file store, SQLite queue, file warehouse).

docs/operations.md: SIGTERM (and SIGINT) stop it cleanly, a load in progress is finished and committed,
then it exits 0; a second SIGTERM/SIGINT exits at once (128 + the signal), which is safe: a restart
resumes. The supersink runs as a real process whose store reads of chunks each take DELAY seconds
(tests/faultstore.py), so that a load lasts long enough to signal it mid-way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, Pipeline, assert_same_events, sink_cli, synthetic

pytestmark = pytest.mark.timeout(300)

JOBS = 3
EVENTS = 4_000  # 4 chunks of 1,000 per job: 12 chunk reads in the load
DELAY = 0.5  # seconds per chunk read: the load takes about 6 s
#: `ei-supersink` in a process whose store delays every read of a chunk object.
SLOW_SINK = f"""
import sys
import supersink.cli as cli
from eventindex.store import open_store
from tests.faultstore import Fault, FaultyStore

def slow_store(url, *args, **kwargs):
    return FaultyStore(open_store(url, *args, **kwargs), Fault("get", "delay", key="*.eic", seconds={DELAY}))

cli.open_store = slow_store
sys.exit(cli.main(sys.argv[1:]))
"""


def sink_args(pipe: Pipeline) -> list[str]:
    return [
        "run", "--broker", pipe.broker, "--store", (pipe.root / "store").as_uri(),
        "--warehouse", (pipe.root / "wh").as_uri(), "--state", str(pipe.root / "ledger.db"),
    ]  # fmt: skip


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the supersink ended early ({proc.returncode}): {proc.communicate()[1]}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (signal.SIGTERM, None),
        (signal.SIGTERM, signal.SIGTERM),
        (signal.SIGTERM, signal.SIGINT),
        (signal.SIGHUP, None),
    ],
    ids=["one-SIGTERM", "SIGTERM-then-SIGTERM", "SIGTERM-then-SIGINT", "one-SIGHUP"],
)
def test_a_second_signal_while_stopping_exits_at_once_and_a_restart_resumes(
    tmp_path: Path, first: signal.Signals, second: signal.Signals | None
) -> None:
    """SIGHUP stops as gently as SIGTERM but exits 129, so that systemd's Restart=on-failure starts it again
    (systemd counts a death by SIGHUP, SIGINT, SIGTERM or SIGPIPE as a clean stop)."""
    pipe = Pipeline(tmp_path)
    for job in range(1, JOBS + 1):
        pipe.produce(f"job{job}", seed=job, events=EVENTS)
    pipe.run_supersink()  # every chunk taken in; the task waits for its expectation
    assert not pipe.task_dir().exists()
    pipe.expect(JOBS)

    claim = tmp_path / "wh" / "_staging" / "dataset=ds" / "task=task1" / "_CLAIM.json"
    marker = pipe.task_dir() / "_SUCCESS.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EI_SUPERSINK_CRASH_AT", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SINK, *sink_args(pipe)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        wait_for(claim, proc)  # the load has begun: its chunk reads take about JOBS * 4 * DELAY seconds
        proc.send_signal(first)
        time.sleep(2 * DELAY)
        assert proc.poll() is None, "the first signal stops gracefully: the load in progress goes on"
        assert not marker.exists(), "the load is still in progress"
        if second is not None:
            proc.send_signal(second)
            signalled = time.monotonic()
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in stderr, stderr
    if second is None:
        assert proc.returncode == (129 if first == signal.SIGHUP else 0), stderr
        assert marker.exists(), "a graceful stop finishes and commits the load in progress"
    else:
        assert proc.returncode == 128 + second, stderr
        assert time.monotonic() - signalled < 2 * DELAY + 1.0, "exits at once, without finishing the load"
        assert not marker.exists(), "the load was cut short before its commit"

    resumed = sink_cli(*sink_args(pipe), "--until-idle", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded().sort_by([("run_number", "ascending"), ("event_number", "ascending")]),
                       synthetic(*range(1, JOBS + 1), events=EVENTS))  # fmt: skip
