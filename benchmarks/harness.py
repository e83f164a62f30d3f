"""`ei-bench compare`: the runs. Real servers, real `ei-producer` and `ei-supersink` processes.

One *run* is one transport (``store`` or ``mq``) at one number of concurrent producers:

1. a fresh broker (when the harness manages it: a new server and data directory per run, so its
   peak RSS and CPU belong to this run alone), a fresh queue, bucket prefix, ledger and warehouse;
   the broker and the store server are warmed up as a running installation's would be (benchmarks.warmup),
   then their idle CPU is read;
2. ``ei-supersink run`` is started, ``ei-supersink expect`` announces each task (T jobs, JxE
   events), and the harness waits until ``ei-supersink status`` lists them: the sink is consuming;
3. TxJ ``ei-producer --quiet`` processes (one per job, ``synthetic:E:SEED``, a distinct seed per
   job) run at most N at a time; the clock starts when the first one is spawned;
4. the run ends when every task whose jobs all succeeded has its commit marker
   (``_SUCCESS.json``) in the warehouse, or on failure or timeout; then the sink gets SIGTERM and
   prints its counters, and ``ei-supersink status --json`` gives each task's ``loaded_at``.

The broker, supersink and store processes are sampled from /proc throughout (benchmarks.metrics).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.ceiling import job_seed
from benchmarks.config import BenchConfig, BenchError
from benchmarks.metrics import Sampler, Watch, machine, percentiles, process_probe, steady_rate
from benchmarks.processes import JobOutcome, ProducerPool, SinkProcess, mq_mode_available, tool
from benchmarks.progress import Progress
from benchmarks.servers import Broker, Store

DATASET = "bench.synthetic"
MIB = 1 << 20
POLL_SECONDS = 0.25
SINK_READY_TIMEOUT = 120.0
#: seconds an `ei-supersink expect` or `status` may take (expect tries a broker that does not answer 5 x 30 s)
CLI_TIMEOUT = 120.0
#: seconds the ceiling's Parquet write may take
CEILING_TIMEOUT = 3600.0
#: after the warm-up, time for the broker's JIT compiler to finish what the warm-up queued
WARMUP_SETTLE_SECONDS = 2.0


class Run:
    def __init__(
        self,
        cfg: BenchConfig,
        transport: str,
        producers: int,
        index: int,
        total: int,
        stamp: str,
        broker: Broker,
        store: Store,
        bucket: str,
        progress: Progress,
        mq_unavailable: str,
        drain: bool = False,
    ) -> None:
        self.cfg, self.transport, self.producers = cfg, transport, producers
        self.index, self.total = index, total
        self.broker, self.store, self.bucket, self.progress = broker, store, bucket, progress
        #: a drain run queues the whole workload first, then starts the supersink on the backlog
        self.drain = drain
        self.name = f"{transport}-drain" if drain else f"{transport}-p{producers}"
        # a directory of this comparison's own: a --work kept from an earlier one holds its ledgers and warehouses
        self.dir = cfg.work / stamp / self.name
        self.queue = f"ei.bench.{stamp}.{self.name}"
        self.task_names = [f"bench.{stamp}.{self.name}.t{t:03d}" for t in range(cfg.tasks)]
        self.mq_unavailable = mq_unavailable
        self.env: dict[str, str] = {}
        #: the broker's and the store server's idle CPU per second, read just before the run
        self.idle: dict[str, float | None] = {}
        self.label = f"[{index}/{total}] {transport} transport, {producers} producer{'s' * (producers != 1)}"
        if drain:
            self.label = f"[{index}/{total}] {transport} transport, supersink draining a backlog"

    # --------------------------------------------------------------- helpers

    def _cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """An `ei-supersink` command; one that takes over CLI_TIMEOUT is killed and reported as failed (exit 124)."""
        argv = [tool("ei-supersink"), *args]
        try:
            return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=CLI_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            message = f"ei-supersink {args[0]}: no answer within {CLI_TIMEOUT:.0f} s (killed by the harness)"
            return subprocess.CompletedProcess(argv, 124, "", message)

    def _producer_argv(self, job: JobOutcome) -> list[str]:
        argv = [
            tool("ei-producer"),
            "--task", job.task, "--job", job.job, "--attempt", "1", "--dataset", DATASET,
            "--input", f"synthetic:{self.cfg.events}:{job.seed}",
            "--broker", self.broker_url, "--quiet",
        ]  # fmt: skip
        if self.transport == "mq":
            argv += ["--mode", "mq"]
        else:
            argv += ["--store", self.store_url]
        if self.cfg.producer_nice:  # grid jobs run on other machines: here they yield the CPU to the central services
            argv = ["nice", "-n", str(self.cfg.producer_nice), *argv]
        return argv

    def _marker(self, task: str) -> Path:
        return self.dir / "warehouse" / f"dataset={DATASET}" / f"task={task}" / "_SUCCESS.json"

    # --------------------------------------------------------------- the run

    def execute(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "run": self.name,
            "transport": self.transport,
            "producers": self.producers,
            "mode": "drain" if self.drain else "online",
            "tasks": self.cfg.tasks,
            "jobs": self.cfg.tasks * self.cfg.jobs,
            "events_expected": self.cfg.events_per_run,
            "status": "failed",
            "reason": "",
        }
        self.progress.line(
            f"{self.label}: starting ({self.cfg.tasks}x{self.cfg.jobs} jobs x {self.cfg.events:,} events)"
        )
        if self.transport == "mq" and self.mq_unavailable:
            row["reason"] = self.mq_unavailable
            self.progress.line(f"{self.label}: FAILED: {row['reason']}")
            return row
        started = time.monotonic()
        row["loadavg_1min"] = {"start": round(os.getloadavg()[0], 2)}
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            try:
                self.broker.start(self.dir / self.broker.kind)
            except Exception as exc:
                row["reason"] = f"the broker did not start: {_first_line(str(exc), last=False)}"
                self.progress.line(f"{self.label}: FAILED: {row['reason']}")
                return row
            self._execute(row)
        finally:  # also when interrupted while the broker starts
            self.broker.stop()
            if not self.cfg.keep:
                shutil.rmtree(self.dir, ignore_errors=True)
        row["harness_seconds"] = round(time.monotonic() - started, 1)
        row["loadavg_1min"]["end"] = round(os.getloadavg()[0], 2)
        verdict = "ok" if row["status"] == "ok" else f"{row['status'].upper()}: {row['reason']}"
        if self.drain:
            busy = row.get("supersink_events_per_cpu_second")
            rate = f"supersink {busy:,.0f} events per CPU-second" if busy else "no rate"
        else:
            rate = f"{row['events_per_second']:,.0f} events/s" if row.get("events_per_second") else "no rate"
        self.progress.line(f"{self.label}: finished in {row['harness_seconds']:.0f} s, {rate}; {verdict}")
        return row

    def _execute(self, row: dict[str, Any]) -> None:
        cfg = self.cfg
        self.broker_url = self.broker.queue_url(self.queue)
        prefix = self.name
        self.store_url = self.store.s3_url(self.bucket, prefix)
        self.env = {**os.environ, **self.store.env(), **self.broker.env()}
        if self.store.server is not None:  # our own server's credentials: nothing else may interfere
            for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
                self.env.pop(var, None)
        ledger = self.dir / "ledger.db"
        sampler = Sampler().start()
        sampler.watch("broker", self.broker.probe())
        sampler.watch("store", self.store.probe())
        if self.drain:
            self._execute_drain(row, ledger, sampler)
            return
        sink = self._start_sink(ledger)
        sampler.watch("supersink", process_probe(sink.proc.pid))
        pool: ProducerPool | None = None
        jobs: list[JobOutcome] = []
        base: dict[str, float | None] = {}
        try:
            reason = self._announce_tasks(ledger, sink) or self._warm_up(row)
            if reason:
                row["reason"] = reason
                return
            self.idle = self._idle_rates(sampler)
            base = self._cpu_now(sampler)
            jobs = self._jobs()
            pool = ProducerPool(self._producer_argv, jobs, self.producers, self.env, cfg.run_timeout, self.dir)
            pool.start()
            status, reason = self._wait(pool, jobs, sink, sampler)
            row["status"], row["reason"] = status, reason
        finally:
            end_cpu = self._wind_down(pool, sink, sampler)
        self._figures(row, jobs, pool, sink, ledger, sampler, base, end_cpu)

    def _execute_drain(self, row: dict[str, Any], ledger: Path, sampler: Sampler) -> None:
        """Queue everything (expectations, then every job), then run the supersink on the backlog."""
        cfg = self.cfg
        jobs = self._jobs()
        pool: ProducerPool | None = None
        sink: SinkProcess | None = None
        base: dict[str, float | None] = {}
        try:
            reason = self._send_expectations() or self._warm_up(row)
            if reason:
                row["reason"] = reason
                return
            self.idle = self._idle_rates(sampler)
            base = self._cpu_now(sampler)
            pool = ProducerPool(self._producer_argv, jobs, self.producers, self.env, cfg.run_timeout, self.dir)
            pool.start()
            deadline = time.monotonic() + cfg.run_timeout
            while not pool.done:
                finished = [j for j in jobs if j.returncode is not None]
                failed = [j for j in finished if not j.ok]
                if failed:
                    pool.cancel()
                    row["reason"] = f"{len(failed)} producer(s) failed, e.g. exit {failed[0].returncode}: " + (
                        _first_line(failed[0].stderr)
                    )
                    return
                if time.monotonic() >= deadline:
                    pool.cancel()
                    row["status"], row["reason"] = "timeout", f"producers not done after {cfg.run_timeout:.0f} s"
                    return
                self._show(len(finished), 0, len(jobs), 0, sampler)
                time.sleep(POLL_SECONDS)
            failed = [j for j in jobs if not j.ok]
            if failed:
                row["reason"] = f"{len(failed)} producer(s) failed: {_first_line(failed[0].stderr)}"
                return
            row["backlog_seconds"] = round(max(j.ended for j in jobs) - (pool.first_start or 0.0), 3)
            sink_started = time.time()
            sink = self._start_sink(ledger)
            sampler.watch("supersink", process_probe(sink.proc.pid))
            row["status"], row["reason"] = self._wait_committed(sink, sampler, len(jobs))
            row["drain_seconds"] = round(time.time() - sink_started, 3)
        finally:
            end_cpu = self._wind_down(pool, sink, sampler)
        self._figures(row, jobs, pool, sink, ledger, sampler, base, end_cpu)

    def _cpu_now(self, sampler: Sampler) -> dict[str, float | None]:
        """The broker's, the store's and the supersink's CPU seconds, sampled now, and the time ("wall")."""
        sampler.sample_now()
        now: dict[str, float | None] = {name: (w.last_cpu if w else None) for name, w in self._watches(sampler).items()}
        now["wall"] = time.monotonic()
        return now

    def _warm_up(self, row: dict[str, Any]) -> str:
        """Warm up the fresh broker and the store server as clients of a running installation would have
        (benchmarks.warmup, on a queue and keys of the warm-up's own); "" when done, else why not."""
        count = self.cfg.warmup_connections
        if not count:
            return ""
        self.progress.live(f"  {self.name}: warming up the broker and the store server ({count} connections)")
        started = time.monotonic()
        argv = [sys.executable, "-m", "benchmarks.warmup", self.broker.queue_url(f"{self.queue}.warm-up"),
                self.store.s3_url(self.bucket, f"{self.name}.warm-up"), str(count)]  # fmt: skip
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=self.cfg.run_timeout)
        except subprocess.TimeoutExpired:
            return f"the warm-up took over {self.cfg.run_timeout:.0f} s"
        if done.returncode:
            return f"the warm-up failed: {_first_line(done.stderr) or f'exit {done.returncode}'}"
        row["warmup"] = {"connections": count, "seconds": round(time.monotonic() - started, 1)}
        time.sleep(WARMUP_SETTLE_SECONDS)
        return ""

    def _idle_rates(self, sampler: Sampler) -> dict[str, float | None]:
        """The broker's and the store server's CPU seconds per second over `idle_seconds` of nothing to do:
        their upkeep (a JVM's timers and garbage collection, a store's heartbeats), paid whether events
        flow or not. The run's central cost is also reported without it."""
        seconds = self.cfg.idle_seconds
        self.progress.live(f"  {self.name}: reading the servers' idle CPU for {seconds:.0f} s")
        first = self._cpu_now(sampler)
        time.sleep(seconds)
        last = self._cpu_now(sampler)
        wall = _delta(first["wall"], last["wall"]) or seconds
        rates: dict[str, float | None] = {}
        for name in ("broker", "store"):
            used = _delta(first.get(name), last.get(name))
            rates[name] = None if used is None else max(0.0, used) / wall
        return rates

    def _wind_down(
        self, pool: ProducerPool | None, sink: SinkProcess | None, sampler: Sampler
    ) -> dict[str, float | None]:
        """Stop the producers, take the CPU figures, stop the supersink and the sampler."""
        if pool is not None:
            pool.cancel()
            pool.close()
        end_cpu = self._cpu_now(sampler)
        if sink is not None:
            sink.stop()
        sampler.stop()
        return end_cpu

    def _wait_committed(self, sink: SinkProcess, sampler: Sampler, jobs: int) -> tuple[str, str]:
        deadline = time.monotonic() + self.cfg.run_timeout
        while True:
            committed = [t for t in self.task_names if self._marker(t).exists()]
            self._show(jobs, 0, jobs, len(committed), sampler)
            if len(committed) == len(self.task_names):
                return "ok", ""
            if sink.proc.poll() is not None:
                return "failed", f"ei-supersink run exited with {sink.proc.returncode}: {sink.stderr_tail(3)}"
            if time.monotonic() >= deadline:
                return "timeout", (
                    f"the supersink did not drain the backlog in {self.cfg.run_timeout:.0f} s: "
                    f"{len(committed)}/{len(self.task_names)} tasks committed"
                )
            time.sleep(POLL_SECONDS)

    def _jobs(self) -> list[JobOutcome]:
        return [
            JobOutcome(task, f"job-{j:06d}", job_seed(t, j, self.cfg.jobs))
            for t, task in enumerate(self.task_names)
            for j in range(self.cfg.jobs)
        ]

    @staticmethod
    def _watches(sampler: Sampler) -> dict[str, Watch | None]:
        return {name: sampler.get(name) for name in ("broker", "store", "supersink")}

    def _start_sink(self, ledger: Path) -> SinkProcess:
        stdout_path, stderr_path = self.dir / "supersink.out", self.dir / "supersink.log"
        argv = [
            tool("ei-supersink"), "run", "--broker", self.broker_url, "--store", self.store_url,
            "--warehouse", (self.dir / "warehouse").as_uri(), "--state", str(ledger),
        ]  # fmt: skip
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=self.env)
        return SinkProcess(proc, stdout_path, stderr_path)

    def _status(self, ledger: Path) -> dict[str, Any] | None:
        if not ledger.exists():
            return None
        done = self._cli("status", "--state", str(ledger), "--json")
        if done.returncode != 0:
            return None
        with contextlib.suppress(ValueError):
            return dict(json.loads(done.stdout))
        return None

    def _send_expectations(self) -> str:
        """Send every task's expectation; '' or a failure reason."""
        cfg = self.cfg
        for task in self.task_names:
            done = self._cli(
                "expect", "--broker", self.broker_url, "--task", task,
                "--jobs", str(cfg.jobs), "--events", str(cfg.jobs * cfg.events),
            )  # fmt: skip
            if done.returncode != 0:
                return f"ei-supersink expect failed ({done.returncode}): {_first_line(done.stderr)}"
        return ""

    def _announce_tasks(self, ledger: Path, sink: SinkProcess) -> str:
        """Send every task's expectation; wait until the sink has recorded them all. '' or a failure reason."""
        reason = self._send_expectations()
        if reason:
            return reason
        deadline = time.monotonic() + SINK_READY_TIMEOUT
        while time.monotonic() < deadline:
            if sink.proc.poll() is not None:
                return f"ei-supersink run exited with {sink.proc.returncode}: {sink.stderr_tail(3)}"
            report = self._status(ledger)
            if report is not None and {t["task"] for t in report.get("tasks", [])} >= set(self.task_names):
                return ""
            time.sleep(0.5)
        return f"the supersink did not record the task expectations within {SINK_READY_TIMEOUT:.0f} s"

    def _wait(self, pool: ProducerPool, jobs: list[JobOutcome], sink: SinkProcess, sampler: Sampler) -> tuple[str, str]:
        """Until every loadable task is committed; ('ok'|'failed'|'timeout', reason)."""
        deadline = time.monotonic() + self.cfg.run_timeout
        while True:
            finished = [j for j in jobs if j.returncode is not None]
            failed = [j for j in finished if not j.ok]
            usage = [j for j in failed if j.returncode == 2]
            if usage:
                pool.cancel()
                return "failed", f"ei-producer usage error: {_first_line(usage[0].stderr)}"
            committed = [t for t in self.task_names if self._marker(t).exists()]
            broken = {j.task for j in failed}
            loadable = [t for t in self.task_names if t not in broken]
            self._show(len(finished), len(failed), len(jobs), len(committed), sampler)
            if pool.done and set(loadable) <= set(committed):
                if failed:
                    return "failed", f"{len(failed)} producer(s) failed, e.g. exit {failed[0].returncode}: " + (
                        _first_line(failed[0].stderr)
                    )
                return "ok", ""
            if sink.proc.poll() is not None:
                pool.cancel()
                return "failed", f"ei-supersink run exited with {sink.proc.returncode}: {sink.stderr_tail(3)}"
            if time.monotonic() >= deadline:
                pool.cancel()
                return "timeout", (
                    f"not done after {self.cfg.run_timeout:.0f} s: {len(finished)}/{len(jobs)} jobs finished, "
                    f"{len(committed)}/{len(self.task_names)} tasks committed"
                )
            time.sleep(POLL_SECONDS)

    def _show(self, finished: int, failed: int, jobs: int, committed: int, sampler: Sampler) -> None:
        broker, sink = sampler.get("broker"), sampler.get("supersink")
        parts = [
            f"  {self.name}: jobs {finished}/{jobs}" + (f" ({failed} failed)" if failed else ""),
            f"tasks {committed}/{len(self.task_names)} committed",
        ]
        if broker is not None:
            parts.append(f"broker RSS {broker.last_rss / MIB:,.0f} MiB")
        if sink is not None and sink.cpu_seconds is not None:
            parts.append(f"sink CPU {sink.cpu_seconds:,.1f} s")
        self.progress.live(", ".join(parts))

    # --------------------------------------------------------------- figures

    def _figures(
        self,
        row: dict[str, Any],
        jobs: list[JobOutcome],
        pool: ProducerPool | None,
        sink: SinkProcess | None,
        ledger: Path,
        sampler: Sampler,
        base: dict[str, float | None],
        end_cpu: dict[str, float | None],
    ) -> None:
        ran = [j for j in jobs if j.returncode is not None]
        ok = [j for j in ran if j.ok]
        report = self._status(ledger) or {"tasks": [], "quarantined": None}
        mine = set(self.task_names)
        tasks = {t["task"]: t for t in report.get("tasks", []) if t.get("task") in mine}
        loaded_at = {name: t["loaded_at"] for name, t in tasks.items() if t.get("loaded_at") is not None}
        events_loaded = sum(int(t.get("events_loaded") or 0) for t in tasks.values())
        start = pool.first_start if pool is not None else None
        row["events_loaded"] = events_loaded
        row["tasks_committed"] = len(loaded_at)
        if start is not None and loaded_at and len(loaded_at) == len(self.task_names) and not self.drain:
            row["e2e_seconds"] = round(max(loaded_at.values()) - start, 3)
            row["events_per_second"] = round(events_loaded / row["e2e_seconds"]) if row["e2e_seconds"] > 0 else None
        else:
            row["e2e_seconds"] = row["events_per_second"] = None
        if row["status"] == "ok" and events_loaded != self.cfg.events_per_run:
            row["status"], row["reason"] = (
                "failed",
                f"{events_loaded:,} events loaded, {self.cfg.events_per_run:,} sent",
            )
        # producers
        row["producer_wall_seconds"] = percentiles([j.wall for j in ok])
        row["producer_reported_seconds"] = percentiles(
            [float(j.summary["seconds"]) for j in ok if "seconds" in j.summary]
        )
        row.update(_broker_counts(self.transport, ok))
        row.update(_producer_store_counts(self.transport, ok))
        # the supersink
        counters = sink.counters() if sink is not None else {}
        row["supersink_counters"] = counters
        row["supersink_store_requests"] = counters.get("store_requests")
        row["supersink_store_bytes"] = counters.get("store_bytes")
        if self.drain:  # the sink's own count: CPU from its first message to its last commit
            busy = counters.get("busy_cpu_seconds")
            sink_cpu = float(busy) if busy is not None else None
        else:
            sink_cpu = _delta(base.get("supersink"), end_cpu.get("supersink"))
        row["supersink_cpu_seconds"] = None if sink_cpu is None else round(sink_cpu, 3)
        cpu_total = sink.cpu_total if sink is not None else None
        row["supersink_cpu_seconds_process"] = None if cpu_total is None else round(cpu_total, 2)
        row["supersink_events_per_cpu_second"] = round(events_loaded / sink_cpu) if sink_cpu and events_loaded else None
        row["supersink_steady_events_per_cpu_second"] = steady_rate(counters.get("commits") or [])
        sink_watch = sampler.get("supersink")
        row["supersink_peak_rss_bytes"] = sink_watch.peak_rss if sink_watch else None
        # latency: a job's end -> its task committed (loaded_at, the supersink's clock = this host's)
        # per job: its producer process exited (what the grid job sees);
        # per task: its last job's manifest end time (last_job_end_ms, written before the manifest is announced)
        # (not for a drain run, where the supersink starts only once every job has ended)
        online = loaded_at if not self.drain else {}
        row["latency_seconds"] = percentiles([online[j.task] - j.ended for j in ok if j.task in online])
        row["latency_last_job_seconds"] = percentiles(
            [
                online[name] - tasks[name]["last_job_end_ms"] / 1000
                for name in online
                if tasks[name].get("last_job_end_ms") is not None
            ]
        )
        # servers
        broker_watch, store_watch = sampler.get("broker"), sampler.get("store")
        row["broker_peak_rss_bytes"] = broker_watch.peak_rss if broker_watch else None
        broker_cpu = _delta(base.get("broker"), end_cpu.get("broker"))
        row["broker_cpu_seconds"] = None if broker_cpu is None else round(broker_cpu, 2)
        store_cpu = _delta(base.get("store"), end_cpu.get("store"))
        row["store_server_cpu_seconds"] = None if store_cpu is None else round(store_cpu, 2)
        row["store_server_rss_bytes"] = store_watch.last_rss if store_watch else None
        row.update(_central_cost(row, sink_cpu, broker_cpu, store_cpu))
        row.update(_above_idle(row, self.idle, _delta(base.get("wall"), end_cpu.get("wall"))))
        # errors
        failed = [j for j in ran if not j.ok]
        row["errors"] = {
            "producer_failures": len(failed),
            "producers_not_run": len(jobs) - len(ran),
            "supersink_exit": sink.returncode if sink is not None else None,
            "quarantined": report.get("quarantined"),
            "supersink_quarantined_counter": counters.get("quarantined"),
            "examples": sorted({f"exit {j.returncode}: {_first_line(j.stderr)}" for j in failed})[:5],
        }
        if sink is not None and sink.returncode not in (0, None) and row["status"] == "ok":
            row["status"], row["reason"] = "failed", f"ei-supersink run exited with {sink.returncode}"


