"""The demo behind `scripts/demo`: the whole pipeline through the real CLIs, on the embedded default.

Runs the supersink as a service, sends the task expectation, runs 8 producer jobs two at a
time (one job's first attempt is killed half-way and retried), waits for the task to be
committed, stops the service, then checks the warehouse holds exactly the produced events
(every column of every event, not just counts). Last, it asks the catalogue (`ei-catalog`) what
an event index is for: where some events are (and that an absent one is absent) and how many
events passed two trigger bits, each answer checked against the produced events. The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def log(text: str) -> None:
    print(text, flush=True)


def run_job(
    args: argparse.Namespace, store: str, broker: str, job: int, attempt: int, fail_after: int | None
) -> dict[str, Any]:
    cmd = [
        str(BIN / "ei-producer"),
        "--task",
        args.task,
        "--job",
        f"job{job:03d}",
        "--attempt",
        str(attempt),
        "--dataset",
        args.dataset,
        "--input",
        f"synthetic:{args.events}:{job}",
        "--store",
        store,
        "--broker",
        broker,
        "--chunk-events",
        str(args.chunk_events),
        "--quiet",
    ]
    if fail_after is not None:
        cmd += ["--fail-after-chunks", str(fail_after)]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if fail_after is not None:
        if proc.returncode != 137:
            raise SystemExit(f"demo: the job meant to die exited {proc.returncode}: {proc.stderr.strip()}")
        log(f"  job{job:03d} attempt {attempt}: died after {fail_after} chunks, as planned (exit 137, no manifest)")
        return {"job": job, "attempt": attempt, "events": 0, "died": True}
    if proc.returncode != 0:
        raise SystemExit(f"demo: job{job:03d} attempt {attempt} failed ({proc.returncode}): {proc.stderr.strip()}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    log(
        f"  job{job:03d} attempt {attempt}: {result['events']:,} events in {result['chunks']} chunks, "
        f"{result['bytes'] / 1e6:.2f} MB, {seconds:.1f}s"
    )
    return result


def wait_loaded(state: Path, task: str, supersink: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if supersink.poll() is not None:
            raise SystemExit(f"demo: the supersink exited early with {supersink.returncode}")
        proc = subprocess.run(
            [str(BIN / "ei-supersink"), "status", "--state", str(state), "--json"], capture_output=True, text=True
        )
        if proc.returncode == 0:
            for t in json.loads(proc.stdout)["tasks"]:
                if t["task"] == task:
                    line = f"  supersink: task {task} {t['state']}, jobs {t['jobs_resolved']}/{t['expected_jobs']}"
                    if line != last:
                        log(line)
                        last = line
                    if t["state"] in ("loaded", "failed"):
                        return dict(t)
        time.sleep(0.5)
    raise SystemExit(f"demo: task {task} was not loaded within {timeout:.0f}s")


def expected_events(args: argparse.Namespace) -> pa.Table:
    sys.path.insert(0, str(ROOT))
    from producer.inputs.synthetic import SyntheticInput

    tables = [t for job in range(1, args.jobs + 1) for t in SyntheticInput(args.events, job).batches(args.events or 1)]
    return pa.concat_tables(tables).sort_by([("run_number", "ascending"), ("event_number", "ascending")])


def catalog(*args: str) -> Any:
    """One `ei-catalog` question, its JSON answer."""
    proc = subprocess.run([str(BIN / "ei-catalog"), *args, "--format", "json"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"demo: ei-catalog {args[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def ask_the_catalogue(work: Path, warehouse: str, expected: pa.Table) -> bool:
    """Look up three events and one that is not there, and count two L1 bits with their overlap; check each
    answer against the produced events."""
    log("[5/5] asking the catalogue (ei-catalog, DuckDB)")
    index = ["--warehouse", warehouse, "--index", str(work / "catalog-index.sqlite")]
    rows = [0, expected.num_rows // 2, expected.num_rows - 1]
    wanted = [(expected.column("run_number")[i].as_py(), expected.column("event_number")[i].as_py()) for i in rows]
    absent = (wanted[0][0], max(expected.column("event_number").to_pylist()) + 1)
    events = ",".join(f"{r}:{e}" for r, e in [*wanted, absent])
    found = catalog("lookup", *index, "--event", events)
    copies = {(c["run_number"], c["event_number"]): c for c in found["events"] if c["copies"]}
    for run, event in wanted:
        copy = copies.get((run, event), {}).get("copies", [{}])[0]
        log(f"  lookup {run}:{event}: task {copy.get('task')}, job {copy.get('job')}, "
            f"input file {copy.get('input_guid')}, lumi block {copy.get('lumi_block')}")  # fmt: skip
    not_found = {(m["run_number"], m["event_number"]) for m in found["not_found"]}
    log(f"  lookup {absent[0]}:{absent[1]}: {'not found' if absent in not_found else 'found (it should not be)'}")
    lookup_ok = found["found"] == len(wanted) and set(copies) == set(wanted) and not_found == {absent}
    counted = catalog("count", *index, "--dataset", "*", "--bits", "l1_tav:0,l1_tav:7", "--overlap")
    bits = [_bit_set(expected, "l1_tav", b) for b in (0, 7)]
    truth = [int(b.sum()) for b in bits] + [int((bits[0] & bits[1]).sum())]
    got = [b["events"] for b in counted["bits"]] + [counted["overlap"]["events"][0][1]]
    log(f"  count l1_tav bits 0 and 7 over {counted['scanned']:,} events: {got[0]:,} and {got[1]:,}, "
        f"both {got[2]:,}")  # fmt: skip
    ok = lookup_ok and got == truth and counted["scanned"] == expected.num_rows
    log(f"  answers identical to the produced events: {ok}")
    return ok


def _bit_set(table: pa.Table, mask: str, bit: int) -> Any:
    import numpy as np

    values = table.column(mask).to_pylist()
    return np.array([v is not None and len(v) > bit // 8 and bool(v[bit // 8] >> (bit % 8) & 1) for v in values])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--events", type=int, default=25_000)
    parser.add_argument("--chunk-events", type=int, default=5_000)
    parser.add_argument("--task", default="demo.task.000001")
    parser.add_argument("--dataset", default="data24_13p6TeV.00456000.physics_Main.merge.AOD")
    parser.add_argument("--workdir", type=Path, default=ROOT / "demo-output")
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()

    started = time.monotonic()
    work = args.workdir.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "store").mkdir()  # the supersink refuses a store directory that does not exist
    store, broker = (work / "store").as_uri(), f"sqlite://{work / 'queue.db'}"
    warehouse, state = (work / "warehouse").as_uri(), work / "ledger.db"
    log(f"demo: {args.jobs} jobs x {args.events:,} events, store {store}, queue {broker}")

    log("[1/5] starting the supersink service")
    sink_log = (work / "supersink.log").open("wb")
    supersink = subprocess.Popen(
        [
            str(BIN / "ei-supersink"),
            "run",
            "--broker",
            broker,
            "--store",
            store,
            "--warehouse",
            warehouse,
            "--state",
            str(state),
        ],
        stdout=sink_log,
        stderr=subprocess.STDOUT,
    )
    try:
        log("[2/5] announcing the task")
        subprocess.run(
            [str(BIN / "ei-supersink"), "expect", "--broker", broker, "--task", args.task, "--jobs", str(args.jobs)],
            check=True,
        )
        log(f"[3/5] running {args.jobs} producer jobs, {args.parallel} at a time")
        crash_job = max(1, args.jobs // 2)
        chunks_per_job = -(-args.events // args.chunk_events)
        plans: list[tuple[int, int, int | None]] = [(j, 1, None) for j in range(1, args.jobs + 1) if j != crash_job]
        with ThreadPoolExecutor(args.parallel) as pool:
            futures = [pool.submit(run_job, args, store, broker, crash_job, 1, max(1, chunks_per_job // 2))]
            futures += [pool.submit(run_job, args, store, broker, j, a, f) for j, a, f in plans]
            results = [f.result() for f in futures]
        retry = run_job(args, store, broker, crash_job, 2, None)
        produced = sum(r["events"] for r in results) + retry["events"]
        log("[4/5] waiting for the task to be complete and committed")
        task_status = wait_loaded(state, args.task, supersink, timeout=600)
    finally:
        supersink.send_signal(signal.SIGTERM)
        supersink.wait(timeout=60)
        sink_log.close()
    if task_status["state"] != "loaded":
        raise SystemExit(f"demo: task failed: {task_status['failure']}")
    location = Path(task_status["location"])
    marker = json.loads((location / "_SUCCESS.json").read_text())
    files = [str(location / f["name"]) for f in marker["files"]]
    loaded = pads.dataset(files, format="parquet").to_table()
    expected = expected_events(args)
    same = loaded.select(expected.column_names).equals(expected)
    for s in task_status["superseded"]:
        log(f"  superseded (not loaded): {s['job']} attempt {s['attempt']}")
    log(
        f"  verified: {loaded.num_rows:,} events in {len(files)} Parquet file(s), "
        f"identical to the produced events: {same}"
    )
    asked = ask_the_catalogue(work, warehouse, expected)
    summary = {
        "task": args.task,
        "dataset": args.dataset,
        "jobs": args.jobs,
        "events_produced": produced,
        "events_loaded": int(marker["rows"]),
        "events_verified": same,
        "duplicates": marker["duplicates"]["count"],
        "superseded": task_status["superseded"],
        "warehouse": str(location),
        "catalog_answers_verified": asked,
        "seconds": round(time.monotonic() - started, 2),
    }
    print(json.dumps(summary), flush=True)
    ok = same and asked and summary["events_loaded"] == produced == args.jobs * args.events
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
