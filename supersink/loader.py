"""Bulk load of one complete task: merge the chosen attempts' events into sorted Parquet, then commit.

Memory stays bounded by streaming: chunks are grouped by overlapping (run, event) ranges (the
ranges were recorded when each chunk was verified); each group is decoded, sorted and written
before the next is read. Jobs index disjoint files, so groups are usually single chunks. Equal
(run, event) pairs always fall into one group, where they are detected, loaded once and reported.

Files get deterministic names and the commit marker is written last, write-once: a crash at any
point before it leaves nothing readers see, and a rerun rewrites the same files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eventindex import __version__
from eventindex.columns import WAREHOUSE_SCHEMA, event_keys
from eventindex.errors import AlreadyCommittedError, ConfigError, WarehouseError
from eventindex.store import ObjectStore
from supersink.crashpoints import crashpoint
from supersink.fetch import ChunkCache, load_chunk
from supersink.ledger import ChunkRecord
from supersink.warehouse import PART_TEMPLATE, Warehouse

ROW_GROUP_ROWS = 131_072
ROWS_PER_FILE = 8 * ROW_GROUP_ROWS
ROW_GROUP_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class FileLayout:
    """How a task's events are cut into Parquet files and row groups."""

    row_group_rows: int = ROW_GROUP_ROWS
    rows_per_file: int = ROWS_PER_FILE
    #: A row group is also cut when the decoded rows waiting for it reach this many bytes, which
    #: bounds the supersink's memory whatever the events' width (pyarrow cannot append to an open
    #: row group, so its rows wait in memory).
    row_group_bytes: int = ROW_GROUP_BYTES

    def __post_init__(self) -> None:
        if not 1 <= self.row_group_rows <= self.rows_per_file:
            raise ConfigError("row groups need at least 1 row and at most --rows-per-file rows")
        if self.row_group_bytes < 1:
            raise ConfigError("the row group byte budget must be positive")


DEFAULT_LAYOUT = FileLayout()


MAX_DUPLICATE_EXAMPLES = 10
SORT_KEYS = [("run_number", "ascending"), ("event_number", "ascending")]


def overlap_groups(chunks: list[ChunkRecord]) -> Iterator[list[ChunkRecord]]:
    """Chunks grouped so that groups hold disjoint, increasing (run, event) ranges."""
    if any(c.min_key is None or c.max_key is None for c in chunks):
        non_empty = [c for c in chunks if c.events]
        if non_empty:
            yield non_empty
        return
    ordered = sorted(chunks, key=lambda c: (c.min_key or b"", c.job, c.attempt, c.seq))
    group: list[ChunkRecord] = []
    group_max = b""
    for chunk in ordered:
        assert chunk.min_key is not None and chunk.max_key is not None
        if group and chunk.min_key > group_max:
            yield group
            group = []
        group.append(chunk)
        group_max = max(group_max, chunk.max_key) if len(group) > 1 else chunk.max_key
    if group:
        yield group


@dataclass
class Duplicates:
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


class PartWriter:
    """Writes row groups of `layout.row_group_rows` into part files of at most `layout.rows_per_file` rows."""

    def __init__(self, warehouse: Warehouse, dataset: str, task: str, layout: FileLayout) -> None:
        self.warehouse, self.dataset, self.task = warehouse, dataset, task
        self.group_rows, self.file_rows = layout.row_group_rows, layout.rows_per_file
        self.group_bytes = layout.row_group_bytes
        self.files: list[dict[str, Any]] = []
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._buffered_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            path = self.warehouse.part_path(self.dataset, self.task, len(self.files))
            self._writer = pq.ParquetWriter(
                path,
                WAREHOUSE_SCHEMA,
                filesystem=self.warehouse.fs,
                compression="zstd",
                use_dictionary=["task", "job", "input_guid"],
                write_statistics=True,
            )
            self.files.append({"name": PART_TEMPLATE.format(len(self.files)), "rows": 0})
        return self._writer

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self._buffer)
        head, rest = table.slice(0, rows), table.slice(rows)
        self._open().write_table(head, row_group_size=self.group_rows)
        crashpoint("load.row_group")
        self.files[-1]["rows"] += rows
        self._rows_in_file += rows
        self._buffer, self._buffered = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
        self._buffered_bytes = rest.nbytes if rest.num_rows else 0
        if self._rows_in_file >= self.file_rows:
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            crashpoint("load.part_closed")
            self._writer = None
            self._rows_in_file = 0

    def write(self, table: pa.Table) -> None:
        self._buffer.append(table)
        self._buffered += table.num_rows
        self._buffered_bytes += table.nbytes
        while self._buffered >= min(self.group_rows, self.file_rows - self._rows_in_file):
            self._flush(min(self.group_rows, self.file_rows - self._rows_in_file))
        if self._buffered and self._buffered_bytes >= self.group_bytes:
            self._flush(self._buffered)

    def close(self) -> list[dict[str, Any]]:
        if self._buffered:
            self._flush(self._buffered)
        self._close_file()
        return self.files