def _central_cost(
    row: dict[str, Any], sink_cpu: float | None, broker_cpu: float | None, store_cpu: float | None
) -> dict[str, Any]:
    """What the central services (broker, object-store server, supersink) spent on the run's events.

    The broker's and the store server's CPU are counted from just before the first producer starts to the last
    commit, so they include the producers' sends and PUTs; the supersink's as in ``supersink_cpu_seconds``. The
    broker-only transport does not use the store, but its server runs all the same and is counted (its idle cost).
    A part whose CPU could not be read (servers the harness did not start) leaves the total unknown.
    """
    parts = {"broker": broker_cpu, "store_server": store_cpu, "supersink": sink_cpu}
    events = row.get("events_loaded") or 0
    known = all(v is not None for v in parts.values())
    total = sum(v for v in parts.values() if v is not None) if known else None
    return {
        "central_cpu_seconds_by_service": {k: None if v is None else round(v, 3) for k, v in parts.items()},
        "central_cpu_seconds": None if total is None else round(total, 3),
        "central_cpu_seconds_per_1000_events": round(1000 * total / events, 4) if total and events else None,
        "events_per_central_cpu_second": round(events / total) if total and events else None,
        "central_cpu_note": "" if known else "CPU of a server the harness did not start cannot be read",
    }


