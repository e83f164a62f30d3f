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
from eventindex.columns import MASK_COLUMNS, PROVENANCE_STRINGS, WAREHOUSE_SCHEMA, event_keys
from eventindex.errors import AlreadyCommittedError, ConfigError, WarehouseError
from eventindex.store import ObjectStore
from eventindex.warehouse import DUPLICATES, part_name
from supersink.crashpoints import crashpoint
from supersink.fetch import ChunkCache, load_chunk
from supersink.ledger import ChunkRecord
from supersink.warehouse import Warehouse

ROW_GROUP_ROWS = 131_072
ROWS_PER_FILE = 8 * ROW_GROUP_ROWS
#: Columns written as dictionaries. Provenance strings repeat (a few parent files per task): as dictionaries,
#: a reader skips the rows before a wanted one in half the time (docs/catalog.md).
DICTIONARY_COLUMNS = ["task", "job", "input_guid"] + [
    f"provenance.list.element.{name}" for name, _ in PROVENANCE_STRINGS
]


def _leaf_paths(field: pa.Field, prefix: str = "") -> list[str]:
    """The Parquet column paths of a field (a list's items are named `element`, as pyarrow writes them)."""
    path = prefix + field.name
    if pa.types.is_list(field.type):
        return _leaf_paths(field.type.value_field.with_name("element"), path + ".list.")
    if pa.types.is_struct(field.type):
        return [leaf for child in field.type for leaf in _leaf_paths(child, path + ".")]
    return [path]


#: Columns with min/max statistics: every column but the trigger masks. A mask's minimum and maximum
#: (bitmaps up to 1 KiB, compared as bytes) prune nothing, and writing them cost a fifth of the write.
STATISTICS_COLUMNS = [
    leaf for field in WAREHOUSE_SCHEMA if field.name not in dict(MASK_COLUMNS) for leaf in _leaf_paths(field)
]
#: How every part file is written; the ceiling benchmark and the catalogue generator write the same way.
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": DICTIONARY_COLUMNS,
    "write_statistics": STATISTICS_COLUMNS,
}
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
    """(run, event) pairs met more than once: the first copy is loaded, the others counted and listed
    with every copy (job, attempt, input file GUID; `loaded` marks the one kept)."""

    count: int = 0
    entries: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        examples = self.entries[:MAX_DUPLICATE_EXAMPLES]
        return {"count": self.count, "events": len(self.entries), "examples": examples, "listed_in": DUPLICATES}


class PartWriter:
    """Writes row groups of `layout.row_group_rows` into part files of at most `layout.rows_per_file` rows."""

    def __init__(
        self, warehouse: Warehouse, dataset: str, task: str, layout: FileLayout, *, amendment: int = 0
    ) -> None:
        self.warehouse, self.dataset, self.task = warehouse, dataset, task
        self.amendment = amendment
        self._path = ""
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
            name = part_name(len(self.files), self.amendment)
            self._path = self.warehouse.write_path(self.dataset, self.task, name)
            self._writer = pq.ParquetWriter(
                self._path,
                WAREHOUSE_SCHEMA,
                filesystem=self.warehouse.fs,
                **PARQUET_OPTIONS,
            )
            self.files.append({"name": name, "rows": 0})
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
            self.warehouse.sync(self._path)
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
    attempt = WAREHOUSE_SCHEMA.field("attempt")
    return (
        table.append_column(WAREHOUSE_SCHEMA.field("task"), pa.repeat(task, n))
        .append_column(WAREHOUSE_SCHEMA.field("job"), pa.repeat(chunk.job, n))
        .append_column(attempt, pa.array(np.full(n, chunk.attempt, dtype=attempt.type.to_pandas_dtype())))
    )


def _packed_keys(runs: np.ndarray, events: np.ndarray) -> np.ndarray:
    """(run, event) pairs as 12-byte strings whose order and equality are those of the pairs."""
    packed = np.empty(len(runs), dtype=[("run", ">u4"), ("event", ">u8")])
    packed["run"] = runs
    packed["event"] = events
    return packed.view("S12")


def _drop_duplicates(table: pa.Table, dups: Duplicates, committed: np.ndarray | None = None) -> pa.Table:
    """Keep the first row of each (run, event) of a sorted table; rows whose pair is in `committed`
    (sorted packed keys of rows loaded earlier) are dropped as well. Every dropped copy is listed."""
    runs, events = event_keys(table)
    n = len(runs)
    if n == 0:
        return table
    same = np.zeros(n, dtype=bool)
    same[1:] = (runs[1:] == runs[:-1]) & (events[1:] == events[:-1])
    earlier = np.zeros(n, dtype=bool)
    if committed is not None and len(committed):
        earlier = np.isin(_packed_keys(runs, events), committed)
    drop = same | earlier
    if not drop.any():
        return table
    jobs, attempts, guids = table.column("job"), table.column("attempt"), table.column("input_guid")
    lumi = table.column("lumi_block")
    starts = np.flatnonzero(~same)  # each group of equal pairs starts here
    sizes = np.diff(np.append(starts, n))
    for start, size in zip(starts.tolist(), sizes.tolist(), strict=True):
        if size == 1 and not earlier[start]:
            continue
        copies = [
            {"job": str(jobs[i]), "attempt": int(attempts[i].as_py()), "input_guid": str(guids[i]),
             "lumi_block": lumi[i].as_py(), "loaded": False}
            for i in range(start, start + size)
        ]  # fmt: skip
        entry: dict[str, Any] = {
            "run_number": int(runs[start]),
            "event_number": int(events[start]),
            "jobs": [copy["job"] for copy in copies],
            "copies": copies,
        }
        if earlier[start]:
            entry["loaded_earlier"] = True
        else:
            copies[0]["loaded"] = True
        dups.entries.append(entry)
    dups.count += int(drop.sum())
    return table.filter(pa.array(~drop))


