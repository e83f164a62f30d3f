"""The ceiling: Parquet write of the benchmark's own events from in-memory Arrow tables.

The supersink cannot load faster than it can write Parquet, so its events per CPU-second are
reported as a fraction of this. The events are the same ones the producers index
(``synthetic:E:SEED``, the same seeds, with the task/job/attempt columns the loader adds), in
WAREHOUSE_SCHEMA, written as ``supersink/loader.py`` writes them: zstd, dictionary encoding for
task/job/input_guid, statistics, row groups of 131,072 rows, part files of 8 row groups, one
directory per task. Generating the events is not timed; only the ``write_table``/``close`` calls
are, in CPU seconds of this process (``time.process_time``: all threads) and in wall seconds.

Run in its own process (``python -m benchmarks.ceiling …``) so the harness's own threads do not
count; it prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eventindex.columns import WAREHOUSE_SCHEMA
from producer.inputs.synthetic import SyntheticInput
from supersink.loader import PARQUET_OPTIONS, ROW_GROUP_ROWS, ROWS_PER_FILE


def job_seed(task_index: int, job_index: int, jobs: int) -> int:
    """The synthetic seed of one job: distinct for every job of a benchmark run."""
    return task_index * jobs + job_index + 1


def job_table(task: str, job: str, events: int, seed: int) -> pa.Table:
    """One job's events as the loader holds them: EVENT_SCHEMA + task, job, attempt (1)."""
    table = pa.concat_tables(SyntheticInput(events, seed).batches(max(events, 1)))
    n = table.num_rows
    return (
        table.append_column(WAREHOUSE_SCHEMA.field("task"), pa.repeat(task, n))
        .append_column(WAREHOUSE_SCHEMA.field("job"), pa.repeat(job, n))
        .append_column(WAREHOUSE_SCHEMA.field("attempt"), pa.array(np.ones(n, dtype=np.int32)))
    )


class TimedWriter:
    """Row groups of ROW_GROUP_ROWS into part files of ROWS_PER_FILE; only the Parquet calls are timed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cpu = 0.0
        self.wall = 0.0
        self.files = 0
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0
        self._buffer: list[pa.Table] = []
        self._buffered = 0

    def _timed(self) -> _Timer:
        return _Timer(self)

    def write(self, table: pa.Table) -> None:
        self._buffer.append(table)
        self._buffered += table.num_rows
        while self._buffered >= min(ROW_GROUP_ROWS, ROWS_PER_FILE - self._rows_in_file):
            self._flush(min(ROW_GROUP_ROWS, ROWS_PER_FILE - self._rows_in_file))

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self._buffer)
        head, rest = table.slice(0, rows), table.slice(rows)
        with self._timed():
            if self._writer is None:
                self._writer = pq.ParquetWriter(
                    self.directory / f"part-{self.files:05d}.parquet",
                    WAREHOUSE_SCHEMA,
                    **PARQUET_OPTIONS,
                )
                self.files += 1
            self._writer.write_table(head, row_group_size=ROW_GROUP_ROWS)
        self.rows += rows
        self._rows_in_file += rows
        self._buffer, self._buffered = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
        if self._rows_in_file >= ROWS_PER_FILE:
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is not None:
            with self._timed():
                self._writer.close()
            self._writer = None
            self._rows_in_file = 0

    def close(self) -> None:
        if self._buffered:
            self._flush(self._buffered)
        self._close_file()


class _Timer:
    def __init__(self, owner: TimedWriter) -> None:
        self.owner = owner

    def __enter__(self) -> None:
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.owner.cpu += time.process_time() - self.cpu0
        self.owner.wall += time.perf_counter() - self.wall0


def task_tables(task: str, task_index: int, jobs: int, events: int) -> Iterator[pa.Table]:
    for job_index in range(jobs):
        yield job_table(task, f"job-{job_index:06d}", events, job_seed(task_index, job_index, jobs))


def measure(tasks: int, jobs: int, events: int, directory: Path) -> dict[str, Any]:
    """Write every task's events; return the figures (events/CPU-second is the ceiling)."""
    cpu = wall = 0.0
    rows = files = size = 0
    for task_index in range(tasks):
        task_dir = directory / f"task-{task_index:04d}"
        task_dir.mkdir(parents=True, exist_ok=True)
        writer = TimedWriter(task_dir)
        for table in task_tables(f"bench.ceiling.t{task_index:04d}", task_index, jobs, events):
            writer.write(table)
        writer.close()
        cpu, wall = cpu + writer.cpu, wall + writer.wall
        rows, files = rows + writer.rows, files + writer.files
        size += sum(p.stat().st_size for p in task_dir.glob("part-*.parquet"))
    return {
        "what": "Parquet write of the same events from in-memory Arrow tables (WAREHOUSE_SCHEMA, zstd, "
        f"{ROW_GROUP_ROWS:,}-row groups, {ROWS_PER_FILE:,}-row files), one core",
        "events": rows,
        "files": files,
        "cpu_seconds": round(cpu, 3),
        "wall_seconds": round(wall, 3),
        "events_per_cpu_second": round(rows / cpu) if cpu > 0 else None,
        "events_per_second": round(rows / wall) if wall > 0 else None,
        "parquet_bytes": size,
        "parquet_bytes_per_event": round(size / rows, 1) if rows else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--dir", type=Path, default=None, help="where the Parquet files go (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ei-bench-ceiling-", dir=args.dir) as tmp:
        result = measure(args.tasks, args.jobs, args.events, Path(tmp))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