def _above_idle(row: dict[str, Any], idle: dict[str, float | None], wall: float | None) -> dict[str, Any]:
    """The central cost without the servers' idle upkeep: each server's idle CPU per second (read before the
    run) times the run's duration, taken from its CPU. What is left is what the events cost them."""
    parts = row.get("central_cpu_seconds_by_service") or {}
    events = row.get("events_loaded") or 0
    upkeep = {
        name: None if rate is None or wall is None else rate * wall
        for name, rate in (("broker", idle.get("broker")), ("store_server", idle.get("store")))
    }
    above: dict[str, float | None] = {}
    for name, spent in upkeep.items():
        used = parts.get(name)
        above[name] = None if spent is None or used is None else max(0.0, used - spent)
    sink = parts.get("supersink")
    known = sink is not None and all(v is not None for v in above.values())
    total = sink + sum(v for v in above.values() if v is not None) if known and sink is not None else None
    return {
        "idle_cpu_per_second": {k: None if v is None else round(v, 4) for k, v in idle.items()},
        "central_idle_cpu_seconds": {k: None if v is None else round(v, 3) for k, v in upkeep.items()},
        "central_cpu_seconds_above_idle": None if total is None else round(total, 3),
        "events_per_central_cpu_second_above_idle": round(events / total) if total and events else None,
    }


