"""ei-catalog benchmark: lookups, picks, trigger counts and overlaps on a catalogue of 10^8 events.

The catalogue is written once by `python -m benchmarks.catalog_data` (1,025 committed tasks, ~7 GB);
this measures, on this machine, with the index warm and cold:

- the index: built from nothing (every marker and footer), then refreshed with nothing new; wall and
  CPU time, size;
- single-event lookups, p50/p99 (targets: p99 <= 100 ms warm, <= 1 s cold):
  warm: one session (index loaded, DuckDB started, files in the page cache), one event at a time;
  cold: before each lookup the index and every data file are evicted from the page cache
  (posix_fadvise DONTNEED), then (a) a new session in this interpreter, and (b) a new `ei-catalog`
  process (interpreter start and imports included);
- a 100,000-event pick (target <= 10 s): events drawn uniformly over the whole catalogue, and events
  drawn from 5 runs (a pick list from one analysis of a few runs), warm and cold;
- counting 5 L1 trigger bits over every event (target >= 20 million events/s), and 5 HLT bits: the
  first count from the index (it reads the mask column once and stores its per-row-group bit counts
  in the index), the same count again (from the stored counts: what every later `ei-catalog count`
  does), and by reading the masks (`--scan`);
- a 64 x 64 L1 overlap matrix over every event, in one pass;
- the same on Spark local[2], side by side (a measurement that exceeds --spark-budget seconds is
  cancelled and reported as such).

    .venv/bin/python -m benchmarks.catalog_bench --warehouse /work/catalog-bench/warehouse
        [--work /work/catalog-bench] [--samples 300] [--cold-samples 30] [--spark-budget 1200]
        [--no-spark | --spark-from EARLIER/results.json] [--reuse-index] [--no-hlt-scan] [--note TEXT]
        [--out benchmarks/results]

`--reuse-index` keeps the index a previous run built in --work (and reports that build's figures), unless
it is of another index format (which the catalogue would rebuild anyway): then it is built and measured.

Writes benchmarks/results/catalog-<timestamp>/results.json, results.md and plots; prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from benchmarks.metrics import machine
from catalog.bits import parse_bits
from catalog.errors import EngineError
from catalog.index import INDEX_VERSION
from catalog.keys import request_table
from catalog.questions import count, lookup
from catalog.session import Session

RESULTS = Path(__file__).resolve().parent / "results"
PICK = 100_000
RUNS_IN_CLUSTERED_PICK = 5


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def evict(paths: Sequence[Path]) -> None:
    """Drop these files from the page cache (the next read comes from the disk): written pages are
    flushed first, as the kernel only drops clean ones."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def load() -> float:
    """The 1-minute load average now (the machine is shared: each figure carries the load it was taken under)."""
    return round(os.getloadavg()[0], 1)


