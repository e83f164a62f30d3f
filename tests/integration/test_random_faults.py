"""Randomised faults over many tasks on the embedded default, against one long-running supersink.

Each round produces a few tasks and, at random moments, corrupts, truncates, deletes or replaces
their objects, blocks the warehouse under a task, injects malformed messages of random shapes into
the queue, and SIGKILLs the supersink (restarted at once). Some damaged tasks are healed the
way production heals them (a new attempt of the job; the warehouse unblocked). At the end:

- every healthy or healed task is loaded exactly once: its events compared column by column;
- every task left damaged or blocked is named in `status` with its reason and the object or path;
- every injected message is in the quarantine with its raw bytes;
- the supersink never died on its own (every exit was our SIGKILL or our SIGTERM), no traceback.

CI runs EI_FAULT_ROUNDS rounds (default 3, about a minute); a longer run, reproducible by its seed:

    EI_FAULT_ROUNDS=40 EI_FAULT_SEED=12345 .venv/bin/python -m pytest tests/integration/test_random_faults.py
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pytest

from eventindex.names import chunk_key, manifest_key
from eventindex.pointers import object_pointer
from eventindex.schema import eventindex_pb2 as pb
from eventindex.store import open_store
from eventindex.transport import open_publisher
from producer.inputs.synthetic import SyntheticInput
from producer.job import JobRunner, JobSpec
from supersink.warehouse import Warehouse
from tests.helpers import Recorder
from tests.integration.faultkit import (
    DATASET,
    SORT,
    Backend,
    ProducedTask,
    assert_exactly_once,
    check_warehouse,
    send_expectation,
    sink_command,
    sink_env,
    tail,
)

pytestmark = [pytest.mark.timeout(1800)]

ROUNDS = int(os.environ.get("EI_FAULT_ROUNDS", "3"))
TASKS_PER_ROUND = 6
EVENTS = 600
CHUNK_EVENTS = 200
CHUNKS = EVENTS // CHUNK_EVENTS
OBJECT_FAULTS = ("corrupt", "truncate", "delete", "replace")


@dataclass
class Task:
    name: str
    jobs: int
    seed_base: int
    fault: str | None = None  # e.g. "chunk:corrupt", "manifest:delete", "warehouse"
    key: str = ""  # the object (or warehouse path) the fault hit
    #: damaged after its pointers were sent: the supersink may have verified (and cached) the object
    #: first, and then loads the verified bytes; otherwise the damage is found at intake or load
    after_intake: bool = False
    #: a manifest pointer carries the manifest's bytes (checked against its sha256), so damage to the stored
    #: copy only matters for pointers that do not, as an older producer's do not
    carried: bool = False
    healed: bool = False

    def expected(self) -> pa.Table:
        batches = [
            b for job in range(1, self.jobs + 1) for b in SyntheticInput(EVENTS, self.seed_base + job).batches(EVENTS)
        ]
        return pa.concat_tables(batches).sort_by(SORT)


@dataclass
class Sink:
    """The supersink under test: one process at a time, stderr kept in a file."""

    backend: Backend
    state: Path
    logs: Path
    proc: subprocess.Popen[str] | None = None
    runs: list[tuple[str, int]] = field(default_factory=list)  # (how it ended, return code)

    def start(self) -> None:
        log = (self.logs / f"sink-{len(self.runs)}.log").open("w")
        command = sink_command(self.backend, self.state, 3600.0, "--rescan-seconds", "2")
        self.proc = subprocess.Popen(command, stdout=log, stderr=log, text=True, env=sink_env(self.backend))
        log.close()

    def _end(self, how: str, sig: signal.Signals) -> None:
        assert self.proc is not None
        alive = self.proc.poll() is None
        if alive:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=120)
        self.runs.append((how if alive else "died on its own", code))
        assert alive, f"the supersink died on its own (exit {code}):\n{tail(self.stderr(), 30)}"

    def kill(self) -> None:
        self._end("SIGKILL", signal.SIGKILL)
        self.start()

    def stop(self) -> None:
        self._end("SIGTERM", signal.SIGTERM)

    def stderr(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.logs.glob("sink-*.log")))


class Faults:
    def __init__(self, backend: Backend, root: Path, rng: random.Random, sink: Sink) -> None:
        self.backend = backend
        self.store_dir = root / "store"
        self.rng = rng
        self.sink = sink
        self.injected: list[bytes] = []
        self.kills = 0

    def maybe_kill(self, probability: float = 0.35) -> None:
        if self.rng.random() < probability:
            time.sleep(self.rng.uniform(0.0, 1.5))
            self.sink.kill()
            self.kills += 1

    # ---------------------------------------------------------------- objects

    def damage(self, key: str, how: str, other: bytes) -> None:
        path = self.store_dir / key
        data = path.read_bytes()
        path.unlink()  # the store's objects are hard links: never write through one
        if how == "corrupt":
            middle = len(data) // 2
            path.write_bytes(data[:middle] + bytes([data[middle] ^ 0x5A]) + data[middle + 1 :])
        elif how == "truncate":
            path.write_bytes(data[: len(data) // 2])
        elif how == "replace":
            path.write_bytes(other)
        # "delete": gone

    # ---------------------------------------------------------------- messages

    def inject(self, pointer_body: bytes, task: str) -> None:
        """One malformed message of a random shape, straight into the sqlite queue."""
        shape = self.rng.choice(("bytes", "headers-json", "headers-encoding", "headers-lie", "outside", "name", "big"))
        headers: str | bytes = "{}"
        if shape == "bytes":
            body = b"\x00" + self.rng.randbytes(self.rng.randrange(0, 2000))
        elif shape == "headers-json":
            body, headers = pointer_body, "{" + self.rng.choice(("", "'a': 1", "oops", '"k": [1]'))
        elif shape == "headers-encoding":
            body, headers = pointer_body, b"\xff\xfe" + self.rng.randbytes(8)
        elif shape == "headers-lie":
            body, headers = pointer_body, json.dumps({"ei-task": f"{task}-not"})
        elif shape == "outside":
            body = object_pointer(
                pb.POINTER_KIND_CHUNK, "file:///etc/passwd", 1, b"\1" * 32, 1, task, "j1", 1, DATASET
            ).SerializeToString()
        elif shape == "name":
            body = pb.Pointer(schema_version=1, kind=pb.POINTER_KIND_TASK_EXPECTATION, task="../" + task,
                              expected_jobs=1).SerializeToString()  # fmt: skip
        else:
            body = b"\x00" + b"x" * (4 * 1024 * 1024 + self.rng.randrange(1, 1000))
        self.injected.append(body)
        db = sqlite3.connect(self.backend.broker.removeprefix("sqlite://"), timeout=60)
        with contextlib.closing(db), db:
            db.execute(
                "INSERT INTO messages (queue, body, headers, enqueued) VALUES ('eventindex', ?, ?, ?)",
                (body, headers, time.time()),
            )


def produce(backend: Backend, task: str, job: int, attempt: int, seed: int, publisher: Recorder | None = None) -> None:
    store = open_store(backend.store)
    pub = publisher or open_publisher(backend.broker)
    try:
        spec = JobSpec(task=task, job=f"j{job}", attempt=attempt, dataset=DATASET, chunk_events=CHUNK_EVENTS)
        JobRunner(spec, store, pub).run([SyntheticInput(EVENTS, seed)])
    finally:
        store.close()
        if publisher is None:
            pub.close()


def send(backend: Backend, recorded: Recorder) -> None:
    with open_publisher(backend.broker) as pub:
        for body, headers, group in recorded.sent:
            pub.send(body, headers, group)


def strip_payload(body: bytes, headers: dict[str, str], group: str | None) -> tuple[bytes, dict[str, str], str | None]:
    """The message as a producer from before inline manifests sent it: a manifest pointer without its bytes."""
    pointer = pb.Pointer.FromString(body)
    pointer.ClearField("payload")
    return pointer.SerializeToString(), headers, group


def play_round(number: int, backend: Backend, root: Path, rng: random.Random, faults: Faults) -> list[Task]:
    """One round: produce its tasks with their faults, heal some, kill the supersink now and then."""
    tasks = [Task(f"r{number:03d}.t{i}", rng.randint(1, 3), 1000 * number + 10 * i) for i in range(TASKS_PER_ROUND)]
    for task in tasks:
        task.fault = rng.choice((None, None, "chunk", "manifest", "warehouse"))
        if task.fault in ("chunk", "manifest"):
            task.fault += ":" + rng.choice(OBJECT_FAULTS)
    other = (root / "store").rglob("chunk-*.eic")
    decoy = next(other, None)
    replacement = decoy.read_bytes() if decoy is not None else b"EIC1 not a chunk"
    for task in tasks:
        held = Recorder()  # the pointers, sent before or after the damage (intake- or load-time failure)
        for job in range(1, task.jobs + 1):
            produce(backend, task.name, job, 1, task.seed_base + job, held)
        damaged_job = rng.randint(1, task.jobs)
        if task.fault and task.fault.startswith(("chunk", "manifest")):
            what, how = task.fault.split(":")
            seq = rng.randrange(CHUNKS)
            key = chunk_key(task.name, f"j{damaged_job}", 1, seq) if what == "chunk" else ""
            task.key = key or manifest_key(task.name, f"j{damaged_job}", 1)
            task.after_intake = rng.random() < 0.5
            if what == "manifest":
                task.carried = rng.random() < 0.5
                if not task.carried:
                    held.sent = [strip_payload(body, headers, group) for body, headers, group in held.sent]
            if task.after_intake:
                send(backend, held)
                time.sleep(rng.uniform(0.0, 1.0))
            faults.damage(task.key, how, replacement)
            if not task.after_intake:
                send(backend, held)
        else:
            send(backend, held)
        if task.fault == "warehouse":
            blocker = Path(Warehouse.from_url(backend.warehouse).staging_dir(DATASET, task.name))
            blocker.parent.mkdir(parents=True, exist_ok=True)
            blocker.write_text("a file where the load needs a directory")
            task.key = f"task={task.name}"
        if rng.random() < 0.5:
            faults.inject(held.sent[0][0], task.name)
        faults.maybe_kill()
        with open_publisher(backend.broker) as pub:
            send_expectation(pub, task.name, task.jobs, task.jobs * EVENTS)
        if task.fault and rng.random() < 0.5:  # heal it as production would
            time.sleep(rng.uniform(0.0, 1.0))
            if task.fault == "warehouse":
                Path(Warehouse.from_url(backend.warehouse).staging_dir(DATASET, task.name)).unlink()
            else:
                produce(backend, task.name, damaged_job, 2, task.seed_base + damaged_job)
            task.healed = True
        faults.maybe_kill(0.2)
    return tasks


def status_of(backend: Backend, state: Path) -> dict[str, dict[str, object]]:
    proc = subprocess.run(
        [*sink_command(backend, state, 0)[:3], "status", "--state", str(state), "--json"],
        capture_output=True, text=True, env=sink_env(backend), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return {t["task"]: t for t in json.loads(proc.stdout)["tasks"]}


@contextlib.contextmanager
def seed_on_failure(seed: int) -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        raise AssertionError(f"random fault test failed with EI_FAULT_SEED={seed} ROUNDS={ROUNDS}: {exc}") from exc


def test_random_faults_over_many_tasks(tmp_path: Path, fault_report: Callable[[str], None]) -> None:
    seed = int(os.environ.get("EI_FAULT_SEED", str(random.randrange(1 << 31))))
    print(f"EI_FAULT_SEED={seed} EI_FAULT_ROUNDS={ROUNDS}")
    rng = random.Random(seed)
    backend = Backend(
        "embedded", (tmp_path / "store").as_uri(), f"sqlite://{tmp_path / 'queue.db'}", (tmp_path / "wh").as_uri()
    )
    state = tmp_path / "ledger.db"
    logs = tmp_path / "logs"
    logs.mkdir()
    sink = Sink(backend, state, logs)
    with seed_on_failure(seed):
        open_publisher(backend.broker).close()  # the queue exists before anything is injected into it
        sink.start()
        faults = Faults(backend, tmp_path, rng, sink)
        tasks = [t for number in range(ROUNDS) for t in play_round(number, backend, tmp_path, rng, faults)]
        time.sleep(2.0)
        sink.stop()
        final = subprocess.run(
            sink_command(backend, state, 3.0), capture_output=True, text=True, env=sink_env(backend), timeout=600
        )
        every_stderr = sink.stderr() + final.stderr
        assert "Traceback" not in every_stderr
        assert all(how in ("SIGKILL", "SIGTERM") for how, _ in sink.runs), sink.runs
        assert all(code == (-9 if how == "SIGKILL" else 0) for how, code in sink.runs), sink.runs

        report = status_of(backend, state)
        loaded, stuck = 0, []
        for task in tasks:
            st = report[task.name]
            may_load = task.fault is None or task.healed or task.after_intake or task.carried
            if task.carried:
                assert st["state"] == "loaded", ("the pointer carried its manifest", task, st["state"], st["detail"])
            if st["state"] == "loaded" and may_load:
                assert_exactly_once(check_warehouse(backend, ProducedTask(task.name, task.expected())))
                loaded += 1
                continue
            assert task.fault is not None and not task.healed, (task, st["state"], st["detail"])
            expected_state = "load-failed" if task.fault == "warehouse" else "damaged"
            assert st["state"] == expected_state, (task, st["state"], st["detail"])
            problems = st["problems"]
            assert isinstance(problems, list)
            named = " ".join([str(st["detail"]), *(str(p) for p in problems)])
            assert task.key in named, (task, named)
            assert f"task {task.name} {expected_state}: " in final.stderr, "one line per stuck task"
            stuck.append(task)
        assert final.returncode == (3 if stuck else 0), tail(final.stderr, 30)

        db = sqlite3.connect(state)
        with contextlib.closing(db):
            quarantined = {bytes(row[0]) for row in db.execute("SELECT body FROM quarantine")}
        for body in faults.injected:
            assert body[: 4 * 1024 * 1024] in quarantined, "every injected message is quarantined, raw"

    counts = {
        f: sum(1 for t in tasks if (t.fault or "none").startswith(f))
        for f in ("none", "chunk", "manifest", "warehouse")
    }
    fault_report(
        f"seed {seed}, {ROUNDS} rounds, {len(tasks)} tasks ({counts}), {sum(t.healed for t in tasks)} healed, "
        f"{sum(t.carried for t in tasks)} stored manifests damaged under pointers that carried them, "
        f"{len(stuck)} left damaged and named, {loaded} loaded exactly once, {faults.kills} SIGKILLs, "
        f"{len(faults.injected)} malformed messages quarantined, the supersink never died on its own"
    )
