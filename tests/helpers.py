"""Helpers shared by the tests: run producers and supersinks in process, compare events."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import zstandard

from eventindex import codec
from eventindex.columns import EVENT_SCHEMA
from eventindex.pointers import expectation_pointer, headers_for
from eventindex.store import ObjectStore, open_store
from eventindex.transport import Publisher, open_consumer, open_publisher
from producer.inputs.base import InputSource
from producer.inputs.synthetic import SyntheticInput
from producer.job import JobRunner, JobSpec, Progress
from supersink.ledger import Ledger
from supersink.service import Supersink
from supersink.status import task_status
from supersink.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`python -m ARGS` (a console script's module, e.g. producer.cli) as a process of this checkout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def store_dir(path: Path) -> str:
    """The `file://` URL of a store directory, made first: a store exists before its first job (the producer
    never creates one: a missing directory may be an unmounted mount point)."""
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def sink_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`ei-supersink ARGS` as a process of this checkout; its output as text."""
    return cli("supersink.cli", *args)


def produce_cli(tmp_path: Path, input_spec: str) -> subprocess.CompletedProcess[str]:
    """`ei-producer` on one input, task T job J attempt 1 of dataset D, into a store and queue under tmp_path."""
    return cli(
        "producer.cli", "--task", "T", "--job", "J", "--attempt", "1", "--dataset", "D", "--input", input_spec,
        "--store", store_dir(tmp_path / "s"), "--broker", f"sqlite://{tmp_path / 'q.db'}",
    )  # fmt: skip


def index_into_warehouse(tmp_path: Path, input_spec: str, events: int) -> pa.Table:
    """producer CLI -> supersink expect + run -> the committed warehouse rows of the task."""
    store, queue, warehouse = store_dir(tmp_path / "store"), f"sqlite://{tmp_path / 'q.db'}", tmp_path / "wh"
    produced = cli(
        "producer.cli", "--task", "T", "--job", "J", "--attempt", "1", "--dataset", "D",
        "--input", input_spec, "--store", store, "--broker", queue, "--chunk-events", "700",
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    assert json.loads(produced.stdout)["events"] == events
    expect = cli("supersink.cli", "expect", "--broker", queue, "--task", "T", "--jobs", "1", "--events", str(events))
    assert expect.returncode == 0, expect.stderr
    ran = cli(
        "supersink.cli", "run", "--broker", queue, "--store", store, "--warehouse", warehouse.as_uri(),
        "--state", str(tmp_path / "state.db"), "--until-idle", "1",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    task_dir = warehouse / "dataset=D" / "task=T"
    assert (task_dir / "_SUCCESS.json").exists()
    parts = sorted(task_dir.glob("part-*.parquet"))
    table = pa.concat_tables(pq.read_table(part) for part in parts)
    return table.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA).combine_chunks()


SORT = [("run_number", "ascending"), ("event_number", "ascending")]


def read_all(source: InputSource, max_rows: int = 10_000) -> pa.Table:
    """Every event of an input, read in batches of `max_rows`, as one table."""
    return pa.concat_tables(source.batches(max_rows)).combine_chunks()


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    """The text of a raised error, which must be one line."""
    text = str(exc.value)
    assert "\n" not in text
    return text


class Recorder(Publisher):
    """Keeps what a producer sends, to replay it in another order or twice."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, dict[str, str], str | None]] = []

    def send(self, body: bytes, headers: Mapping[str, str] | None = None, group: str | None = None) -> None:
        self.sent.append((body, dict(headers or {}), group))

    def close(self) -> None:
        pass


class Died(Exception):
    pass


@dataclass
class Pipeline:
    root: Path

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)  # the queue, store and ledger refuse a missing directory
        (self.root / "store").mkdir(exist_ok=True)  # as an installation's store exists before its supersink starts

    @property
    def broker(self) -> str:
        return f"sqlite://{self.root / 'queue.db'}"

    @property
    def store(self) -> ObjectStore:
        return open_store((self.root / "store").as_uri())

    def produce(
        self,
        job: str,
        seed: int,
        events: int = 3_000,
        attempt: int = 1,
        task: str = "task1",
        die_after: int | None = None,
        publisher: Publisher | None = None,
        dataset: str = "ds",
    ) -> None:
        spec = JobSpec(task=task, job=job, attempt=attempt, dataset=dataset, chunk_events=1_000)

        def maybe_die(progress: Progress) -> None:
            if die_after is not None and progress.chunks >= die_after:
                raise Died

        pub = publisher or open_publisher(self.broker)
        try:
            JobRunner(spec, self.store, pub, on_progress=maybe_die).run([SyntheticInput(events, seed)])
        except Died:
            pass
        finally:
            if publisher is None:
                pub.close()

    def expect(self, jobs: int, events: int | None = None, task: str = "task1") -> None:
        pointer = expectation_pointer(task, jobs, events)
        with open_publisher(self.broker) as pub:
            pub.send(pointer.SerializeToString(), headers_for(pointer), group=task)

    def send_raw(self, body: bytes) -> None:
        with open_publisher(self.broker) as pub:
            pub.send(body)

    def run_supersink(self) -> Supersink:
        ledger = Ledger(self.root / "ledger.db")
        sink = Supersink(ledger, self.store, Warehouse.from_url((self.root / "wh").as_uri()))
        with open_consumer(self.broker) as consumer:
            sink.run(consumer, threading.Event(), until_idle=0.3)
        return sink

    def status(self, task: str = "task1") -> dict[str, Any]:
        ledger = Ledger(self.root / "ledger.db")
        try:
            return task_status(ledger, task)
        finally:
            ledger.close()

    def loaded(self, task: str = "task1") -> pa.Table:
        task_dir = self.task_dir(task)
        marker = json.loads((task_dir / "_SUCCESS.json").read_text())
        files = [str(task_dir / f["name"]) for f in marker["files"]]
        return pads.dataset(files, format="parquet").to_table()

    def task_dir(self, task: str = "task1", dataset: str = "ds") -> Path:
        """A task's partition directory in the test warehouse."""
        return self.root / "wh" / f"dataset={dataset}" / f"task={task}"


def synthetic(*seeds: int, events: int = 3_000) -> pa.Table:
    tables = [t for s in seeds for t in SyntheticInput(events, s).batches(events)]
    return pa.concat_tables(tables).sort_by(SORT)


def assert_same_events(loaded: pa.Table, expected: pa.Table) -> None:
    assert loaded.num_rows == expected.num_rows
    assert loaded.select(EVENT_SCHEMA.names).equals(expected), "loaded events differ from the produced ones"


def forge_chunk(body: bytes, usize: int, count: int = 0, frame_size: bool = True) -> bytes:
    """A chunk object with a header of our choosing over a zstd body: for bombs and lies."""
    compressed = zstandard.ZstdCompressor(write_content_size=frame_size).compress(body)
    header = struct.pack(
        "<4sHBBHHQQQ32s",
        codec.CHUNK_MAGIC,
        1,
        1,
        0,
        codec.HEADER_SIZE,
        0,
        usize,
        count,
        len(compressed),
        hashlib.sha256(compressed).digest(),
    )
    return header + compressed