def cpu() -> float:
    """CPU seconds used so far by this process (every thread: DuckDB's too) and its finished children."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


Timings = list[tuple[float, float]]  # (wall, CPU) seconds of each measurement


def percentiles(timings: Timings) -> dict[str, float]:
    """Wall-time percentiles, and CPU-time ones (which the other work on a shared machine changes less)."""
    ms = np.array([wall for wall, _ in timings]) * 1000
    cpu_ms = np.array([used for _, used in timings]) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1),
            "cpu_p50_ms": round(float(np.percentile(cpu_ms, 50)), 1),
            "cpu_p99_ms": round(float(np.percentile(cpu_ms, 99)), 1), "load": load()}  # fmt: skip


# ---------------------------------------------------------------- the events asked for


def sample_keys(session: Session, n: int, seed: int, runs: set[int] | None = None) -> list[tuple[int, int]]:
    """n distinct committed (run, event) keys, uniformly over the rows (of `runs` only, if given)."""
    view = session.view()
    rng = np.random.default_rng(seed)
    files = list(view.files)
    weights = np.array([f.rows for f in files], dtype=np.float64)
    if runs is not None:
        keep = np.zeros(len(files), dtype=bool)
        keep[view.rg_file[np.isin(view.rg_min_run, list(runs)) | np.isin(view.rg_max_run, list(runs))]] = True
        weights[~keep] = 0
    per_file = rng.multinomial(int(n * 1.05) + 10, weights / weights.sum())
    keys: set[tuple[int, int]] = set()
    for entry, k in zip(files, per_file.tolist(), strict=True):
        if k == 0:
            continue
        path = f"{session.reader.task_dir(entry.task.dataset, entry.task.task)}/{entry.name}"
        table = pq.read_table(path, columns=["run_number", "event_number"])
        run_column = table.column(0).to_numpy()
        rows = np.flatnonzero(np.isin(run_column, list(runs))) if runs is not None else np.arange(table.num_rows)
        chosen = rng.choice(rows, size=min(k, len(rows)), replace=False)
        keys.update(zip(run_column[chosen].tolist(), table.column(1).to_numpy()[chosen].tolist(), strict=True))
    ordered = sorted(keys)
    return [ordered[i] for i in sorted(rng.choice(len(ordered), size=min(n, len(ordered)), replace=False))]


def keys_file(work: Path, name: str, make: Callable[[], list[tuple[int, int]]]) -> list[tuple[int, int]]:
    path = work / f"{name}.txt"
    if not path.exists():
        path.write_text("".join(f"{r}:{e}\n" for r, e in make()))
    return [(int(r), int(e)) for r, e in (line.split(":") for line in path.read_text().split())]


# ---------------------------------------------------------------- measurements


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def lookups(session: Session, keys: Sequence[tuple[int, int]]) -> Timings:
    seconds = []
    for key in keys:
        started, used = time.perf_counter(), cpu()
        answer = lookup(session, request_table([key]), ["*"]).document()
        seconds.append((time.perf_counter() - started, cpu() - used))
        assert answer["found"] == 1, key
    return seconds


def cold_lookups(url: str, index: Path, keys: Sequence[tuple[int, int]], files: list[Path]) -> Timings:
    seconds = []
    for key in keys:
        evict(files)
        started, used = time.perf_counter(), cpu()
        with Session(url, index_path=index) as session:
            answer = lookup(session, request_table([key]), ["*"]).document()
        seconds.append((time.perf_counter() - started, cpu() - used))
        assert answer["found"] == 1, key
    return seconds


def cli_lookups(url: str, index: Path, keys: Sequence[tuple[int, int]], files: list[Path]) -> Timings:
    seconds = []
    command = [str(Path(sys.executable).with_name("ei-catalog")), "lookup", "--warehouse", url, "--index", str(index)]
    for run, event in keys:
        evict(files)
        started, used = time.perf_counter(), cpu()
        done = subprocess.run([*command, "--event", f"{run}:{event}", "--format", "json"], capture_output=True,
                              text=True, check=True)  # fmt: skip
        seconds.append((time.perf_counter() - started, cpu() - used))
        assert json.loads(done.stdout)["found"] == 1
    return seconds


def pick(session: Session, keys: Sequence[tuple[int, int]]) -> dict[str, Any]:
    used = cpu()
    elapsed, answer = timed(lambda: lookup(session, request_table(keys), ["*"]))
    used = cpu() - used
    document = answer.document()
    return {"events": len(keys), "seconds": round(elapsed, 2), "cpu_seconds": round(used, 1),
            "found": document["found"], "copies": document["copies"], "answer_rows": answer.table.num_rows,
            "load": load()}  # fmt: skip


def counting(session: Session, bits: str, overlap: bool, scan: bool = False) -> dict[str, Any]:
    used = cpu()
    elapsed, answer = timed(lambda: count(session, ["*"], parse_bits(bits), None, None, overlap, scan).document())
    used = cpu() - used
    return {"bits": len(bits.split(",")), "overlap": overlap, "events": answer["scanned"],
            "seconds": round(elapsed, 4), "events_per_second": round(answer["scanned"] / elapsed),
            "cpu_seconds": round(used, 1), "events_per_cpu_second": round(answer["scanned"] / used),
            "counts": [b["events"] for b in answer["bits"]][:8], "load": load()}  # fmt: skip


def index_version(path: Path) -> int | None:
    """The format of an index file (None: not readable as one)."""
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else None


def stored_files(session: Session, mask: str) -> int:
    """How many files the index holds the bit counts of a mask column of."""
    row = session.index.db.execute("SELECT count(DISTINCT file_id) FROM bit_counts WHERE mask = ?", (mask,)).fetchone()
    return int(row[0])


def l1_items(session: Session, n: int) -> list[int]:
    """The first n L1 bits the menu names (bits that fire)."""
    view = session.view()
    names = view.names(view.tasks[0].generations[0].trigger_names["l1_tav"])
    return [bit for bit, name in enumerate(names) if name][:n]


def hlt_chains(session: Session, n: int) -> list[int]:
    view = session.view()
    names = view.names(view.tasks[0].generations[0].trigger_names["hlt_passed_physics"])
    return [bit for bit, name in enumerate(names) if name][:n]


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    url = args.warehouse.resolve().as_uri()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    index = work / "index.sqlite"
    data_files = sorted(args.warehouse.resolve().rglob("*.parquet"))
    index_files = [index, index.with_name(index.name + "-wal")]
    results: dict[str, Any] = {"warehouse": str(args.warehouse), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}

    built = work / "index-build.json"
    reuse = args.reuse_index and index.exists() and built.exists() and index_version(index) == INDEX_VERSION
    if not reuse:
        log("index: built from nothing")
        for path in [*index_files, built]:
            path.unlink(missing_ok=True)
        evict(data_files)
    with Session(url, index_path=index, refresh=False) as session:
        if reuse:
            build_figures = json.loads(built.read_text())
        else:
            used, started_load = cpu(), load()
            build, report = timed(session.refresh)
            build_figures = {"build_seconds": round(build, 1), "build_cpu_seconds": round(cpu() - used, 1),
                             "build_load": started_load, "load_at_end": load(),
                             "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "report": report.as_dict()}  # fmt: skip
            built.write_text(json.dumps(build_figures))
        refresh, _ = timed(session.refresh)
        view = session.view()
        results["catalogue"] = {
            "tasks": len(view.tasks), "datasets": len(view.datasets()), "files": len(view.files),
            "row_groups": len(view.rg_file), "events": int(view.rg_rows.sum()),
            "bytes": sum(p.stat().st_size for p in data_files),
        }  # fmt: skip
        per_million = build_figures["build_cpu_seconds"] / results["catalogue"]["events"] * 1e6
        results["index"] = {**build_figures, "refresh_seconds": round(refresh, 3), "reused": reuse,
                            "bytes": sum(p.stat().st_size for p in index_files if p.exists()),
                            "build_cpu_seconds_per_million_events": round(per_million, 2)}  # fmt: skip
        log(f"catalogue: {results['catalogue']}; index: {results['index']}")
        singles = keys_file(work, "singles", lambda: sample_keys(session, args.samples, 1))
        uniform = keys_file(work, "pick-uniform", lambda: sample_keys(session, PICK, 2))
        runs = sorted({t for t in view.rg_min_run.tolist()})
        chosen = set(np.random.default_rng(3).choice(runs, RUNS_IN_CLUSTERED_PICK, replace=False).tolist())
        clustered = keys_file(work, "pick-5-runs", lambda: sample_keys(session, PICK, 4, chosen))
        l1 = l1_items(session, 64)
        hlt = hlt_chains(session, 5)

    duck: dict[str, Any] = {}
    log("DuckDB: warm single lookups")
    with Session(url, index_path=index) as session:
        lookups(session, singles[:5])  # starts the engine, reads the index
        duck["lookup_warm"] = percentiles(lookups(session, singles))
        log(f"  {duck['lookup_warm']}")
        log("DuckDB: 100,000-event picks, warm")
        pick(session, uniform[:1000])
        duck["pick_uniform_warm"] = pick(session, uniform)
        duck["pick_5_runs_warm"] = pick(session, clustered)
        log(f"  {duck['pick_uniform_warm']} {duck['pick_5_runs_warm']}")
        log("DuckDB: counting")
        five = ",".join(f"l1_tav:{b}" for b in l1[:5])
        five_hlt = ",".join(f"hlt_passed_physics:{b}" for b in hlt)
        for name, bits in (("count_5_l1_bits", five), ("count_5_hlt_bits", five_hlt)):
            mask = bits.split(":")[0]
            before = stored_files(session, mask)
            duck[f"{name}_first"] = {**counting(session, bits, False), "files_counted_before": before,
                                     "files_counted_after": stored_files(session, mask)}  # fmt: skip
            log(f"  first: {duck[f'{name}_first']}")
            duck[name] = counting(session, bits, False)
            assert duck[name]["counts"] == duck[f"{name}_first"]["counts"]
            log(f"  {duck[name]}")
            if name == "count_5_l1_bits" or not args.no_hlt_scan:
                duck[f"{name}_scan"] = counting(session, bits, False, scan=True)
                assert duck[name]["counts"] == duck[f"{name}_scan"]["counts"]
                log(f"  {duck[f'{name}_scan']}")
        duck["overlap_64_l1_bits"] = counting(session, ",".join(f"l1_tav:{b}" for b in l1), True)
        log(f"  {duck['overlap_64_l1_bits']}")
    log("DuckDB: cold single lookups (new session, caches evicted)")
    duck["lookup_cold_session"] = percentiles(cold_lookups(url, index, singles[: args.cold_samples], data_files))
    log(f"  {duck['lookup_cold_session']}")
    log("DuckDB: cold single lookups (new ei-catalog process, caches evicted)")
    duck["lookup_cold_process"] = percentiles(cli_lookups(url, index, singles[: args.cold_samples], data_files))
    log(f"  {duck['lookup_cold_process']}")
    log("DuckDB: 100,000-event picks, cold")
    for name, keys in (("pick_uniform_cold", uniform), ("pick_5_runs_cold", clustered)):
        evict(data_files + index_files)
        with Session(url, index_path=index) as session:
            duck[name] = pick(session, keys)
        log(f"  {name}: {duck[name]}")
    results["duckdb"] = duck

    if args.spark_from is not None:
        earlier = json.loads(args.spark_from.read_text())
        results["spark"] = earlier["spark"]
        results["spark_from"] = {"file": str(args.spark_from), "started": earlier["started"]}
    elif not args.no_spark:
        results["spark"] = spark(url, index, singles, uniform, clustered, l1, hlt, args)
    if args.note:
        results["note"] = args.note
    results["machine"] = machine()
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return results


Keys = list[tuple[int, int]]


def budgeted(session: Session, seconds: float, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a Spark measurement; past `seconds` its jobs are cancelled and the result says so."""
    from catalog.engines.spark_engine import SparkEngine

    engine = session.engine
    assert isinstance(engine, SparkEngine)
    timer = threading.Timer(seconds, engine.spark.sparkContext.cancelAllJobs)
    timer.start()
    started = time.perf_counter()
    try:  # wall time only: this process's CPU time leaves out Spark's JVM
        return {k: v for k, v in measure().items() if k not in ("cpu_seconds", "events_per_cpu_second")}
    except EngineError as exc:
        if time.perf_counter() - started < seconds:
            raise
        return {"cancelled_after_seconds": seconds, "error": str(exc)[:200]}
    finally:
        timer.cancel()


