"""benchmarks.metrics: percentiles, /proc parsing (on this very process and its children), the sampler."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from benchmarks.metrics import (
    CLK_TCK,
    ProcSample,
    Sampler,
    group_pids,
    group_probe,
    parse_stat_cpu,
    parse_stat_pgrp,
    parse_status,
    percentile,
    percentiles,
    process_probe,
    read_pids,
    read_proc,
    steady_rate,
)
from benchmarks.processes import SinkProcess

if TYPE_CHECKING:
    from testservers import StoreServer


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile(reversed(values), 50) == 2.5  # order does not matter
    assert percentile([7], 95) == 7.0


def test_percentile_matches_numpy_linear() -> None:
    np = pytest.importorskip("numpy")
    values = [0.3, 9.1, 2.2, 2.2, 5.0, 0.0, 17.5, 4.4, 1.1]
    for q in (0, 5, 25, 50, 90, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_none_and_q_is_checked() -> None:
    assert percentile([], 50) is None
    assert percentiles([]) == {"p50": None, "p95": None}
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_percentiles_dict_is_rounded() -> None:
    assert percentiles([1.0, 2.0, 3.0, 4.0], (50, 95, 99.9)) == {"p50": 2.5, "p95": 3.85, "p99.9": 3.997}


def test_parse_status_reads_rss_and_peak_in_bytes() -> None:
    text = "Name:\tpython\nVmPeak:\t  900 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\nThreads:\t1\n"
    assert parse_status(text) == (1024 * 1024, 2048 * 1024)
    assert parse_status("Name:\tzombie\nState:\tZ (zombie)\n") == (0, 0)


def test_parse_stat_survives_spaces_and_parentheses_in_the_command_name() -> None:
    # fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    rest = "S 1 2 3 0 -1 4194560 10 0 0 0 250 50 0 0 20 0 1 0 100 0 0"
    assert parse_stat_cpu(f"123 (my (odd) name) {rest}", clk_tck=100) == pytest.approx(3.0)


def test_read_proc_on_this_process_agrees_with_the_kernel() -> None:
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # burn some CPU so there is something to count
        pass
    sample = read_proc(os.getpid())
    assert sample is not None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    assert sample.cpu_seconds == pytest.approx(usage.ru_utime + usage.ru_stime, abs=3 / CLK_TCK + 0.05)
    assert sample.cpu_seconds >= 0.25
    status_rss = parse_status(Path(f"/proc/{os.getpid()}/status").read_text())[0]
    assert 0 < sample.rss_bytes <= sample.hwm_bytes
    assert abs(sample.rss_bytes - status_rss) < 64 * 1024 * 1024
    assert usage.ru_maxrss * 1024 >= sample.rss_bytes // 2


def test_read_proc_of_a_missing_process_is_none() -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert read_proc(pid_max + 1) is None


def test_sampler_keeps_the_peak_and_the_cpu_delta() -> None:
    readings = iter([ProcSample(100, 100, 1.0), ProcSample(300, 300, 1.5), ProcSample(200, 300, 2.5)])
    sampler = Sampler(interval=3600)
    watch = sampler.watch("broker", lambda: next(readings, None))
    assert watch is not None
    sampler.sample_now()
    sampler.sample_now()
    sampler.sample_now()  # gone: the last reading stays
    assert (watch.peak_rss, watch.last_rss, watch.samples) == (300, 200, 3)
    assert watch.cpu_seconds == pytest.approx(1.5)
    assert sampler.watch("nothing", None) is None
    assert sampler.get("broker") is watch


def test_sampler_thread_samples_this_process() -> None:
    sampler = Sampler(interval=0.02).start()
    sampler.watch("self", process_probe(os.getpid()))
    time.sleep(0.15)
    sampler.stop()
    watch = sampler.get("self")
    assert watch is not None and watch.samples >= 3 and watch.peak_rss > 0


def test_a_process_group_is_read_as_the_sum_of_its_members() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        sleeper = "import time; time.sleep(30)"
        forks = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {sleeper!r}]); {sleeper}"
        leader = subprocess.Popen([sys.executable, "-c", forks], start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            while len(group_pids(leader.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            members = group_pids(leader.pid)
            assert leader.pid in members and len(members) == 2 and child.pid not in members
            assert parse_stat_pgrp(Path(f"/proc/{leader.pid}/stat").read_text()) == leader.pid
            whole = group_probe(leader.pid)()
            parts = [read_proc(pid) for pid in members]
            assert whole is not None and all(parts)
            assert whole.rss_bytes == pytest.approx(sum(p.rss_bytes for p in parts if p), rel=0.2)
            assert read_pids(members) is not None and read_pids([]) is None
        finally:
            os.killpg(leader.pid, signal.SIGKILL)
            leader.wait()
    finally:
        child.kill()
        child.wait()


def test_steady_rate_is_the_second_half_of_the_commits() -> None:
    # four tasks of 1,000 events committed at 2.0, 2.5, 3.0 and 3.5 CPU-s: the last two cost 1.0 CPU-s
    assert steady_rate([[1000, 2.0], [1000, 2.5], [1000, 3.0], [1000, 3.5]]) == 2000
    assert steady_rate([[1000, 2.0], [3000, 3.5]]) == 2000
    assert steady_rate([[1000, 2.0]]) is None and steady_rate([]) is None
    assert steady_rate([[1000, 2.0], [1000, 2.0]]) is None, "no CPU between them: no rate"


def test_a_ceph_store_is_watched_as_all_three_daemons() -> None:
    from benchmarks.servers import Store

    class FakeCeph:
        pid = 30  # the RGW's
        running = True

        def pids(self) -> list[int]:
            return [10, 20, 30]

    class FakeSeaweed:
        pid = 40

        def pids(self) -> list[int]:
            return [40]

    ceph, seaweed, external = Store("ceph", None), Store("seaweedfs", None), Store("seaweedfs", "http://127.0.0.1:1")
    ceph.server, seaweed.server = cast("StoreServer", FakeCeph()), cast("StoreServer", FakeSeaweed())
    assert ceph.process_groups() == [10, 20, 30], "mon and OSD too, not the RGW alone"
    assert seaweed.process_groups() == [40]
    assert external.process_groups() == [] and external.probe() is None


def test_stopping_a_supersink_that_ended_on_its_own_reports_its_exit(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()  # reaped, as the harness's poll() does when it sees the process gone
    sink = SinkProcess(proc, tmp_path / "out", tmp_path / "err")
    sink.stop(timeout=1)
    assert sink.returncode == 3 and sink.cpu_total is None
