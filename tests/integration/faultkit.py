"""The fault-injection harness: a task produced on a backend, supersinks run as real processes
(killed, restarted, raced), and the warehouse checked event by event.

A backend is either the embedded default (file store, sqlite queue, file warehouse) or the real
servers (SeaweedFS S3 for the store and the warehouse, ActiveMQ STOMP for the queue).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pyarrow as pa
import pyarrow.dataset as pads

from eventindex.columns import EVENT_SCHEMA
from eventindex.pointers import expectation_pointer, headers_for
from eventindex.store import open_store
from eventindex.store.s3 import S3Location
from eventindex.transport import Publisher, open_publisher
from producer.inputs.synthetic import SyntheticInput
from producer.job import JobRunner, JobSpec, Progress
from supersink.warehouse import Warehouse
from tests.faultstore import Fault, FaultyPublisher
from tests.helpers import Recorder

ROOT = Path(__file__).resolve().parents[2]
SORT = [("run_number", "ascending"), ("event_number", "ascending")]
DATASET = "data24.faults"
#: Small files and row groups, so that a load passes many crash points.
LAYOUT_ARGS = ("--row-group-rows", "2000", "--rows-per-file", "6000")


@dataclass(frozen=True)
class Backend:
    name: str
    store: str
    broker: str
    warehouse: str
    env: Mapping[str, str] = field(default_factory=dict)


class _Died(Exception):
    pass


@dataclass(frozen=True)
class ProducedTask:
    task: str
    expected: pa.Table  # the chosen attempts' events, sorted


def produce_task(
    backend: Backend,
    task: str | None = None,
    jobs: int = 4,
    events: int = 6_000,
    chunk_events: int = 1_000,
    twice: bool = False,
    reverse: bool = False,
    seed_base: int = 0,
    expectation_last: bool = False,
) -> ProducedTask:
    """A task of `jobs` jobs; job 2's attempt 1 dies half-way and attempt 2 completes.

    twice: every message is delivered twice. reverse: every message is held back until all jobs
    ended, then delivered in reverse order (manifests before their chunks, the expectation last).
    """
    task = task or f"task.{uuid.uuid4().hex[:10]}"
    with backend_env(backend):
        _produce(backend, task, jobs, events, chunk_events, twice, reverse, seed_base, expectation_last)
    expected = pa.concat_tables(
        [b for job in range(1, jobs + 1) for b in SyntheticInput(events, seed_base + job).batches(events)]
    ).sort_by(SORT)
    return ProducedTask(task, expected)


def _produce(
    backend: Backend, task: str, jobs: int, events: int, chunk_events: int, twice: bool, reverse: bool,
    seed_base: int, expectation_last: bool,
) -> None:  # fmt: skip
    store = open_store(backend.store)
    try:
        broker: Publisher = open_publisher(backend.broker)
        if twice:
            broker = FaultyPublisher(broker, Fault("send", "duplicate"))  # as a broker redelivering everything
        recorder = Recorder()
        publisher: Publisher = recorder if reverse else broker
        with broker:
            if not expectation_last:
                send_expectation(publisher, task, jobs, jobs * events)
            for job in range(1, jobs + 1):
                attempts = [1, 2] if job == 2 else [1]
                for attempt in attempts:
                    dies = job == 2 and attempt == 1
                    spec = JobSpec(
                        task=task, job=f"job{job}", attempt=attempt, dataset=DATASET, chunk_events=chunk_events
                    )

                    def stop_half_way(progress: Progress, dies: bool = dies) -> None:
                        if dies and progress.events >= events // 2:
                            raise _Died

                    with contextlib.suppress(_Died):
                        JobRunner(spec, store, publisher, on_progress=stop_half_way).run(
                            [SyntheticInput(events, seed_base + job)]
                        )
            if expectation_last:
                send_expectation(publisher, task, jobs, jobs * events)
            for body, headers, group in reversed(recorder.sent):
                broker.send(body, headers, group)
    finally:
        store.close()


def send_expectation(publisher: Publisher, task: str, jobs: int, events: int) -> None:
    pointer = expectation_pointer(task, jobs, events)
    publisher.send(pointer.SerializeToString(), headers_for(pointer), group=task)


def sink_command(backend: Backend, state: Path, until_idle: float, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "supersink.cli", "run", "--broker", backend.broker, "--store", backend.store,
        "--warehouse", backend.warehouse, "--state", str(state), "--until-idle", str(until_idle), *LAYOUT_ARGS, *extra,
    ]  # fmt: skip


def sink_env(backend: Backend, crash_at: str | None = None) -> dict[str, str]:
    env = {**os.environ, **backend.env, "PYTHONPATH": str(ROOT)}
    env.pop("EI_SUPERSINK_CRASH_AT", None)
    if crash_at:
        env["EI_SUPERSINK_CRASH_AT"] = crash_at
    return env


def run_sink(
    backend: Backend, state: Path, until_idle: float = 2.0, crash_at: str | None = None, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sink_command(backend, state, until_idle, *extra), capture_output=True, text=True,
        env=sink_env(backend, crash_at), timeout=600, cwd=ROOT,
    )  # fmt: skip


def start_sink(backend: Backend, state: Path, until_idle: float = 2.0, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        sink_command(backend, state, until_idle, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=sink_env(backend), cwd=ROOT,
    )  # fmt: skip


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)


@dataclass(frozen=True)
class Outcome:
    expected: int
    loaded: int
    duplicated: int
    lost: int
    extra: int
    identical: bool

    def line(self, scenario: str) -> str:
        return (
            f"{scenario}: expected {self.expected} loaded {self.loaded} duplicated {self.duplicated} "
            f"lost {self.lost} extra {self.extra} columns-identical {self.identical}"
        )


def check_warehouse(backend: Backend, produced: ProducedTask) -> Outcome:
    """Compare the committed task with the produced events: sets of (run, event), then every column."""
    with backend_env(backend):
        warehouse = Warehouse.from_url(backend.warehouse)
        marker = warehouse.read_marker(DATASET, produced.task)
        expected_keys = _keys(produced.expected)
        if marker is None:
            return Outcome(len(expected_keys), 0, 0, len(expected_keys), 0, False)
        task_dir = warehouse.task_dir(DATASET, produced.task)
        files = [f"{task_dir}/{f['name']}" for f in marker["files"]]
        loaded = pads.dataset(files, format="parquet", filesystem=warehouse.fs).to_table()
        listed_parts = sorted(warehouse.parts(DATASET, produced.task))
        warehouse.close()
    assert listed_parts == sorted(f["name"] for f in marker["files"]), "stray part files next to the commit"
    assert marker["rows"] == loaded.num_rows
    keys = list(zip(loaded["run_number"].to_pylist(), loaded["event_number"].to_pylist(), strict=True))
    unique = set(keys)
    identical = loaded.select(EVENT_SCHEMA.names).equals(produced.expected)
    return Outcome(
        expected=len(expected_keys), loaded=loaded.num_rows, duplicated=len(keys) - len(unique),
        lost=len(expected_keys - unique), extra=len(unique - expected_keys), identical=identical,
    )  # fmt: skip


def _keys(table: pa.Table) -> set[tuple[int, int]]:
    return set(zip(table["run_number"].to_pylist(), table["event_number"].to_pylist(), strict=True))


def task_state(state: Path, task: str, env: Mapping[str, str]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "supersink.cli", "status", "--state", str(state), "--json"],
        capture_output=True, text=True, env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for t in json.loads(proc.stdout)["tasks"]:
        if t["task"] == task:
            return dict(t)
    raise AssertionError(f"task {task} not in the ledger")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def assert_exactly_once(outcome: Outcome) -> None:
    assert outcome.lost == 0, outcome
    assert outcome.duplicated == 0, outcome
    assert outcome.extra == 0, outcome
    assert outcome.loaded == outcome.expected, outcome
    assert outcome.identical, outcome


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def backend_env(backend: Backend) -> Iterator[None]:
    """The backend's credentials in this process's environment, for in-process clients."""
    old = {k: os.environ.get(k) for k in backend.env}
    os.environ.update(backend.env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def produce_job(
    backend: Backend,
    task: str,
    job: str,
    attempt: int,
    seed: int,
    events: int = 3_000,
    publisher: Publisher | None = None,
) -> None:
    """One complete job attempt, through the real producer code."""
    with backend_env(backend):
        store = open_store(backend.store)
        pub = publisher or open_publisher(backend.broker)
        try:
            spec = JobSpec(task=task, job=job, attempt=attempt, dataset=DATASET, chunk_events=1_000)
            JobRunner(spec, store, pub).run([SyntheticInput(events, seed)])
        finally:
            if publisher is None:
                pub.close()
            store.close()


def send_raw(backend: Backend, *bodies: bytes) -> None:
    with backend_env(backend), open_publisher(backend.broker) as pub:
        for body in bodies:
            pub.send(body)


def expect(backend: Backend, task: str, jobs: int, events: int | None = None) -> None:
    with backend_env(backend), open_publisher(backend.broker) as pub:
        pointer = expectation_pointer(task, jobs, events)
        pub.send(pointer.SerializeToString(), headers_for(pointer), group=task)


def delete_object(backend: Backend, key: str) -> None:
    """Remove an object behind the system's back (the stores themselves never delete)."""
    parts = urlsplit(backend.store)
    if parts.scheme == "file":
        Path(parts.path, key).unlink()
        return
    location = S3Location.from_url(backend.store)
    with backend_env(backend):
        client = boto3.client("s3", endpoint_url=location.endpoint)
        client.delete_object(Bucket=location.bucket, Key=f"{location.prefix}/{key}")


def synthetic(*seeds: int, events: int = 3_000) -> pa.Table:
    return pa.concat_tables([b for s in seeds for b in SyntheticInput(events, s).batches(events)]).sort_by(SORT)


def cli(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supersink.cli", *args], capture_output=True, text=True,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, timeout=300, cwd=ROOT,
    )  # fmt: skip