def spark(url: str, index: Path, singles: Keys, uniform: Keys, clustered: Keys, l1: list[int], hlt: list[int],
          args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"master": "local[2]", "budget_seconds": args.spark_budget}
    conf = {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "4g"}
    budget = args.spark_budget
    log("Spark: start")
    with Session(url, index_path=index, engine="spark", master="local[2]", conf=conf) as session:
        started, _ = timed(lambda: session.engine)
        out["start_seconds"] = round(started, 1)
        lookups(session, singles[:3])
        warm = percentiles(lookups(session, singles[: args.spark_samples]))
        out["lookup_warm"] = {k: v for k, v in warm.items() if not k.startswith("cpu_")}  # the JVM's is not in it
        log(f"  {out['lookup_warm']}")
        out["pick_5_runs_warm"] = budgeted(session, budget, lambda: pick(session, clustered))
        log(f"  {out['pick_5_runs_warm']}")
        out["pick_uniform_warm"] = budgeted(session, budget, lambda: pick(session, uniform))
        log(f"  {out['pick_uniform_warm']}")
        five_l1 = ",".join(f"l1_tav:{b}" for b in l1[:5])
        five_hlt = ",".join(f"hlt_passed_physics:{b}" for b in hlt)
        for name, bits in (("count_5_l1_bits", five_l1), ("count_5_hlt_bits", five_hlt)):
            # From the index's bit counts (stored by the DuckDB run), then by a scan on Spark's executors.
            out[name] = budgeted(session, budget, functools.partial(counting, session, bits, False))
            out[f"{name}_scan"] = budgeted(session, budget, functools.partial(counting, session, bits, False, True))
            log(f"  {out[name]} {out[f'{name}_scan']}")
        all_l1 = ",".join(f"l1_tav:{b}" for b in l1)
        out["overlap_64_l1_bits"] = budgeted(session, budget, lambda: counting(session, all_l1, True))
        log(f"  {out['overlap_64_l1_bits']}")
    return out


