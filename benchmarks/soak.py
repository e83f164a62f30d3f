#!/usr/bin/env python3
"""Soak benchmark: many small tasks through one supersink with retention on; does its cost drift?

A feeder process puts tiny tasks (one job, one chunk of `--events` synthetic events, its manifest)
into a `file://` store and their three messages (expectation, chunk pointer, manifest pointer)
into the embedded `sqlite://` queue, a few thousand tasks ahead of the supersink. The chunk is
encoded once by the real producer (`JobRunner`) and stored under every task's key; each task gets
its own manifest. The supersink is the real service (`supersink.service.Supersink.run`, as
`ei-supersink run` runs it, logging to a file, its commit-notification outbox pruned as `run`
prunes it) in this process, with retention on: transit objects deleted at the first sweep after
each commit (`--delete-transit-after 0`) and task summaries (and notifications) forgotten
`--forget-after` seconds later (production defaults: 3 days and 90 days; the soak compresses time
so that the steady state of months is reached within minutes; for the same reason the outbox is
pruned every tenth of `--forget-after` instead of hourly).

Every `--every` committed tasks it records this process's CPU time (the supersink alone: the
feeder is another process), its RSS, the ledger's size on disk (database + WAL) and rows, the
objects left in the store and the machine's load (CPU time per task rises with the load of a
shared machine: caches and cores are shared). Targets: the CPU per task and the RSS of the last
`--every` tasks within 10 % of the first's, and a bounded ledger: never more than twice its size
after the first `--every` tasks (by then summaries are forgotten as fast as tasks commit; how many
it holds follows the throughput, not the tasks done), and fewer chunk rows than `--every`. At the
end a sample of tasks is read back from the warehouse and compared event by event.

    .venv/bin/python benchmarks/soak.py [--tasks 100000] [--every 10000] [--events 10]
                                        [--forget-after 60] [--workdir DIR] [--keep]

Writes benchmarks/results/soak-<UTC time>.json and .png. The work directory defaults to a new
directory in /dev/shm (tmpfs: the soak measures CPU and memory, not the disk's fsync latency).
Exit status: 0 when every target holds and the sample verifies, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads

from benchmarks.metrics import machine
from eventindex.codec import decode_manifest, encode_manifest
from eventindex.columns import EVENT_SCHEMA
from eventindex.names import chunk_key, manifest_key
from eventindex.pointers import expectation_pointer, headers_for, object_pointer
from eventindex.schema import eventindex_pb2 as pb
from eventindex.store import open_store
from eventindex.store.counting import CountingStore
from eventindex.transport import Publisher, open_consumer
from eventindex.transport.embedded import EmbeddedQueue
from producer.inputs.synthetic import SyntheticInput
from producer.job import JobRunner, JobSpec
from supersink import notify
from supersink.completeness import TaskView
from supersink.ledger import Ledger
from supersink.notify import Notifier
from supersink.retention import RetentionPolicy
from supersink.service import Supersink
from supersink.warehouse import Warehouse

RESULTS = Path(__file__).resolve().parent / "results"
DATASET = "bench.soak"
SEED = 20261206
#: Tasks the feeder keeps queued ahead of the supersink, and how many it writes per batch.
AHEAD = 3_000
BATCH = 250
TOLERANCE = 0.10
VERIFY_SAMPLE = 200
MIB = 1 << 20


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def task_name(index: int) -> str:
    return f"soak.{index:07d}"


# ------------------------------------------------------------------------------------ the feeder


class _Discard(Publisher):
    """The template job's pointers go nowhere: the feeder sends each task's own."""

    def send(self, body: bytes, headers: Mapping[str, str] | None = None, group: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def template(workdir: Path, events: int) -> tuple[bytes, pb.Manifest]:
    """One job through the real producer: its chunk's bytes and its manifest."""
    scratch = workdir / "template"
    scratch.mkdir()
    store = open_store(scratch.as_uri())
    spec = JobSpec(task="soak.template", job="j1", attempt=1, dataset=DATASET, chunk_events=events)
    JobRunner(spec, store, _Discard()).run([SyntheticInput(events, SEED)])
    chunk = store.get(chunk_key("soak.template", "j1", 1, 0))
    manifest = decode_manifest(store.get(manifest_key("soak.template", "j1", 1)))
    shutil.rmtree(scratch)
    return chunk, manifest


