#!/usr/bin/env python3
"""Supersink memory benchmark: load one big task and show the supersink's peak RSS stays bounded.

Phase 1 (setup, not measured): produce a task of E events in J jobs with the real producer code
(`JobRunner` + `SyntheticInput(events, seed=job)`) into a `file://` store and an embedded
`sqlite://` queue, in parallel worker processes; then send the task expectation.

Phase 2 (measured): run the real `ei-supersink run ... --until-idle 5` as a child process and
sample its RSS (/proc/<pid>/status VmRSS, VmHWM) and CPU time (/proc/<pid>/stat) while it
verifies every chunk (intake), then loads and commits the task. The supersink's log lines
"task ...: loading" and "task ...: committed" are timestamped as they arrive, which splits the
run into intake and load steps. The exact peak comes from the kernel (wait4 ru_maxrss) when the
child is reaped; the sampled VmHWM is kept as a cross-check.

Verification streams through the Parquet parts batch by batch (never the whole task in memory):
the commit marker's row count equals E, and (run, event) is strictly increasing across all
parts, i.e. sorted and unique.

    .venv/bin/python benchmarks/load_memory.py [--events 20000000] [--jobs N] [--chunk-events N]
                                               [--workdir DIR] [--keep] [--skip-setup]

Exit status: 0 when peak RSS < 1 GiB and verification passes, 1 otherwise, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.metrics import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SUPERSINK = ROOT / ".venv" / "bin" / "ei-supersink"
LIMIT_BYTES = 1 << 30
MIB = 1 << 20
TASK = "bench.load-memory.000001"
DATASET = "bench.synthetic.load-memory"
UNTIL_IDLE = 5.0
SAMPLE_SECONDS = 0.2
CLK_TCK = os.sysconf("SC_CLK_TCK")
SNAPSHOT = "queue.snapshot.db"


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class ProgressLine:
    """A progress line on stderr: rewritten in place on a terminal, a new line every 15 s otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
        elif force or now - self.last >= 15:
            log(text)
        else:
            return
        self.last = now

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def fmt_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ---------------------------------------------------------------- phase 1: produce the task

_counter: Any = None


def _init_worker(counter: Any) -> None:
    global _counter
    _counter = counter


def _run_job(args: tuple[str, str, int, int, int]) -> tuple[str, int, int, float]:
    """One job attempt through the real producer code; returns (job, events, bytes, seconds)."""
    from eventindex.store import open_store
    from eventindex.transport import open_publisher
    from producer.inputs.synthetic import SyntheticInput
    from producer.job import JobRunner, JobSpec, Progress

    store_url, broker_url, index, events, chunk_events = args
    job = f"job-{index:06d}"
    spec = JobSpec(task=TASK, job=job, attempt=1, dataset=DATASET, chunk_events=chunk_events)
    done = [0]

    def on_progress(progress: Progress) -> None:
        with _counter.get_lock():
            _counter.value += progress.events - done[0]
        done[0] = progress.events

    store = open_store(store_url)
    try:
        with open_publisher(broker_url) as publisher:
            result = JobRunner(spec, store, publisher, on_progress=on_progress).run(
                [SyntheticInput(events, seed=index)]
            )
    finally:
        store.close()
    return job, result.events, result.bytes, result.seconds


def job_sizes(events: int, jobs: int) -> list[int]:
    base, extra = divmod(events, jobs)
    return [base + (1 if i < extra else 0) for i in range(jobs)]


def produce(store_url: str, broker_url: str, events: int, jobs: int, chunk_events: int, workers: int) -> dict[str, Any]:
    from eventindex.pointers import expectation_pointer, headers_for
    from eventindex.transport import open_publisher

    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    work = [(store_url, broker_url, i, n, chunk_events) for i, n in enumerate(job_sizes(events, jobs))]
    started = time.monotonic()
    progress = ProgressLine()
    stored_bytes = 0
    finished = 0
    log(
        f"setup: producing {events:,} events in {jobs} jobs of ~{events // jobs:,} ({chunk_events:,} per chunk) "
        f"with {workers} worker processes"
    )
    with ctx.Pool(workers, initializer=_init_worker, initargs=(counter,)) as pool:
        pending = pool.imap_unordered(_run_job, work)
        while True:
            try:
                _job, _n, nbytes, _secs = pending.next(timeout=1.0)
                stored_bytes += nbytes
                finished += 1
            except mp.TimeoutError:
                pass
            except StopIteration:
                break
            done = counter.value
            elapsed = time.monotonic() - started
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = (events - done) / rate if rate > 0 else float("inf")
            progress.show(
                f"setup: {done:,}/{events:,} events ({100 * done / max(events, 1):.1f}%), "
                f"{finished}/{jobs} jobs, {rate:,.0f} ev/s, elapsed {fmt_seconds(elapsed)}, "
                f"ETA {fmt_seconds(eta) if eta != float('inf') else '?'}"
            )
    progress.show(f"setup: {counter.value:,}/{events:,} events, {finished}/{jobs} jobs", force=True)
    progress.done()
    pointer = expectation_pointer(TASK, jobs, events)
    with open_publisher(broker_url) as publisher:
        publisher.send(pointer.SerializeToString(), headers_for(pointer), group=TASK)
    seconds = time.monotonic() - started
    log(
        f"setup: done in {seconds:.0f} s ({events / seconds:,.0f} events/s), {stored_bytes / MIB:,.0f} MiB of chunks; "
        "task expectation sent"
    )
    return {"seconds": round(seconds, 1), "chunk_bytes": stored_bytes, "workers": workers}