# ---------------------------------------------------------------- report


def index_line(index: dict[str, Any]) -> str:
    build = f"Index: built in {index['build_seconds']:,} s"
    if "build_cpu_seconds" in index:
        earlier = "; an earlier run" if index.get("reused") else ""
        build += (
            f" (CPU {index['build_cpu_seconds']:,} s, {index['build_cpu_seconds_per_million_events']} CPU-s "
            f"per 10^6 events, load {index['build_load']}"
            f"{'-' + str(index['load_at_end']) if 'load_at_end' in index else ''}{earlier})"
        )
    return f"{build}, refreshed (nothing new) in {index['refresh_seconds']} s, {index['bytes'] / 1e6:.1f} MB."


def markdown(results: dict[str, Any]) -> str:
    cat, duck, spark_ = results["catalogue"], results["duckdb"], results.get("spark", {})

    def under(d: dict[str, Any]) -> str:
        return f", load {d['load']}" if "load" in d else ""

    def single(d: dict[str, Any] | None) -> str:
        if not d:
            return "-"
        used = f"; CPU {d['cpu_p50_ms']:,.0f} / {d['cpu_p99_ms']:,.0f} ms" if "cpu_p50_ms" in d else ""
        return f"{d['p50_ms']:,.0f} / {d['p99_ms']:,.0f} ms{used} (n={d['n']}{under(d)})"

    def seconds(d: dict[str, Any] | None) -> str:
        if d and "cancelled_after_seconds" in d:
            return f"> {d['cancelled_after_seconds']:,.0f} s (cancelled)"
        if not d:
            return "-"
        used = f"CPU {d['cpu_seconds']:,.1f} s" if "cpu_seconds" in d else ""
        notes = ", ".join(n for n in (used, under(d)[2:]) if n)
        return f"{d['seconds']:,.1f} s" + (f" ({notes})" if notes else "")

    def millions(rate: float) -> str:
        return f"{rate / 1e9:,.1f} G" if rate >= 1e9 else f"{rate / 1e6:,.2f} M"

    def rate(d: dict[str, Any] | None) -> str:
        if d and "cancelled_after_seconds" in d:
            return seconds(d)
        if not d:
            return "-"
        used = f"; {millions(d['events_per_cpu_second'])} per CPU-s" if "events_per_cpu_second" in d else ""
        took = f"{d['seconds']:,.1f} s" if d["seconds"] >= 1 else f"{d['seconds'] * 1000:,.0f} ms"
        return f"{took}, {millions(d['events_per_second'])} events/s{used}{under(d)}"

    def first(d: dict[str, Any] | None) -> str:
        if not d:
            return "-"
        files = f"; {d['files_counted_before']} -> {d['files_counted_after']} files with stored counts"
        return rate(d) + files

    # A Spark run from before the index held bit counts scanned the masks: its counts are scan figures.
    spark_index = "count_5_l1_bits_scan" in spark_
    spark_scan = (
        {k.removesuffix("_scan"): v for k, v in spark_.items() if k.endswith("_scan")} if spark_index else spark_
    )
    spark_head = "Spark local[2]"
    if "spark_from" in results:
        spark_head += f" (not rerun: the run of {results['spark_from']['started']})"

    lines = [
        f"# ei-catalog on {cat['events']:,} events ({results['started']})",
        "",
        f"{cat['tasks']:,} committed tasks in {cat['datasets']} datasets, {cat['files']:,} files, "
        f"{cat['row_groups']:,} row groups, {cat['bytes'] / 1e9:.2f} GB. {index_line(results['index'])}",
        "",
        f"| question | target | DuckDB | {spark_head} |",
        "| --- | --- | --- | --- |",
        f"| single-event lookup, warm (p50 / p99) | p99 <= 100 ms | {single(duck['lookup_warm'])} | "
        f"{single(spark_.get('lookup_warm'))} |",
        f"| single-event lookup, cold: new session, caches evicted | p99 <= 1 s | "
        f"{single(duck['lookup_cold_session'])} | - |",
        f"| single-event lookup, cold: new `ei-catalog` process, caches evicted | p99 <= 1 s | "
        f"{single(duck['lookup_cold_process'])} | - |",
        f"| 100,000-event pick, uniform over the catalogue, warm | <= 10 s | {seconds(duck['pick_uniform_warm'])} | "
        f"{seconds(spark_.get('pick_uniform_warm'))} |",
        f"| 100,000-event pick, uniform, cold | <= 10 s | {seconds(duck['pick_uniform_cold'])} | - |",
        f"| 100,000-event pick from 5 runs, warm | <= 10 s | {seconds(duck['pick_5_runs_warm'])} | "
        f"{seconds(spark_.get('pick_5_runs_warm'))} |",
        f"| 100,000-event pick from 5 runs, cold | <= 10 s | {seconds(duck['pick_5_runs_cold'])} | - |",
        f"| count 5 L1 bits over every event, first count of the run (fills the `l1_tav` counts the index lacks) | "
        f">= 20 M events/s | {first(duck.get('count_5_l1_bits_first'))} | - |",
        f"| count 5 L1 bits over every event, from the index's bit counts | >= 20 M events/s | "
        f"{rate(duck['count_5_l1_bits'])} | {rate(spark_.get('count_5_l1_bits')) if spark_index else '-'} |",
        f"| count 5 L1 bits over every event, scan (`--scan`) | >= 20 M events/s | "
        f"{rate(duck.get('count_5_l1_bits_scan'))} | {rate(spark_scan.get('count_5_l1_bits'))} |",
        f"| count 5 HLT bits over every event, first count of the run (fills the `hlt_passed_physics` counts "
        f"the index lacks) | - | {first(duck.get('count_5_hlt_bits_first'))} | - |",
        f"| count 5 HLT bits over every event, from the index's bit counts | - | {rate(duck['count_5_hlt_bits'])} | "
        f"{rate(spark_.get('count_5_hlt_bits')) if spark_index else '-'} |",
        f"| count 5 HLT bits over every event, scan (`--scan`) | - | {rate(duck.get('count_5_hlt_bits_scan'))} | "
        f"{rate(spark_scan.get('count_5_hlt_bits'))} |",
        f"| 64 x 64 L1 overlap matrix, one pass | report | {rate(duck['overlap_64_l1_bits'])} | "
        f"{rate(spark_.get('overlap_64_l1_bits'))} |",
        "",
        f"Spark session start: {spark_.get('start_seconds', '-')} s. Machine: {results['machine']['cpus']} CPUs "
        f"({results['machine']['cpu_model']}), shared with other work: each DuckDB figure gives the 1-minute load "
        f"average when it was taken (2.0 = both cores busy); at the end "
        f"{', '.join(f'{v:.1f}' for v in results['machine']['loadavg_at_end'])}.",
        "",
    ]
    if "note" in results:
        lines += [results["note"], ""]
    return "\n".join(lines)