@dataclass(frozen=True)
class LoadPlan:
    task: str
    dataset: str
    chunks: list[ChunkRecord]
    attempts: dict[str, int]
    superseded: list[dict[str, Any]]
    partial: bool = False
    missing: tuple[str, ...] = ()
    #: Per input file of the chosen attempts that has any: {"guid", "trigger_names", "notes"}.
    inputs: tuple[dict[str, Any], ...] = ()


def trigger_names(inputs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The marker's bit -> name lists: `trigger_names` {column: names} when every input file that names
    bits agrees; otherwise `trigger_name_sets`, each distinct list with the input GUIDs that use it."""
    sets: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for entry in inputs:
        for column, names in sorted(entry.get("trigger_names", {}).items()):
            sets.setdefault((column, tuple(names)), []).append(entry["guid"])
    if not sets:
        return {}
    columns = [column for column, _ in sets]
    if len(columns) == len(set(columns)):
        return {"trigger_names": {column: list(names) for column, names in sets}}
    return {
        "trigger_name_sets": [
            {"column": column, "names": list(names), "input_guids": sorted(guids)}
            for (column, names), guids in sorted(sets.items())
        ]
    }


def load_task(
    plan: LoadPlan,
    *,
    store: ObjectStore,
    assembly: ObjectStore,
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
        return _load(
            plan,
            store=store,
            assembly=assembly,
            warehouse=warehouse,
            owner=owner,
            layout=layout,
            on_progress=on_progress,
            cache=cache,
        )
    except OSError as exc:  # pyarrow filesystems report I/O failures as OSError
        raise WarehouseError(f"writing task {plan.task} to {warehouse.url} failed: {exc}") from exc


def _write_generation(
    plan: LoadPlan,
    *,
    store: ObjectStore,
    assembly: ObjectStore,
    warehouse: Warehouse,
    layout: FileLayout,
    on_progress: Callable[[int], None] | None,
    cache: ChunkCache | None,
    amendment: int,
    committed: np.ndarray | None,
) -> tuple[list[dict[str, Any]], int, Duplicates]:
    """Write the plan's events as part files of one generation (staged where the filesystem renames,
    not committed): returns the files, the events read from chunks and the duplicates dropped."""
    writer = PartWriter(warehouse, plan.dataset, plan.task, layout, amendment=amendment)
    dups = Duplicates()
    rows_in = 0
    for group in overlap_groups(plan.chunks):
        chunks = (load_chunk(c.key, c.size, c.sha256, store=store, assembly=assembly, cache=cache) for c in group)
        tables = [_with_identity(table, plan.task, c) for table, c in zip(chunks, group, strict=True)]
        table = pa.concat_tables(tables)
        rows_in += table.num_rows
        if len(group) > 1:
            table = table.sort_by(SORT_KEYS)
        elif table.num_rows > 1:
            runs, events = event_keys(table)
            if not _is_sorted(runs, events):
                table = table.sort_by(SORT_KEYS)
        writer.write(_drop_duplicates(table, dups, committed))
        if on_progress:
            on_progress(rows_in)
    return writer.close(), rows_in, dups


def _commit_generation(
    plan: LoadPlan,
    warehouse: Warehouse,
    files: list[dict[str, Any]],
    dups: Duplicates,
    amendment: int,
    write_marker: Callable[[], None],
) -> None:
    """Put a generation's parts in place, its duplicates listing next to them, then its marker
    (`write_marker`). Should anything before the marker fail, the parts go back under staging
    (where the filesystem renames): a reader pointed at the root never sees them uncommitted for
    longer than the attempt."""
    names = [f["name"] for f in files]
    try:
        warehouse.publish(plan.dataset, plan.task, names, amendment)
        if dups.entries:
            name = DUPLICATES if amendment == 0 else f"_DUPLICATES-a{amendment:04d}.json"
            warehouse.write_side_file(plan.dataset, plan.task, name, {"task": plan.task, "duplicates": dups.entries})
        crashpoint("load.parts_done")
        write_marker()
    except AlreadyCommittedError:
        raise  # a marker is there: what it lists is committed
    except (WarehouseError, OSError):
        warehouse.unpublish(plan.dataset, plan.task, names)
        raise


def _load(
    plan: LoadPlan,
    *,
    store: ObjectStore,
    assembly: ObjectStore,
    warehouse: Warehouse,
    owner: str,
    layout: FileLayout,
    on_progress: Callable[[int], None] | None,
    cache: ChunkCache | None,
) -> dict[str, Any]:
    started = time.monotonic()
    if warehouse.read_marker(plan.dataset, plan.task) is not None:
        raise AlreadyCommittedError(f"{warehouse.location(plan.dataset, plan.task)} was committed already")
    warehouse.claim(plan.dataset, plan.task, owner)
    warehouse.begin(plan.dataset, plan.task)
    crashpoint("load.claimed")
    files, rows_in, dups = _write_generation(
        plan, store=store, assembly=assembly, warehouse=warehouse, layout=layout, on_progress=on_progress, cache=cache,
        amendment=0, committed=None,
    )  # fmt: skip
    marker = _marker(plan, files, rows_in, dups, owner, started)
    _commit_generation(
        plan, warehouse, files, dups, 0, lambda: warehouse.write_marker_once(plan.dataset, plan.task, marker)
    )
    crashpoint("load.committed")
    warehouse.finish(plan.dataset, plan.task)
    return marker


def _marker(
    plan: LoadPlan, files: list[dict[str, Any]], rows_in: int, dups: Duplicates, owner: str, started: float
) -> dict[str, Any]:
    summary = dups.summary()
    if not dups.entries:
        summary.pop("listed_in")
    return {
        "task": plan.task,
        "dataset": plan.dataset,
        "files": files,
        "rows": sum(f["rows"] for f in files),
        "events_in_chunks": rows_in,
        "duplicates": summary,
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
        **trigger_names(plan.inputs),
        **_input_notes(plan.inputs),
    }


def _input_notes(inputs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """How input files were read where readers should know (e.g. from a collection tree), by GUID."""
    notes = [{"guid": e["guid"], "notes": e["notes"]} for e in inputs if e.get("notes")]
    return {"input_notes": notes} if notes else {}


def committed_keys(warehouse: Warehouse, dataset: str, task: str) -> np.ndarray:
    """Sorted packed (run, event) keys of every committed row of a task (for an amendment)."""
    found = warehouse.committed(dataset, task)
    if found is None:
        return np.empty(0, dtype="S12")
    keys = []
    for name in found.files:
        table = pq.read_table(
            f"{found.directory}/{name}", columns=["run_number", "event_number"], filesystem=warehouse.fs
        )
        runs, events = event_keys(table)
        keys.append(_packed_keys(runs, events))
    return np.sort(np.concatenate(keys)) if keys else np.empty(0, dtype="S12")


def amend_task(
    plan: LoadPlan,
    *,
    store: ObjectStore,
    assembly: ObjectStore,
    warehouse: Warehouse,
    owner: str,
    layout: FileLayout = DEFAULT_LAYOUT,
    cache: ChunkCache | None = None,
) -> dict[str, Any]:
    """Add the late jobs of a committed partial task (`plan` holds only their chunks) as the next
    amendment: parts `part-aNNNN-*.parquet`, then `_AMEND-NNNN.json`, write-once. Events already
    committed are not loaded again (listed as duplicates). Returns the amendment."""
    started = time.monotonic()
    try:
        existing = warehouse.committed(plan.dataset, plan.task)
        if existing is None:
            raise WarehouseError(f"task {plan.task} has no commit marker to amend")
        loaded = {**existing.marker.get("attempts", {})}
        for earlier in existing.amendments:
            loaded.update(earlier.get("attempts", {}))
        if any(job in loaded for job in plan.attempts):
            already = sorted(job for job in plan.attempts if job in loaded)
            raise AlreadyCommittedError(f"task {plan.task}: jobs {', '.join(already)} are loaded already")
        number = len(existing.amendments) + 1
        # the amendment's own claim, not the task's: whoever committed the task may be gone with its ledger
        warehouse.claim(plan.dataset, plan.task, owner, amendment=number)
        warehouse.begin(plan.dataset, plan.task, number)
        files, rows_in, dups = _write_generation(
            plan,
            store=store,
            assembly=assembly,
            warehouse=warehouse,
            layout=layout,
            on_progress=None,
            cache=cache,
            amendment=number,
            committed=committed_keys(warehouse, plan.dataset, plan.task),
        )
        amendment = _marker(plan, files, rows_in, dups, owner, started)
        amendment["amendment"] = number
        if dups.entries:
            amendment["duplicates"]["listed_in"] = f"_DUPLICATES-a{number:04d}.json"
        _commit_generation(
            plan,
            warehouse,
            files,
            dups,
            number,
            lambda: warehouse.write_amendment_once(plan.dataset, plan.task, number, amendment),
        )
        warehouse.finish(plan.dataset, plan.task)
        return amendment
    except OSError as exc:
        raise WarehouseError(f"amending task {plan.task} in {warehouse.url} failed: {exc}") from exc


def _is_sorted(runs: np.ndarray, events: np.ndarray) -> bool:
    later_run = runs[1:] > runs[:-1]
    same_run = runs[1:] == runs[:-1]
    return bool(np.all(later_run | (same_run & (events[1:] >= events[:-1]))))