def snapshot_queue(queue: Path, snapshot: Path) -> None:
    """Keep a copy of the full queue so that --skip-setup can replay phase 2."""
    src, dst = sqlite3.connect(queue), sqlite3.connect(snapshot)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def restore_queue(snapshot: Path, queue: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{queue}{suffix}").unlink(missing_ok=True)
    snapshot_queue(snapshot, queue)


# ---------------------------------------------------------------- phase 2: the measured supersink


@dataclass
class Sample:
    t: float
    rss: int
    hwm: int
    cpu: float


def read_proc(pid: int) -> tuple[int, int, float] | None:
    """(VmRSS bytes, VmHWM bytes, utime+stime seconds) of a live process, None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rss = hwm = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    if hwm == 0:  # a zombie: the memory is gone already
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)
    return rss, hwm, cpu


@dataclass
class Mark:
    t: float
    cpu: float | None
    rss: int | None
    line: str


@dataclass
class SupersinkRun:
    started: float = 0.0
    ended: float = 0.0
    returncode: int = 0
    samples: list[Sample] = field(default_factory=list)
    marks: dict[str, Mark] = field(default_factory=dict)
    stderr_tail: list[str] = field(default_factory=list)
    stdout: str = ""
    ru_maxrss: int = 0
    ru_cpu: float = 0.0


def queue_depth(queue: Path) -> int | None:
    try:
        db = sqlite3.connect(f"file:{queue}?mode=ro", uri=True, timeout=0.1)
        try:
            (count,) = db.execute("SELECT count(*) FROM messages").fetchone()
            return int(count)
        finally:
            db.close()
    except sqlite3.Error:
        return None


def run_supersink(work: Path, task_dir: Path, total_messages: int) -> SupersinkRun:
    queue = work / "queue.db"
    cmd = [
        str(SUPERSINK),
        "run",
        "--broker",
        f"sqlite://{queue}",
        "--store",
        (work / "store").as_uri(),
        "--warehouse",
        (work / "warehouse").as_uri(),
        "--state",
        str(work / "ledger.db"),
        "--until-idle",
        str(UNTIL_IDLE),
    ]
    log("measure: " + " ".join(cmd))
    run = SupersinkRun()
    run.started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    pid = proc.pid
    assert proc.stdout is not None and proc.stderr is not None
    lock = threading.Lock()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            now = time.monotonic()
            sample = read_proc(pid)
            line = line.rstrip("\n")
            with lock:
                run.stderr_tail = [*run.stderr_tail[-49:], line]
                for name, pattern in (("loading", r"task \S+: loading "), ("committed", r"task \S+: committed ")):
                    if re.search(pattern, line) and name not in run.marks:
                        run.marks[name] = Mark(now, sample[2] if sample else None, sample[0] if sample else None, line)
            log(f"  [supersink +{now - run.started:7.1f}s] {line}")

    def read_stdout() -> None:
        assert proc.stdout is not None
        run.stdout = proc.stdout.read()

    readers = [threading.Thread(target=read_stderr, daemon=True), threading.Thread(target=read_stdout, daemon=True)]
    for reader in readers:
        reader.start()
    progress = ProgressLine()
    next_show = 0.0
    try:
        while True:
            waited_pid, status, usage = os.wait4(pid, os.WNOHANG)
            if waited_pid == pid:
                run.ended = time.monotonic()
                run.returncode = os.waitstatus_to_exitcode(status)
                proc.returncode = run.returncode  # reaped here, so Popen must not wait for it again
                run.ru_maxrss = usage.ru_maxrss * 1024  # KiB on Linux
                run.ru_cpu = usage.ru_utime + usage.ru_stime
                break
            sample = read_proc(pid)
            now = time.monotonic()
            if sample is not None:
                run.samples.append(Sample(now, *sample))
            if now >= next_show and sample is not None:
                next_show = now + 1.0
                with lock:
                    marks = dict(run.marks)
                if "committed" in marks:
                    phase = "committed, idling before exit"
                elif "loading" in marks:
                    parts = len(list(task_dir.glob("part-*.parquet"))) if task_dir.exists() else 0
                    phase = f"load: {parts} part files written"
                else:
                    depth = queue_depth(queue)
                    done = total_messages - depth if depth is not None else 0
                    phase = f"intake: {done:,}/{total_messages:,} messages"
                peak = max(s.hwm for s in run.samples)
                progress.show(
                    f"measure: {now - run.started:6.1f}s  {phase}  RSS {sample[0] / MIB:,.0f} MiB  "
                    f"peak {peak / MIB:,.0f} MiB  CPU {sample[2]:,.1f}s"
                )
            time.sleep(SAMPLE_SECONDS)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        raise
    finally:
        progress.done()
        for reader in readers:
            reader.join(timeout=10)
    return run


# ---------------------------------------------------------------- verification


def verify(task_dir: Path, events: int) -> dict[str, Any]:
    """Stream the parts: row counts, and (run, event) strictly increasing across all of them."""
    import numpy as np
    import pyarrow.parquet as pq

    problems: list[str] = []
    marker_path = task_dir / "_SUCCESS.json"
    if not marker_path.exists():
        return {"ok": False, "problems": [f"no commit marker {marker_path}"]}
    marker = json.loads(marker_path.read_text())
    if marker.get("rows") != events:
        problems.append(f"marker rows {marker.get('rows')} != {events} produced")
    if marker.get("duplicates", {}).get("count"):
        problems.append(f"marker reports {marker['duplicates']['count']} duplicates")
    rows = 0
    parquet_bytes = 0
    row_groups = 0
    prev: tuple[int, int] | None = None
    listed = [f["name"] for f in marker.get("files", [])]
    on_disk = sorted(p.name for p in task_dir.glob("part-*.parquet"))
    if sorted(listed) != on_disk:
        problems.append(f"marker lists {len(listed)} parts, {len(on_disk)} on disk")
    for entry in marker.get("files", []):
        path = task_dir / entry["name"]
        parquet_bytes += path.stat().st_size
        pf = pq.ParquetFile(path)
        row_groups += pf.num_row_groups
        file_rows = 0
        for batch in pf.iter_batches(batch_size=131_072, columns=["run_number", "event_number"]):
            runs = batch.column(0).to_numpy(zero_copy_only=False).astype(np.uint64)
            evs = batch.column(1).to_numpy(zero_copy_only=False).astype(np.uint64)
            n = len(runs)
            if n == 0:
                continue
            if prev is not None and (int(runs[0]), int(evs[0])) <= prev:
                problems.append(f"{entry['name']}: ({runs[0]}, {evs[0]}) does not follow {prev}")
            increasing = (runs[1:] > runs[:-1]) | ((runs[1:] == runs[:-1]) & (evs[1:] > evs[:-1]))
            if not increasing.all():
                bad = int(np.argmin(increasing))
                problems.append(
                    f"{entry['name']}: row {file_rows + bad + 1} ({runs[bad + 1]}, {evs[bad + 1]}) "
                    f"does not follow ({runs[bad]}, {evs[bad]})"
                )
            prev = (int(runs[-1]), int(evs[-1]))
            file_rows += n
        if file_rows != entry["rows"] or pf.metadata.num_rows != entry["rows"]:
            problems.append(f"{entry['name']}: {file_rows} rows read, marker says {entry['rows']}")
        rows += file_rows
    if rows != events:
        problems.append(f"{rows} rows in the parts, {events} produced")
    return {
        "ok": not problems,
        "problems": problems[:20],
        "rows": rows,
        "parts": len(listed),
        "row_groups": row_groups,
        "parquet_bytes": parquet_bytes,
        "marker_load_seconds": marker.get("load_seconds"),
    }


# ---------------------------------------------------------------- report


def rate(events: int, seconds: float | None) -> float | None:
    return round(events / seconds) if seconds else None


def summarise(run: SupersinkRun, events: int) -> dict[str, Any]:
    wall = run.ended - run.started
    sampled_peak = max((s.hwm for s in run.samples), default=0)
    peak = max(run.ru_maxrss, sampled_peak)
    out: dict[str, Any] = {
        "returncode": run.returncode,
        "peak_rss_bytes": peak,
        "peak_rss_mib": round(peak / MIB, 1),
        "peak_rss_sampled_vmhwm_mib": round(sampled_peak / MIB, 1),
        "peak_rss_wait4_mib": round(run.ru_maxrss / MIB, 1),
        "samples": len(run.samples),
        "whole": {
            "wall_seconds": round(wall, 2),
            "cpu_seconds": round(run.ru_cpu, 2),
            "events_per_second": rate(events, wall),
            "events_per_cpu_second": rate(events, run.ru_cpu),
            "note": f"process lifetime: start-up, intake (verify every chunk), load, then {UNTIL_IDLE:g} s idle",
        },
    }
    loading, committed = run.marks.get("loading"), run.marks.get("committed")
    if loading is not None:
        before = [s for s in run.samples if s.t <= loading.t]
        cpu0 = loading.cpu if loading.cpu is not None else (before[-1].cpu if before else 0.0)
        out["intake"] = {
            "wall_seconds": round(loading.t - run.started, 2),
            "cpu_seconds": round(cpu0, 2),
            "events_per_second": rate(events, loading.t - run.started),
            "events_per_cpu_second": rate(events, cpu0),
            "peak_rss_mib": round(max((s.hwm for s in before), default=0) / MIB, 1),
        }
        if committed is not None:
            during = [s for s in run.samples if loading.t <= s.t <= committed.t]
            after = [s for s in run.samples if s.t >= committed.t]
            cpu1 = committed.cpu
            if cpu1 is None:
                cpu1 = after[0].cpu if after else run.ru_cpu
            load_wall = committed.t - loading.t
            out["load"] = {
                "wall_seconds": round(load_wall, 2),
                "cpu_seconds": round(cpu1 - cpu0, 2),
                "events_per_second": rate(events, load_wall),
                "events_per_cpu_second": rate(events, cpu1 - cpu0),
                "rss_at_start_mib": round((loading.rss or 0) / MIB, 1),
                "max_rss_sampled_mib": round(max((s.rss for s in during), default=0) / MIB, 1),
                "vmhwm_at_commit_mib": round(max((s.hwm for s in during), default=0) / MIB, 1),
            }
    return out


def table(result: dict[str, Any]) -> str:
    m = result["supersink"]
    v = result["verification"]
    events = result["config"]["events"]
    lines = [
        f"| supersink, {events:,} events, {result['config']['jobs']} jobs, {result['config']['chunks']:,} chunks "
        "| wall s | CPU s | events/s (wall) | events/CPU-s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for key, label in (
        ("whole", "whole run (process lifetime)"),
        ("intake", "intake (verify chunks)"),
        ("load", "load step (loading → committed)"),
    ):
        step = m.get(key)
        if step is None:
            lines.append(f"| {label} | - | - | - | - |")
            continue
        lines.append(
            f"| {label} | {step['wall_seconds']:,.1f} | {step['cpu_seconds']:,.1f} | "
            f"{step['events_per_second'] or 0:,} | {step['events_per_cpu_second'] or 0:,} |"
        )
    verdict = "PASS" if m["peak_rss_bytes"] < LIMIT_BYTES else "FAIL"
    lines += [
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| peak RSS (wait4 ru_maxrss; sampled VmHWM) | **{m['peak_rss_mib']:,.0f} MiB** "
        f"({m['peak_rss_wait4_mib']:,.0f}; {m['peak_rss_sampled_vmhwm_mib']:,.0f}) — limit 1024 MiB: {verdict} |",
    ]
    if "load" in m:
        lines.append(
            f"| RSS at load start → max during load | {m['load']['rss_at_start_mib']:,.0f} → "
            f"{m['load']['max_rss_sampled_mib']:,.0f} MiB |"
        )
    if v.get("rows"):
        lines += [
            f"| Parquet | {v['parquet_bytes'] / MIB:,.0f} MiB in {v['parts']} parts, {v['row_groups']} row groups, "
            f"{v['parquet_bytes'] / v['rows']:.1f} B/event |",
        ]
    lines.append(
        f"| verification | {'PASS' if v['ok'] else 'FAIL: ' + '; '.join(v['problems'][:3])} "
        f"({v.get('rows', 0):,} rows, (run, event) strictly increasing across parts) |"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000_000, help="events in the task (default 20,000,000)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs in the task (default: events / 100,000, >= 1)")
    parser.add_argument("--chunk-events", type=int, default=10_000, help="events per chunk object (default 10,000)")
    parser.add_argument("--workers", type=int, default=2, help="producer processes for the setup (default 2)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where store, queue, ledger and warehouse go (default: a new directory under $TMPDIR)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    parser.add_argument(
        "--skip-setup",
        action="store_true",
        help="reuse the store and queue snapshot of an earlier "
        "--keep run in --workdir (same --events/--jobs/--chunk-events); phase 2 only",
    )
    args = parser.parse_args()
    if args.events < 1 or args.chunk_events < 1:
        parser.error("--events and --chunk-events must be positive")
    if args.jobs is None:
        args.jobs = max(1, args.events // 100_000)
    if not 1 <= args.jobs <= args.events:
        parser.error("--jobs must be in 1..events")
    if args.skip_setup and args.workdir is None:
        parser.error("--skip-setup needs --workdir")
    return args


def main() -> int:
    args = parse_args()
    if not SUPERSINK.exists():
        log(f"load_memory: {SUPERSINK} not found (install the project into .venv)")
        return 2
    created = args.workdir is None or not args.workdir.exists()
    work = (Path(tempfile.mkdtemp(prefix="ei-load-memory-")) if args.workdir is None else args.workdir).absolute()
    store, queue, snapshot = work / "store", work / "queue.db", work / SNAPSHOT
    ledger, warehouse = work / "ledger.db", work / "warehouse"

    def ours() -> list[Path]:
        """What this benchmark and its supersink create: the ledger's -wal/-shm and any sidecar (spool) too."""
        return [store, warehouse, snapshot, *work.glob("queue.db*"), *work.glob(f"{ledger.name}*")]

    try:
        if args.skip_setup:
            if not (store.is_dir() and snapshot.exists()):
                log(f"load_memory: {work} holds no store and queue snapshot of an earlier --keep run")
                return 2
            for path in work.glob(f"{ledger.name}*"):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            shutil.rmtree(warehouse, ignore_errors=True)
            restore_queue(snapshot, queue)
            setup: dict[str, Any] = {"skipped": True}
            log(f"setup: skipped, replaying the queue snapshot in {work}")
        else:
            work.mkdir(parents=True, exist_ok=True)
            if any(p.exists() for p in ours()):
                log(f"load_memory: {work} already holds a store/queue/ledger/warehouse; use an empty directory")
                return 2
            setup = produce(
                store.as_uri(), f"sqlite://{queue}", args.events, args.jobs, args.chunk_events, args.workers
            )
            snapshot_queue(queue, snapshot)
        total_messages = queue_depth(queue) or 0
        task_dir = warehouse / f"dataset={DATASET}" / f"task={TASK}"
        run = run_supersink(work, task_dir, total_messages)
        measured = summarise(run, args.events)
        if run.returncode != 0:
            log("measure: ei-supersink failed; its last lines:\n  " + "\n  ".join(run.stderr_tail[-20:]))
        log("verify: streaming the part files ...")
        verification = verify(task_dir, args.events)
        counters: dict[str, Any] = {}
        with contextlib.suppress(ValueError, IndexError):
            counters = json.loads(run.stdout.strip().splitlines()[-1])
        chunks = sum((n + args.chunk_events - 1) // args.chunk_events for n in job_sizes(args.events, args.jobs))
        result = {
            "benchmark": "load_memory",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": {
                "events": args.events,
                "jobs": args.jobs,
                "chunk_events": args.chunk_events,
                "chunks": chunks,
                "messages": total_messages,
                "until_idle": UNTIL_IDLE,
                "limit_bytes": LIMIT_BYTES,
            },
            "machine": machine(),
            "setup": setup,
            "supersink": measured,
            "supersink_counters": counters,
            "verification": verification,
            "log": {name: {"t": round(m.t - run.started, 3), "line": m.line} for name, m in run.marks.items()},
            "rss_timeline_mib": [
                [round(s.t - run.started, 1), round(s.rss / MIB, 1)]
                for s in run.samples[:: max(1, len(run.samples) // 400)]
            ],
        }
        if verification.get("rows"):
            result["parquet_bytes_per_event"] = round(verification["parquet_bytes"] / verification["rows"], 2)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"load-memory-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(result, indent=2, default=lambda o: asdict(o)) + "\n")
        print(table(result))
        print(f"\nresults: {out.relative_to(ROOT)}")
        ok = run.returncode == 0 and measured["peak_rss_bytes"] < LIMIT_BYTES and verification["ok"]
        return 0 if ok else 1
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            for path in ours():
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):
                    work.rmdir()


if __name__ == "__main__":
    sys.exit(main())
