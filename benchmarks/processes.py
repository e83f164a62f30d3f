"""The child processes of a run: `ei-producer` jobs (a bounded pool) and the `ei-supersink` service."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.config import BenchError

SINK_STOP_TIMEOUT = 60.0
STDERR_TAIL = 2000


def tool(name: str) -> str:
    """A console script of this project: next to the running interpreter, else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"{name} not found next to {sys.executable} or on PATH (install the project)")
    return found


def mq_mode_available(env: Mapping[str, str]) -> tuple[bool, str]:
    """Does this `ei-producer` know ``--mode`` (the broker-only transport)?"""
    done = subprocess.run(
        [tool("ei-producer"), "--help"], capture_output=True, text=True, env=dict(env), timeout=60, check=False
    )
    if re.search(r"--mode \{[^}]*\bmq\b", done.stdout):
        return True, ""
    return False, "ei-producer has no --mode option: the broker-only transport (--mode mq) is not implemented yet"


@dataclass
class JobOutcome:
    task: str
    job: str
    seed: int
    started: float = 0.0  # epoch seconds
    ended: float = 0.0
    returncode: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def wall(self) -> float:
        return self.ended - self.started


class ProducerPool:
    """TxJ `ei-producer` processes, at most N at a time; each outcome is kept. :meth:`cancel` stops it."""

    def __init__(
        self,
        argv_for: Callable[[JobOutcome], list[str]],
        jobs: list[JobOutcome],
        concurrency: int,
        env: dict[str, str],
        timeout: float,
        cwd: Path,
    ) -> None:
        self.argv_for = argv_for
        self.cwd = cwd
        self.jobs = jobs
        self.concurrency = concurrency
        self.env = env
        self.timeout = timeout
        self.cancelled = threading.Event()
        self.first_start: float | None = None
        self._running: dict[str, subprocess.Popen[str]] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="producer")
        self._futures: list[Any] = []

    def start(self) -> None:
        self._futures = [self._executor.submit(self._run, job) for job in self.jobs]

    @property
    def done(self) -> bool:
        return all(f.done() for f in self._futures)

    def _run(self, job: JobOutcome) -> None:
        if self.cancelled.is_set():
            job.skipped = True
            return
        job.started = time.time()
        with self._lock:
            if self.first_start is None:
                self.first_start = job.started
        proc = subprocess.Popen(
            self.argv_for(job), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env, cwd=self.cwd
        )
        with self._lock:
            self._running[job.job + job.task] = proc
        if self.cancelled.is_set():  # cancelled while it was being spawned: cancel() did not see it
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += f"\n(killed by the harness after {self.timeout:.0f} s)"
        job.ended = time.time()
        with self._lock:
            self._running.pop(job.job + job.task, None)
        job.returncode = proc.returncode
        job.stderr = err[-STDERR_TAIL:]
        lines = out.strip().splitlines()
        if lines:
            with contextlib.suppress(ValueError):
                job.summary = json.loads(lines[-1])

    def cancel(self) -> None:
        """No new producers; kill the running ones (our own children, by their Popen handles)."""
        self.cancelled.set()
        with self._lock:
            running = list(self._running.values())
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    def close(self) -> None:
        self._executor.shutdown(wait=True)


@dataclass
class SinkProcess:
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    cpu_total: float | None = None
    returncode: int | None = None

    def stop(self, timeout: float = SINK_STOP_TIMEOUT) -> None:
        """SIGTERM (a graceful stop: it prints its counters), wait4 for its CPU, SIGKILL after timeout."""
        pid = self.proc.pid
        if self.proc.returncode is not None:  # it ended on its own and Popen reaped it: its CPU is gone with it
            self.returncode = self.proc.returncode
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while True:
            try:
                waited, status, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere meanwhile
                self.returncode = self.proc.poll()
                return
            if waited == pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                self.proc.returncode = self.returncode  # reaped here; Popen must not wait again
                self.cpu_total = usage.ru_utime + usage.ru_stime
                return
            if time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                deadline = time.monotonic() + 10
            time.sleep(0.05)

    def counters(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return dict(json.loads(self.stdout_path.read_text().strip().splitlines()[-1]))
        return {}

    def stderr_tail(self, lines: int = 5) -> str:
        """Its last `lines` lines of stderr, on one line (they end up in a run's reason and in a Markdown list)."""
        with contextlib.suppress(OSError):
            text = [line.strip() for line in self.stderr_path.read_text(errors="replace").splitlines()]
            return " | ".join([line for line in text if line][-lines:])
        return ""