def _with_identity(table: pa.Table, task: str, chunk: ChunkRecord) -> pa.Table:
    n = table.num_rows
    return (
        table.append_column(WAREHOUSE_SCHEMA.field("task"), pa.repeat(task, n))
        .append_column(WAREHOUSE_SCHEMA.field("job"), pa.repeat(chunk.job, n))
        .append_column(WAREHOUSE_SCHEMA.field("attempt"), pa.array(np.full(n, chunk.attempt, dtype=np.uint32)))
    )


def _drop_duplicates(table: pa.Table, dups: Duplicates) -> pa.Table:
    runs, events = event_keys(table)
    if len(runs) < 2:
        return table
    same = (runs[1:] == runs[:-1]) & (events[1:] == events[:-1])
    if not same.any():
        return table
    where = np.nonzero(same)[0] + 1
    dups.count += len(where)
    jobs = table.column("job")
    for i in where[: MAX_DUPLICATE_EXAMPLES - len(dups.examples)]:
        dups.examples.append(
            {
                "run_number": int(runs[i]),
                "event_number": int(events[i]),
                "jobs": [str(jobs[int(i) - 1]), str(jobs[int(i)])],
            }
        )
    keep = np.ones(len(runs), dtype=bool)
    keep[where] = False
    return table.filter(pa.array(keep))


@dataclass(frozen=True)
class LoadPlan:
    task: str
    dataset: str
    chunks: list[ChunkRecord]
    attempts: dict[str, int]
    superseded: list[dict[str, Any]]
    partial: bool = False
    missing: tuple[str, ...] = ()


def load_task(
    plan: LoadPlan,
    store: ObjectStore,
    spool: ObjectStore,
    warehouse: Warehouse,
    owner: str,
    layout: FileLayout = DEFAULT_LAYOUT,
    on_progress: Callable[[int], None] | None = None,
    cache: ChunkCache | None = None,
) -> dict[str, Any]:
    """Write the task's Parquet files and commit marker; return the marker. Chunks still in `cache`
    (verified at intake) are not fetched again.

    Raises AlreadyCommittedError when a marker exists (this or another supersink committed it),
    ClaimedElsewhereError when another supersink holds the task's load claim.
    """
    try:
        return _load(plan, store, spool, warehouse, owner, layout, on_progress, cache)
    except OSError as exc:  # pyarrow filesystems report I/O failures as OSError
        raise WarehouseError(f"writing task {plan.task} to {warehouse.url} failed: {exc}") from exc


def _load(
    plan: LoadPlan,
    store: ObjectStore,
    spool: ObjectStore,
    warehouse: Warehouse,
    owner: str,
    layout: FileLayout,
    on_progress: Callable[[int], None] | None,
    cache: ChunkCache | None,
) -> dict[str, Any]:
    started = time.monotonic()
    if warehouse.read_marker(plan.dataset, plan.task) is not None:
        raise AlreadyCommittedError(f"{warehouse.location(plan.dataset, plan.task)} was committed already")
    warehouse.prepare(plan.dataset, plan.task)
    warehouse.claim(plan.dataset, plan.task, owner)
    crashpoint("load.claimed")
    writer = PartWriter(warehouse, plan.dataset, plan.task, layout)
    dups = Duplicates()
    rows_in = 0
    for group in overlap_groups(plan.chunks):
        tables = [_with_identity(load_chunk(store, spool, c.key, c.size, c.sha256, cache), plan.task, c) for c in group]
        table = pa.concat_tables(tables)
        rows_in += table.num_rows
        if len(group) > 1:
            table = table.sort_by(SORT_KEYS)
        elif table.num_rows > 1:
            runs, events = event_keys(table)
            if not _is_sorted(runs, events):
                table = table.sort_by(SORT_KEYS)
        writer.write(_drop_duplicates(table, dups))
        if on_progress:
            on_progress(rows_in)
    files = writer.close()
    warehouse.remove_strays(plan.dataset, plan.task, {f["name"] for f in files})
    rows = sum(f["rows"] for f in files)
    crashpoint("load.parts_done")
    marker: dict[str, Any] = {
        "task": plan.task,
        "dataset": plan.dataset,
        "files": files,
        "rows": rows,
        "events_in_chunks": rows_in,
        "duplicates": {"count": dups.count, "examples": dups.examples},
        "attempts": plan.attempts,
        "superseded": plan.superseded,
        "partial": plan.partial,
        "missing": list(plan.missing),
        "sorted_by": [k for k, _ in SORT_KEYS],
        "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_seconds": round(time.monotonic() - started, 3),
        "supersink_version": __version__,
        "loaded_by": owner,
        "format": "eventindex.v1",
    }
    warehouse.write_marker_once(plan.dataset, plan.task, marker)
    crashpoint("load.committed")
    return marker


def _is_sorted(runs: np.ndarray, events: np.ndarray) -> bool:
    later_run = runs[1:] > runs[:-1]
    same_run = runs[1:] == runs[:-1]
    return bool(np.all(later_run | (same_run & (events[1:] >= events[:-1]))))