def _first_line(text: str, last: bool = True) -> str:
    """One line of a process's message for a run's reason: its last (the final error) or its first, cut at 300."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if last else lines[0])[:300] if lines else "(no message)"


def _delta(first: float | None, last: float | None) -> float | None:
    return None if first is None or last is None else last - first


def _broker_counts(transport: str, ok: list[JobOutcome]) -> dict[str, Any]:
    """Messages and bytes the producers sent to the broker: their own counts, else an estimate."""
    if ok and all("broker_messages" in j.summary and "broker_bytes" in j.summary for j in ok):
        return {
            "broker_messages": sum(int(j.summary["broker_messages"]) for j in ok),
            "broker_bytes": sum(int(j.summary["broker_bytes"]) for j in ok),
            "broker_counts_source": "producer",
        }
    # Fallback: one message per chunk (a pointer, or a batch of events) + one for the manifest.
    messages = sum(int(j.summary.get("chunks", 0)) + 1 for j in ok)
    bytes_ = sum(int(j.summary.get("bytes", 0)) for j in ok) if transport == "mq" else None
    return {
        "broker_messages": messages if ok else None,
        "broker_bytes": bytes_,
        "broker_counts_source": "estimated: the producer reports no broker_messages/broker_bytes; messages = "
        "chunks + 1 per job" + ("; bytes = the event messages' bytes (manifest excluded)" if transport == "mq" else ""),
    }


def _producer_store_counts(transport: str, ok: list[JobOutcome]) -> dict[str, Any]:
    """Object-store PUTs by the producers: every chunk and the manifest (none in the broker-only transport)."""
    if transport == "mq":
        return {"producer_store_requests": 0, "producer_store_bytes": 0}
    if ok and all("store_requests" in j.summary and "store_bytes" in j.summary for j in ok):
        return {
            "producer_store_requests": sum(int(j.summary["store_requests"]) for j in ok),
            "producer_store_bytes": sum(int(j.summary["store_bytes"]) for j in ok),
        }
    return {
        "producer_store_requests": sum(int(j.summary.get("chunks", 0)) + 1 for j in ok),
        "producer_store_bytes": sum(int(j.summary.get("bytes", 0)) for j in ok),
        "producer_store_note": "chunks + manifest PUTs; bytes are the chunks' (the manifests' few kB are not reported)",
    }


# ---------------------------------------------------------------- the comparison


def run_ceiling(cfg: BenchConfig, progress: Progress) -> dict[str, Any]:
    progress.line(f"ceiling: Parquet write of the same {cfg.events_per_run:,} events from memory")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.ceiling", "--tasks", str(cfg.tasks), "--jobs", str(cfg.jobs),
             "--events", str(cfg.events), "--dir", str(cfg.work)],
            capture_output=True, text=True, timeout=CEILING_TIMEOUT, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        progress.line(f"ceiling: FAILED: not done in {CEILING_TIMEOUT:.0f} s")
        return {"error": f"the Parquet write took over {CEILING_TIMEOUT:.0f} s"}
    if done.returncode != 0:
        progress.line(f"ceiling: FAILED: {_first_line(done.stderr)}")
        return {"error": _first_line(done.stderr)}
    result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    progress.line(f"ceiling: {result['events_per_cpu_second']:,} events per CPU-second")
    return result


@contextlib.contextmanager
def _store_running(store: Store, workdir: Path, keep: bool) -> Iterator[Store]:
    """The object store for the whole comparison; a server the harness started is stopped, and its data deleted
    unless `keep`, on the way out (interrupted or not). One that did not start keeps its log for the error."""
    try:
        store.start(workdir)
    except Exception as exc:
        raise BenchError(f"the {store.kind} object store did not start: {_first_line(str(exc), last=False)}") from exc
    try:
        yield store
    finally:
        store.stop()
        if store.managed and not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def compare(cfg: BenchConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Every run of the sweep and the ceiling; returns the results document (see benchmarks.report)."""
    progress = progress or Progress()
    # queue, bucket and task names: unique even for two comparisons started in the same second on shared servers
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    started = time.monotonic()
    cfg.work.mkdir(parents=True, exist_ok=True)
    broker, store = Broker(cfg.broker, cfg.broker_url, cfg.protocol), Store(cfg.store, cfg.store_url)
    broker.check_reachable()
    runs: list[dict[str, Any]] = []
    plan = [(t, n, False) for t in cfg.transports for n in cfg.producers]
    if cfg.drain_producers:
        plan += [(t, cfg.drain_producers, True) for t in cfg.transports]
    scratch = cfg.work / stamp  # this comparison's: servers' data, ledgers, spools, warehouses
    try:
        with _store_running(store, scratch / cfg.store, cfg.keep):
            bucket = f"ei-bench-{stamp}"
            store.create_bucket(bucket)
            env = {**os.environ, **store.env()}
            mq_ok, mq_reason = mq_mode_available(env) if "mq" in cfg.transports else (True, "")
            if not mq_ok:
                progress.line(f"note: {mq_reason}; the mq runs are reported as failed")
            ceiling = run_ceiling(cfg, progress)
            for index, (transport, producers, drain) in enumerate(plan, start=1):
                run = Run(
                    cfg, transport, producers, index, len(plan), stamp, broker, store, bucket, progress, mq_reason,
                    drain,
                )  # fmt: skip
                row = run.execute()
                runs.append(row)
    finally:
        with contextlib.suppress(OSError):
            scratch.rmdir()  # when its runs and the store's data are gone (not with --keep)
    ceiling_rate = ceiling.get("events_per_cpu_second")
    for row in runs:
        rate = row.get("supersink_events_per_cpu_second")
        row["ceiling_ratio"] = round(rate / ceiling_rate, 3) if rate and ceiling_rate else None
        steady = row.get("supersink_steady_events_per_cpu_second")
        row["steady_ceiling_ratio"] = round(steady / ceiling_rate, 3) if steady and ceiling_rate else None
    return {
        "benchmark": "ei-bench compare",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {
            "tasks": cfg.tasks,
            "jobs_per_task": cfg.jobs,
            "events_per_job": cfg.events,
            "events_per_run": cfg.events_per_run,
            "producers": list(cfg.producers),
            "transports": list(cfg.transports),
            "broker": cfg.broker,
            "protocol": broker.protocol,
            "store": cfg.store,
            "broker_url": cfg.broker_url,
            "store_url": cfg.store_url,
            "quick": cfg.quick,
            "run_timeout": cfg.run_timeout,
            "drain_producers": cfg.drain_producers,
            "idle_seconds": cfg.idle_seconds,
            "producer_nice": cfg.producer_nice,
            "input": "synthetic:E:SEED, seed = task_index * J + job_index + 1",
        },
        "mq_mode_available": mq_ok,
        "code": code_version(),
        "machine": machine(),
        "ceiling": ceiling,
        "runs": runs,
        "seconds": round(time.monotonic() - started, 1),
    }


def code_version() -> dict[str, Any]:
    """The commit the benchmarked code comes from, and whether the working tree differed from it."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "modified_files": None if status is None else len(status.splitlines())}
