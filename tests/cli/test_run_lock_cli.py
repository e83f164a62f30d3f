"""One `ei-supersink run` per ledger: a second one on the same --state is refused with one line and exit 2,
and the lock goes with the process that held it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from supersink.instance import lock_path
from tests.helpers import ROOT, sink_cli


def _run_args(tmp_path: Path, until_idle: str | None = None) -> list[str]:
    args = ["run", "--broker", f"sqlite://{tmp_path / 'queue.db'}", "--store", (tmp_path / "store").as_uri(),
            "--warehouse", (tmp_path / "wh").as_uri(), "--state", str(tmp_path / "ledger.db"), "--quiet"]  # fmt: skip
    return args + (["--until-idle", until_idle] if until_idle else [])


def test_a_second_run_on_the_same_ledger_is_refused_and_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    log = tmp_path / "first.log"
    with log.open("w") as stderr:
        first = subprocess.Popen(
            [sys.executable, "-m", "supersink.cli", *_run_args(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (lock_path(tmp_path / "ledger.db").exists() and lock_path(tmp_path / "ledger.db").read_text()):
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the first supersink never took its lock"
            time.sleep(0.1)
        second = sink_cli(*_run_args(tmp_path, "0.5"))
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1 and "in use by another `ei-supersink run`" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        # one-shot commands still work while the service runs
        assert sink_cli("status", "--state", str(tmp_path / "ledger.db")).returncode == 0
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0
    # its holder gone, the ledger is free again (a SIGKILL would free it the same way: the kernel drops it)
    again = sink_cli(*_run_args(tmp_path, "0.5"))
    assert again.returncode == 0, again.stderr