def plots(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    duck, spark_ = results["duckdb"], results.get("spark", {})
    fig, ax = plt.subplots(figsize=(8, 4))
    labels, p50, p99 = [], [], []
    latencies = {
        "DuckDB warm": duck["lookup_warm"],
        "DuckDB cold session": duck["lookup_cold_session"],
        "DuckDB cold process": duck["lookup_cold_process"],
        "Spark warm": spark_.get("lookup_warm"),
    }
    for name, d in latencies.items():
        if d:
            labels.append(name)
            p50.append(d["p50_ms"])
            p99.append(d["p99_ms"])
    x = np.arange(len(labels))
    ax.bar(x - 0.2, p50, 0.4, label="p50")
    ax.bar(x + 0.2, p99, 0.4, label="p99")
    ax.axhline(100, color="tab:green", linestyle="--", label="warm target (p99)")
    ax.axhline(1000, color="tab:red", linestyle="--", label="cold target (p99)")
    ax.set_xticks(x, labels)
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title("single-event lookup latency")
    ax.legend()
    fig.tight_layout()
    paths = [out / "lookup_latency.png"]
    fig.savefig(paths[0])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    names = ["count_5_l1_bits", "count_5_l1_bits_scan", "count_5_hlt_bits", "overlap_64_l1_bits"]
    if "count_5_l1_bits_scan" not in spark_:  # a Spark run from before the index's bit counts: scans
        spark_ = {**spark_, "count_5_l1_bits_scan": spark_.get("count_5_l1_bits"), "count_5_l1_bits": None,
                  "count_5_hlt_bits": None}  # fmt: skip
    x = np.arange(len(names))
    for offset, (engine, d) in zip((-0.2, 0.2), (("DuckDB", duck), ("Spark local[2]", spark_)), strict=True):
        rates = [d[n]["events_per_second"] / 1e6 if "events_per_second" in (d.get(n) or {}) else 0 for n in names]
        ax.bar(x + offset, rates, 0.4, label=engine)
    ax.axhline(20, color="tab:green", linestyle="--", label="target (5 bits)")
    ax.set_yscale("log")
    ax.set_xticks(x, ["5 L1 bits\n(index)", "5 L1 bits\n(scan)", "5 HLT bits\n(index)", "64x64 L1\noverlap"])
    ax.set_ylabel("million events / s")
    ax.set_title(f"trigger counting over {results['catalogue']['events']:,} events")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "counting.png")
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True, help="the catalogue's directory")
    parser.add_argument("--work", type=Path, default=Path("/work/catalog-bench"), help="index and event lists")
    parser.add_argument("--samples", type=int, default=300, help="warm single lookups")
    parser.add_argument("--cold-samples", type=int, default=30, help="cold single lookups (each way)")
    parser.add_argument("--spark-samples", type=int, default=30, help="single lookups on Spark")
    parser.add_argument("--spark-budget", type=float, default=1200, help="seconds a Spark measurement may take")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument(
        "--spark-from", type=Path, help="an earlier run's results.json: its Spark figures, shown as not rerun"
    )
    parser.add_argument("--reuse-index", action="store_true", help="keep the index an earlier run built in --work")
    parser.add_argument("--no-hlt-scan", action="store_true", help="count the HLT bits from the index only")
    parser.add_argument("--note", help="a note on the catalogue, printed under the table")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = run(args)
    out = args.out / f"catalog-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    plots(results, out)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