def feed(store_url: str, broker: str, tasks: int, chunk: bytes, manifest_template: bytes, done: Any) -> None:
    """The feeder process: every task's objects, then its three messages, AHEAD tasks ahead."""
    store = open_store(store_url)
    queue = EmbeddedQueue.from_url(broker)
    publisher = queue.publisher()
    template_manifest = pb.Manifest.FromString(manifest_template)
    chunk_sha = hashlib.sha256(chunk).digest()
    events = template_manifest.total_events
    sent = 0
    while sent < tasks:
        while queue.depth() > 3 * AHEAD:
            time.sleep(0.2)
        batch = []
        for index in range(sent, min(tasks, sent + BATCH)):
            task = task_name(index)
            key = chunk_key(task, "j1", 1, 0)
            store.put(key, chunk)
            manifest = pb.Manifest()
            manifest.CopyFrom(template_manifest)
            manifest.task, manifest.job, manifest.attempt = task, "j1", 1
            manifest.chunks[0].key = key
            obj = encode_manifest(manifest)
            mkey = manifest_key(task, "j1", 1)
            store.put(mkey, obj.data)
            expectation = expectation_pointer(task, 1, events)
            pointers = [
                expectation,
                object_pointer(pb.POINTER_KIND_CHUNK, store.object_url(key), len(chunk), chunk_sha, events, task,
                               "j1", 1, DATASET, 0),
                object_pointer(pb.POINTER_KIND_MANIFEST, store.object_url(mkey), obj.size, obj.sha256, obj.count, task,
                               "j1", 1, DATASET),
            ]  # fmt: skip
            batch += [(p.SerializeToString(), {**headers_for(p), "JMSXGroupID": task}) for p in pointers]
        publisher.send_batch(batch)
        sent = min(tasks, sent + BATCH)
    publisher.close()
    store.close()
    done.set()


# ------------------------------------------------------------------------------------ measuring


