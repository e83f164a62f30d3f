"""`ei-bench compare --quick` as a smoke test: real ActiveMQ + SeaweedFS started by the harness itself.

Checks that results.json holds a row per transport and producer count with every required
metric, and that the plots are real PNG files. While `ei-producer --mode mq` does not exist yet,
the mq rows must say so, and that part of the test is an expected failure.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import construct_server
from testservers import ActiveMQ, SeaweedFS

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("central_cost.png", "events_per_second.png", "broker.png", "latency.png")
QUICK_PRODUCERS = [1, 4]
#: Numbers every successful run reports (None is not allowed).
REQUIRED = (
    "events_per_second",
    "e2e_seconds",
    "broker_messages",
    "broker_peak_rss_bytes",
    "broker_cpu_seconds",
    "producer_store_requests",
    "producer_store_bytes",
    "supersink_store_requests",
    "supersink_store_bytes",
    "supersink_cpu_seconds",
    "supersink_events_per_cpu_second",
    "ceiling_ratio",
)
PERCENTILES = ("producer_wall_seconds", "latency_seconds", "latency_last_job_seconds")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR"), f"{path.name}: no IHDR chunk first"
    width, height = struct.unpack(">II", data[16:24])
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND", f"{path.name} is truncated"
    return width, height


def check_run(row: dict[str, Any], events: int) -> None:
    where = f"{row['transport']} x{row['producers']}"
    assert row["status"] == "ok", f"{where}: {row['reason']}"
    assert row["events_loaded"] == events, where
    for key in REQUIRED:
        assert isinstance(row.get(key), int | float), f"{where}: {key} = {row.get(key)!r}"
    for key in PERCENTILES:
        p = row[key]
        assert p["p50"] is not None and p["p95"] is not None and p["p50"] <= p["p95"], f"{where}: {key} = {p}"
    if row["broker_counts_source"] == "producer":
        assert isinstance(row["broker_bytes"], int) and row["broker_bytes"] > 0, where
    else:
        assert row["broker_counts_source"].startswith("estimated"), where
    assert row["events_per_second"] > 0 and row["supersink_cpu_seconds"] > 0, where
    assert row["broker_peak_rss_bytes"] > 10 * 1024 * 1024, where  # a JVM
    assert row["errors"]["producer_failures"] == 0 and row["errors"]["supersink_exit"] == 0, where
    idle = row["idle_cpu_per_second"]
    assert isinstance(idle["broker"], float) and isinstance(idle["store"], float), f"{where}: {idle}"
    above = row["central_cpu_seconds_above_idle"]
    assert 0 < above <= row["central_cpu_seconds"], f"{where}: {above} of {row['central_cpu_seconds']}"


def check_drain(row: dict[str, Any], events: int) -> None:
    """A drain run: the backlog queued first, then the supersink's own CPU count from first message to last commit."""
    where = f"{row['transport']} drain"
    assert row["status"] == "ok", f"{where}: {row['reason']}"
    assert row["events_loaded"] == events, where
    assert row["backlog_seconds"] > 0 and row["drain_seconds"] > 0, where
    busy, whole = row["supersink_cpu_seconds"], row["supersink_cpu_seconds_process"]
    assert 0 < busy < whole, f"{where}: the work's CPU is part of the process's ({busy} of {whole})"
    assert row["supersink_events_per_cpu_second"] == round(events / busy), where
    assert isinstance(row["ceiling_ratio"], float), where
    assert row["supersink_steady_events_per_cpu_second"] is None, "one task: no second half to measure"
    assert len(row["supersink_counters"]["commits"]) == 1, where
    assert row["events_per_second"] is None and row["latency_seconds"]["p50"] is None, "no online figures"


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_quick_compare_writes_results_and_plots(tmp_path: Path) -> None:
    construct_server(lambda: ActiveMQ(tmp_path / "probe-activemq"))  # skips (or fails with CI=true) if missing
    construct_server(lambda: SeaweedFS(tmp_path / "probe-seaweedfs"))
    out = tmp_path / "results"
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.cli",
            "compare",
            "--quick",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "w"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=880,
        check=False,
    )
    seconds = time.monotonic() - started
    assert done.returncode in (0, 3), f"exit {done.returncode}:\n{done.stderr[-3000:]}"
    print(f"ei-bench compare --quick took {seconds:.0f} s")
    results = json.loads((out / "results.json").read_text())
    assert "finished in" in done.stderr  # the progress display: one line per run start and finish
    assert results["ceiling"]["events_per_cpu_second"] > 0
    events = results["config"]["events_per_run"]
    rows = {(r["transport"], r["producers"]): r for r in results["runs"] if r["mode"] == "online"}
    assert set(rows) == {(t, p) for t in ("store", "mq") for p in QUICK_PRODUCERS}
    drained = {r["transport"]: r for r in results["runs"] if r["mode"] == "drain"}
    assert set(drained) == {"store", "mq"}
    for name in PLOTS:
        width, height = png_size(out / name)
        assert width > 300 and height > 200, name
    table = (out / "results.md").read_text()
    assert "| store | 1 |" in table and "| mq | 4 |" in table
    assert "## The supersink on a backlog (drain runs)" in table and "## Against the targets" in table
    # every run warmed up its fresh broker and the store server before counting their CPU, and says so
    assert all(r["warmup"]["connections"] == 32 for r in results["runs"] if r["status"] == "ok"), results["runs"]
    assert "producer-like connections" in table

    for producers in QUICK_PRODUCERS:
        check_run(rows[("store", producers)], events)
    check_drain(drained["store"], events)
    assert done.returncode == (0 if all(r["status"] == "ok" for r in rows.values()) else 3)

    if not results["mq_mode_available"]:
        for producers in QUICK_PRODUCERS:
            row = rows[("mq", producers)]
            assert row["status"] == "failed" and "--mode" in row["reason"], row
        pytest.xfail("ei-producer has no --mode mq yet: the broker-only transport was reported as failed")
    for producers in QUICK_PRODUCERS:
        check_run(rows[("mq", producers)], events)
        assert rows[("mq", producers)]["producer_store_requests"] == 0
    check_drain(drained["mq"], events)


