"""Measuring helpers: percentiles, /proc readings of processes, and a background sampler.

CPU seconds are utime + stime from ``/proc/<pid>/stat`` (fields 14 and 15, in clock ticks), the
resident set from ``VmRSS`` in ``/proc/<pid>/status``; ``VmHWM`` (the kernel's own peak) is read
too. A server is read as its whole process group (its pid is the group id, as the launchers start
it in its own session), summed: RabbitMQ's pid is a shell whose Erlang VM is a child. A sampler
thread reads every probe each SAMPLE_SECONDS and keeps the peak RSS and the last CPU reading, so
a figure survives the process exiting between samples.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CLK_TCK",
    "ProcSample",
    "Sampler",
    "Watch",
    "group_pids",
    "group_probe",
    "parse_stat_cpu",
    "parse_stat_pgrp",
    "parse_status",
    "percentile",
    "percentiles",
    "process_probe",
    "read_pids",
    "read_proc",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.25


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's default).

    None for no values.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        return float(data[0])
    rank = (len(data) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return float(data[low] + (data[high] - data[low]) * (rank - low))


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95)) -> dict[str, float | None]:
    """``{"p50": …, "p95": …}`` (rounded to milliseconds' precision), None entries for no values."""
    out: dict[str, float | None] = {}
    for q in qs:
        value = percentile(values, q)
        out[f"p{q:g}"] = None if value is None else round(value, 3)
    return out


@dataclass(frozen=True)
class ProcSample:
    rss_bytes: int
    hwm_bytes: int
    cpu_seconds: float


def parse_status(text: str) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes from the text of ``/proc/<pid>/status`` (0 when absent, e.g. a zombie)."""
    rss = hwm = 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return rss, hwm


def parse_stat_cpu(text: str, clk_tck: int = CLK_TCK) -> float:
    """utime + stime in seconds from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself hold spaces and parentheses, so
    fields are counted from the last ``)``: utime and stime are fields 14 and 15 of the line.
    """
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / clk_tck


def read_proc(pid: int) -> ProcSample | None:
    """RSS, peak RSS and CPU seconds of a live process; None when it is gone (or a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    rss, hwm = parse_status(status)
    if hwm == 0:
        return None
    return ProcSample(rss, hwm, parse_stat_cpu(stat))


def parse_stat_pgrp(text: str) -> int:
    """The process group id (field 5) from the text of ``/proc/<pid>/stat``."""
    return int(text[text.rindex(")") + 2 :].split()[2])


def group_pids(pgid: int) -> list[int]:
    """Every live process whose process group is ``pgid`` (a server and the children it forked)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if parse_stat_pgrp((entry / "stat").read_text(encoding="ascii", errors="replace")) == pgid:
                pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def read_pids(pids: Iterable[int]) -> ProcSample | None:
    """The sum over some processes (RSS, peak RSS, CPU); None when none of them is alive."""
    samples = [s for s in map(read_proc, pids) if s is not None]
    if not samples:
        return None
    return ProcSample(
        sum(s.rss_bytes for s in samples), sum(s.hwm_bytes for s in samples), sum(s.cpu_seconds for s in samples)
    )


Probe = Callable[[], ProcSample | None]


def process_probe(pid: int) -> Probe:
    """One process."""
    return lambda: read_proc(pid)


def group_probe(*pgids: int) -> Probe:
    """Whole process groups: e.g. the rabbitmq-server shell, its Erlang VM and helpers; Ceph's daemons."""
    return lambda: read_pids(pid for pgid in pgids for pid in group_pids(pgid))


@dataclass
class Watch:
    """What the sampler learnt about one probe: CPU at the start, the latest reading, the peak RSS."""

    first_cpu: float | None = None
    last_cpu: float | None = None
    last_rss: int = 0
    peak_rss: int = 0
    samples: int = 0

    def update(self, sample: ProcSample) -> None:
        if self.first_cpu is None:
            self.first_cpu = sample.cpu_seconds
        self.last_cpu = sample.cpu_seconds
        self.last_rss = sample.rss_bytes
        self.peak_rss = max(self.peak_rss, sample.rss_bytes)
        self.samples += 1

    @property
    def cpu_seconds(self) -> float | None:
        """CPU consumed between the first and the latest sample."""
        if self.first_cpu is None or self.last_cpu is None:
            return None
        return self.last_cpu - self.first_cpu


class Sampler:
    """Reads named probes every ``interval`` seconds in a daemon thread until :meth:`stop`."""

    def __init__(self, interval: float = SAMPLE_SECONDS) -> None:
        self.interval = interval
        self.watches: dict[str, Watch] = {}
        self._probes: dict[str, Probe] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="proc-sampler", daemon=True)

    def watch(self, name: str, probe: Probe | None) -> Watch | None:
        """Start watching ``probe`` as ``name`` (a first sample is taken at once); None for no probe."""
        if probe is None:
            return None
        watch = Watch()
        sample = probe()
        if sample is not None:
            watch.update(sample)
        with self._lock:
            self.watches[name] = watch
            self._probes[name] = probe
        return watch

    def sample_now(self) -> None:
        with self._lock:
            probes = list(self._probes.items())
        for name, probe in probes:
            sample = probe()
            if sample is not None:
                with self._lock:
                    self.watches[name].update(sample)

    def get(self, name: str) -> Watch | None:
        with self._lock:
            return self.watches.get(name)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.sample_now()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample_now()


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPUs, memory, library versions, Arrow's memory pool, load."""
    import platform

    import numpy
    import pyarrow

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1]) * 1024
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_bytes": memory,
        "python": platform.python_version(),
        "pyarrow": pyarrow.__version__,
        "numpy": numpy.__version__,
        "memory_pool": pyarrow.default_memory_pool().backend_name,
        "ARROW_DEFAULT_MEMORY_POOL": os.environ.get("ARROW_DEFAULT_MEMORY_POOL"),
        "loadavg_at_end": list(os.getloadavg()),
    }


def steady_rate(commits: Sequence[Sequence[float]]) -> int | None:
    """Events per CPU-second of the second half of a run's commits ([events, process CPU at the commit]):
    the cost of a task to a supersink that is warmed up (its memory pools grown, its connections open)."""
    if len(commits) < 2:
        return None
    half = len(commits) // 2
    events = sum(int(c[0]) for c in commits[half:])
    cpu = float(commits[-1][1]) - float(commits[half - 1][1])
    return round(events / cpu) if cpu > 0 and events else None