def rss_bytes() -> tuple[int, int]:
    """This process's VmRSS and VmHWM."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line.split(":")[0]] = int(line.split()[1]) * 1024
    return values["VmRSS"], values["VmHWM"]


def files_bytes(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())


@dataclass
class Sample:
    tasks: int
    cpu_seconds: float
    wall_seconds: float
    rss_bytes: int
    hwm_bytes: int
    ledger_bytes: int
    ledger_tasks: int
    ledger_chunk_rows: int
    ledger_notification_rows: int
    store_objects: int
    purged: int
    forgotten: int
    loadavg_1m: float


class SoakSupersink(Supersink):
    """The service, sampled every `every` commits (the sampling's own cost is excluded)."""

    def __init__(self, *args: Any, every: int, target: int, stop: threading.Event, workdir: Path, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.every, self.target, self.stop, self.workdir = every, target, stop, workdir
        self.samples: list[Sample] = []
        self.sampling_cpu = 0.0
        self.wall0 = time.monotonic()
        self.cpu0 = time.process_time()

    def load(self, view: TaskView, partial: bool = False) -> dict[str, Any] | None:
        marker = super().load(view, partial)
        loaded = self.counters.tasks_loaded
        if loaded % self.every == 0 or loaded >= self.target:
            self.sample(loaded)
        if loaded >= self.target:
            self.stop.set()
        return marker

    def sample(self, loaded: int) -> None:
        began = time.process_time()
        cpu = began - self.cpu0 - self.sampling_cpu
        rss, hwm = rss_bytes()
        db = self.ledger.path
        ledger_bytes = files_bytes(db, Path(f"{db}-wal"), Path(f"{db}-shm"))
        rows = self.ledger.row_counts()
        tasks, chunks, notes = rows["tasks"], rows["chunks"], rows["notifications"]
        objects = sum(len(files) for _, _, files in os.walk(self.workdir / "store"))
        retention = self.retention.counters if self.retention is not None else None
        self.samples.append(
            Sample(
                loaded, round(cpu, 3), round(time.monotonic() - self.wall0, 3), rss, hwm, ledger_bytes, int(tasks),
                int(chunks), int(notes), objects, retention.tasks_purged if retention else 0,
                retention.tasks_forgotten if retention else 0, round(os.getloadavg()[0], 2),
            )
        )  # fmt: skip
        last = self.samples[-1]
        log(
            f"soak: {loaded:,} tasks, {cpu:.1f} CPU-s, RSS {rss / MIB:.1f} MiB, ledger {ledger_bytes / MIB:.2f} MiB "
            f"({last.ledger_tasks:,} task, {last.ledger_chunk_rows:,} chunk, {last.ledger_notification_rows:,} "
            f"notification rows), store objects {objects:,}, "
            f"purged {last.purged:,}, forgotten {last.forgotten:,}"
        )
        self.sampling_cpu += time.process_time() - began


def segments(samples: list[Sample]) -> list[dict[str, float]]:
    out = []
    previous = Sample(0, 0.0, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0)
    for s in samples:
        n = s.tasks - previous.tasks
        out.append(
            {
                "tasks_from": previous.tasks,
                "tasks_to": s.tasks,
                "cpu_ms_per_task": round(1000 * (s.cpu_seconds - previous.cpu_seconds) / n, 3),
                "wall_ms_per_task": round(1000 * (s.wall_seconds - previous.wall_seconds) / n, 3),
                "rss_mib": round(s.rss_bytes / MIB, 1),
                "ledger_mib": round(s.ledger_bytes / MIB, 3),
                "loadavg_1m_at_end": s.loadavg_1m,
            }
        )
        previous = s
    return out


def verify(workdir: Path, tasks: int, events: int) -> dict[str, Any]:
    """A random sample of tasks read back from the warehouse, compared event by event."""
    expected = pa.concat_tables(SyntheticInput(events, SEED).batches(events)).sort_by(
        [("run_number", "ascending"), ("event_number", "ascending")]
    )
    warehouse = Warehouse.from_url((workdir / "wh").as_uri())
    rng = random.Random(SEED)
    sample = sorted(rng.sample(range(tasks), min(VERIFY_SAMPLE, tasks)))
    bad = []
    for index in sample:
        found = warehouse.committed(DATASET, task_name(index))
        if found is None:
            bad.append(f"{task_name(index)}: no commit marker")
            continue
        table = pads.dataset([f"{found.directory}/{n}" for n in found.files], format="parquet").to_table()
        if not table.select(EVENT_SCHEMA.names).equals(expected):
            bad.append(f"{task_name(index)}: events differ")
    markers = sum(1 for d in (workdir / "wh" / f"dataset={DATASET}").iterdir() if (d / "_SUCCESS.json").exists())
    warehouse.close()
    return {"sampled": len(sample), "identical": len(sample) - len(bad), "problems": bad[:10], "markers": markers}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    segs = result["segments"]
    samples = result["samples"]
    x = [s["tasks_to"] / 1000 for s in segs]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axes[0].bar(x, [s["cpu_ms_per_task"] for s in segs], width=0.8 * (x[0] if x else 1))
    axes[0].set(title="supersink CPU per task (each segment)", xlabel="tasks committed (thousands)", ylabel="ms")
    load = axes[0].twinx()
    load.plot(x, [s["loadavg_1m"] for s in samples], marker="x", color="tab:red", linestyle="none")
    load.set_ylabel("machine load (1 min, x)", color="tab:red")
    load.set_ylim(bottom=0)
    axes[1].plot(x, [s["rss_bytes"] / MIB for s in samples], marker="o", label="RSS")
    axes[1].plot(x, [s["hwm_bytes"] / MIB for s in samples], marker=".", linestyle=":", label="peak RSS")
    axes[1].set(title="supersink memory", xlabel="tasks committed (thousands)", ylabel="MiB")
    axes[1].set_ylim(bottom=0)
    axes[1].legend()
    axes[2].plot(x, [s["ledger_bytes"] / MIB for s in samples], marker="o", label="ledger on disk (MiB)")
    ax2 = axes[2].twinx()
    ax2.plot(x, [s["ledger_tasks"] for s in samples], marker=".", color="tab:orange", label="task rows")
    axes[2].set(title="ledger (retention on)", xlabel="tasks committed (thousands)", ylabel="MiB")
    axes[2].set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    ax2.set_ylabel("task rows")
    fig.suptitle(
        f"ei-supersink soak: {result['config']['tasks']:,} tasks of {result['config']['events']} events, "
        f"transit deleted after commit, summaries forgotten after {result['config']['forget_after']:g} s"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=10, help="events per task (one job, one chunk)")
    parser.add_argument("--forget-after", type=float, default=60.0, help="seconds a purged task's summary is kept")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.tasks < args.every or args.every < 1:
        parser.error("--tasks must be at least --every, which must be positive")

    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ei-soak-", dir=base))
    workdir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="ei-supersink: %(message)s", filename=str(workdir / "supersink.log"))
    started = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    notify.PRUNE_EVERY = min(notify.PRUNE_EVERY, args.forget_after / 10)  # time compressed like the forgetting
    store_url, broker = (workdir / "store").as_uri(), f"sqlite://{workdir / 'queue.db'}"
    try:
        chunk, manifest = template(workdir, args.events)
        EmbeddedQueue.from_url(broker).connect().close()
        done = mp.get_context("fork").Event()
        feeder = mp.get_context("fork").Process(
            target=feed, args=(store_url, broker, args.tasks, chunk, manifest.SerializeToString(), done)
        )
        feeder.start()
        ledger = Ledger(workdir / "ledger.db")
        store = CountingStore(open_store(store_url))
        stop = threading.Event()
        sink = SoakSupersink(
            ledger, store, Warehouse.from_url((workdir / "wh").as_uri()),
            retention=RetentionPolicy(transit=0.0, forget=args.forget_after, quarantine=None),
            notifier=Notifier(ledger, None, args.forget_after),  # as `run` without --notify: the outbox pruned
            every=args.every, target=args.tasks, stop=stop, workdir=workdir,
        )  # fmt: skip
        log(f"soak: {args.tasks:,} tasks of {args.events} events in {workdir}")

        def watch_feeder() -> None:  # a feeder that fails ends the soak instead of leaving it waiting
            feeder.join()
            if feeder.exitcode:
                log(f"soak: the feeder failed (exit {feeder.exitcode})")
                stop.set()

        threading.Thread(target=watch_feeder, daemon=True).start()
        with open_consumer(broker) as consumer:
            sink.run(consumer, stop)
        feeder.join(timeout=60)
        if feeder.exitcode or sink.counters.tasks_loaded < args.tasks:
            log(f"soak: stopped after {sink.counters.tasks_loaded:,} tasks")
            return 1
        ledger.close()
        checked = verify(workdir, args.tasks, args.events)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    samples = [asdict(s) for s in sink.samples]
    segs = segments(sink.samples)
    first, last = segs[0], segs[-1]
    targets = {
        "cpu_last_vs_first": round(last["cpu_ms_per_task"] / first["cpu_ms_per_task"], 3),
        "rss_last_vs_first": round(samples[-1]["rss_bytes"] / samples[0]["rss_bytes"], 3),
        "ledger_max_vs_first": round(max(s["ledger_bytes"] for s in samples) / samples[0]["ledger_bytes"], 3),
        "ledger_max_chunk_rows": max(s["ledger_chunk_rows"] for s in samples),
    }
    ok = {
        "cpu_within_10_percent": abs(targets["cpu_last_vs_first"] - 1) <= TOLERANCE,
        "rss_within_10_percent": abs(targets["rss_last_vs_first"] - 1) <= TOLERANCE,
        "ledger_bounded": targets["ledger_max_vs_first"] <= 2 and targets["ledger_max_chunk_rows"] < args.every,
        "sample_identical": checked["identical"] == checked["sampled"] and checked["markers"] == args.tasks,
    }
    result = {
        "benchmark": "soak",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {
            "tasks": args.tasks,
            "every": args.every,
            "events": args.events,
            "forget_after": args.forget_after,
            "delete_transit_after": 0.0,
            "notifications_pruned_every": notify.PRUNE_EVERY,
            "workdir_filesystem": "tmpfs" if str(workdir).startswith("/dev/shm") else "disk",
        },
        "machine": machine(),
        "samples": samples,
        "segments": segs,
        "targets": targets,
        "passed": ok,
        "verification": checked,
        "counters": {k: v for k, v in sink.counters.__dict__.items() if isinstance(v, int)},
        "retention": sink.retention.summary() if sink.retention is not None else None,
        "store_requests": store.stats.__dict__,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"soak-{started}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
    log(f"soak: {json.dumps(targets)} {json.dumps(ok)} -> {out}")
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