def _processes_of(work: Path) -> list[str]:
    """Command lines of the running processes that name `work` or run in it (the producers do)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue  # gone meanwhile, or not ours to look at
        if str(work) in argv or cwd.startswith(str(work)):
            found.append(argv)
    return found


@pytest.mark.integration
@pytest.mark.timeout(300)
@pytest.mark.parametrize("signals", [1, 3], ids=["once", "again-while-stopping"])
def test_sigterm_stops_the_servers_producers_and_supersink_it_started(tmp_path: Path, signals: int) -> None:
    """SIGTERM stops everything the comparison started; further SIGTERMs while it is stopping them (an impatient
    user, a supervisor's repeated signal) used to cut the stopping short and leave the object store running."""
    construct_server(lambda: ActiveMQ(tmp_path / "probe-activemq"))
    construct_server(lambda: SeaweedFS(tmp_path / "probe-seaweedfs"))
    work, log = tmp_path / "w", tmp_path / "stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.cli", "compare", "--quick", "--transports", "store",
             "--producers", "1", "--jobs", "50", "--drain-producers", "0",
             "--out", str(tmp_path / "out"), "--work", str(work)],
            stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not any("ei-producer" in argv for argv in _processes_of(work)):
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "no producer started"
            time.sleep(0.2)
        running = _processes_of(work)
        assert any("ei-supersink" in argv for argv in running), running
        proc.send_signal(signal.SIGTERM)
        for _ in range(signals - 1):
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 130, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupted" in log.read_text()
    left = _processes_of(work)
    assert left == [], f"left running: {left}"
    assert not (tmp_path / "out").exists(), "no results, and no empty results directory"


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_second_comparison_in_a_kept_work_directory_counts_only_its_own_tasks(tmp_path: Path) -> None:
    """Rerunning with --keep into the same --work used to reuse the first comparison's ledger: its task was
    counted again and the run failed with "100 events loaded, 50 sent"."""
    construct_server(lambda: ActiveMQ(tmp_path / "probe-activemq"))
    construct_server(lambda: SeaweedFS(tmp_path / "probe-seaweedfs"))
    work = tmp_path / "w"
    for attempt in ("first", "second"):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.cli", "compare", "--quick", "--keep", "--transports", "store",
             "--producers", "1", "--jobs", "1", "--events", "50", "--drain-producers", "0",
             "--out", str(tmp_path / attempt), "--work", str(work)],
            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=280,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{attempt}: exit {done.returncode}\n{done.stderr[-2000:]}"
        row = json.loads((tmp_path / attempt / "results.json").read_text())["runs"][0]
        assert (row["status"], row["events_loaded"], row["tasks_committed"]) == ("ok", 50, 1), (attempt, row)
    assert f"scratch directory kept (--keep): {work}" in done.stderr
    assert len([p for p in work.iterdir() if p.is_dir()]) == 2, "a directory per comparison, both kept"
