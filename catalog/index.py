"""The catalogue's index: every committed task, its files and the key range of every row group.

What it holds, per committed task (nothing else: a task enters it only through its commit marker):
- each generation (the first load, then each amendment): its trigger names (the marker's
  `trigger_names` {mask: names}, or its `trigger_name_sets` [{column, names, input_guids}] when the
  input files disagree; each distinct list is kept once) and the side file listing the duplicates
  it dropped;
- each committed part file (the marker's and the amendments' file lists, never a directory listing);
- each row group of those files: rows, (run, event) range, run range and lumi-block range (and how
  many rows have no lumi block), from the Parquet footer statistics. Row groups hold sorted keys, so
  the range from the statistics, (min run, min event) .. (max run, max event), contains every key of
  the row group (exactly when the row group holds one run, a little wider when it spans runs);
- each row group's trigger-bit counts, filled lazily: for a mask column, how many of the row group's
  rows have each bit set (the bits set in at least one row). Building or refreshing the index reads
  only markers and footers; the first count that adds a file's stored counts for a mask column
  (catalog.questions.count) reads that column of that file, counts its bits and stores them, and
  later counts reuse them (a first count costs a few scans of the column: docs/catalog.md).
  Counts belong to the file's row in the index (ids are never reused, and dropping a task drops its
  counts); a file is counted only if its footer is still the one indexed.

Where: a SQLite file on the reader's machine (`--index PATH`; by default under
`$XDG_CACHE_HOME/eventindex/catalog/`, one per warehouse URL). A reader may not write the warehouse
(S3 read-only credentials, HDFS permissions), and a local file is read in milliseconds; each reader
keeps its own, built from the same markers, so none can be wrong about another's.

Kept up to date incrementally (:meth:`CatalogIndex.refresh`): one listing of the dataset and task
directories; markers are read for tasks not yet indexed, amendments probed for partial tasks (the
only ones that can gain files), tasks that disappeared are dropped. Committed files never change,
so nothing indexed is read twice. Uncommitted tasks (no marker) are never indexed, whatever files
they hold.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catalog.errors import CatalogIndexError
from catalog.kernels import bit_counts
from catalog.keys import HIGHEST, LOWEST, pack
from eventindex.columns import MASK_COLUMNS
from eventindex.errors import ConfigError, EventIndexError
from eventindex.names import validate_name
from eventindex.warehouse import DATASET_KEY, TASK_KEY, CommittedTask, WarehouseReader

INDEX_VERSION = 4
#: Markers and footers are read on this many threads (S3 and WebHDFS answer in milliseconds each).
READ_THREADS = 8
_INT64_MIN = np.iinfo(np.int64).min
_INT64_MAX = np.iinfo(np.int64).max

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS names (digest TEXT PRIMARY KEY, names TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    dataset TEXT NOT NULL,
    task TEXT NOT NULL,
    partial INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    committed_at TEXT,
    UNIQUE (dataset, task)
);
CREATE TABLE IF NOT EXISTS generations (
    task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    trigger_names TEXT,
    duplicates_in TEXT,
    PRIMARY KEY (task_id, number)
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    name TEXT NOT NULL,
    rows INTEGER NOT NULL,
    footer TEXT NOT NULL,
    masks TEXT NOT NULL,
    UNIQUE (task_id, name)
);
CREATE TABLE IF NOT EXISTS row_groups (
    file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    min_run INTEGER, min_event INTEGER, max_run INTEGER, max_event INTEGER,
    min_lumi INTEGER, max_lumi INTEGER, lumi_nulls INTEGER,
    PRIMARY KEY (file_id, ordinal)
);
CREATE TABLE IF NOT EXISTS bit_counts (
    file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    mask TEXT NOT NULL,
    bits BLOB NOT NULL,
    counts BLOB NOT NULL,
    PRIMARY KEY (mask, file_id, ordinal)
);
"""


#: The tables of what is indexed, children first.
_TABLES = ("bit_counts", "row_groups", "files", "generations", "tasks", "names")


def default_index_path(warehouse_url: str) -> Path:
    """Where the index of a warehouse lives unless --index says otherwise: one file per warehouse URL."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(warehouse_url.encode()).hexdigest()[:20]
    return Path(cache) / "eventindex" / "catalog" / f"index-{digest}.sqlite"


# ---------------------------------------------------------------- what the index holds, in memory


@dataclass(frozen=True)
class NameSet:
    """A name list (by digest) and the input files whose rows it names."""

    digest: str
    input_guids: tuple[str, ...]


@dataclass(frozen=True)
class Generation:
    number: int  # 0: the first load; n: amendment n
    trigger_names: dict[str, str]  # mask column -> digest of the name list of every row
    trigger_name_sets: dict[str, list[NameSet]]  # mask column -> the lists of some input files' rows
    duplicates_in: str | None  # the side file listing the duplicates this generation dropped

    def names_mask(self, mask: str) -> bool:
        return mask in self.trigger_names or mask in self.trigger_name_sets


@dataclass
class TaskEntry:
    dataset: str
    task: str
    partial: bool
    rows: int
    committed_at: str | None
    generations: list[Generation] = field(default_factory=list)


@dataclass(frozen=True)
class FileEntry:
    task: TaskEntry
    name: str
    generation: int
    rows: int
    file_id: int = field(default=0, compare=False)  # its row in the index
    footer: str = field(default="", compare=False)  # digest of the footer it was indexed from
    masks: tuple[str, ...] = field(default=(), compare=False)  # the mask columns it holds


class StoredCounts(Protocol):
    def __call__(
        self, mask: str, numbers: Sequence[int], chosen: Sequence[FileEntry] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which row groups have stored counts of the mask column, and their counts of each bit number; the
        missing counts of the chosen files (None: every file) are filled first."""
        ...


@dataclass
class IndexView:
    """The index loaded for pruning: tasks, files, and one entry per row group in numpy arrays."""

    tasks: list[TaskEntry]
    files: list[FileEntry]
    rg_file: np.ndarray  # index into files
    rg_rows: np.ndarray
    rg_lo: np.ndarray  # packed (run, event) keys, S12
    rg_hi: np.ndarray
    rg_min_run: np.ndarray
    rg_max_run: np.ndarray
    rg_min_lumi: np.ndarray
    rg_max_lumi: np.ndarray
    rg_lumi_nulls: np.ndarray  # -1: not known
    names: Callable[[str], list[str | None]]
    stored_counts: StoredCounts
    #: (mask columns, files) -> how many files' masks were read to store their missing counts
    fill_counts: Callable[[Sequence[str], Sequence[FileEntry] | None], int]

    def datasets(self) -> list[str]:
        return sorted({t.dataset for t in self.tasks})


# ---------------------------------------------------------------- reading markers and footers


@dataclass(frozen=True)
class _RowGroup:
    ordinal: int
    rows: int
    stats: tuple[int | None, ...]  # min_run, min_event, max_run, max_event, min_lumi, max_lumi, lumi_nulls


@dataclass(frozen=True)
class _File:
    generation: int
    name: str
    rows: int
    row_groups: list[_RowGroup]
    footer: str
    masks: list[str]


def footer_digest(meta: pq.FileMetaData) -> str:
    """A digest of a Parquet footer (row groups, their column chunks' offsets, sizes and statistics): a file
    rewritten under the same name has another."""
    out = pa.BufferOutputStream()
    meta.write_metadata_file(out)
    return hashlib.sha256(out.getvalue().to_pybytes()).hexdigest()[:32]


def _column_range(meta: pq.RowGroupMetaData, index: int | None) -> tuple[int | None, int | None]:
    if index is None:
        return None, None
    stats = meta.column(index).statistics
    if stats is None or not stats.has_min_max:
        return None, None
    return int(stats.min), int(stats.max)


def _null_count(meta: pq.RowGroupMetaData, index: int | None) -> int | None:
    if index is None:
        return None
    stats = meta.column(index).statistics
    return int(stats.null_count) if stats is not None and stats.has_null_count else None


def read_footer(fs: pafs.FileSystem, path: str, generation: int, name: str) -> _File:
    """A part file's row groups: their key, run and lumi ranges, from its footer alone."""
    try:
        with fs.open_input_file(path) as stream:
            meta = pq.ParquetFile(stream).metadata
            columns = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
            masks = [mask for mask, _ in MASK_COLUMNS if mask in columns]
            groups = []
            for ordinal in range(meta.num_row_groups):
                group = meta.row_group(ordinal)
                min_run, max_run = _column_range(group, columns.get("run_number"))
                min_event, max_event = _column_range(group, columns.get("event_number"))
                min_lumi, max_lumi = _column_range(group, columns.get("lumi_block"))
                lumi_nulls = _null_count(group, columns.get("lumi_block"))
                stats = (min_run, min_event, max_run, max_event, min_lumi, max_lumi, lumi_nulls)
                groups.append(_RowGroup(ordinal, group.num_rows, stats))
            footer = footer_digest(meta)
    except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
        raise CatalogIndexError(f"cannot index the Parquet file {path}: {exc}") from exc
    return _File(generation, name, meta.num_rows, groups, footer, masks)


def count_bits(
    fs: pafs.FileSystem, path: str, footer: str, masks: Sequence[str]
) -> list[tuple[int, str, bytes, bytes]]:
    """The bit counts of each row group of a part file's mask columns, as (ordinal, mask, bits, counts) with the
    set bits as int32 and their counts as int64; CatalogIndexError if its footer is not the one indexed."""
    try:
        with fs.open_input_file(path) as stream:
            parquet = pq.ParquetFile(stream)
            if footer_digest(parquet.metadata) != footer:
                raise CatalogIndexError(
                    f"{path} changed since it was indexed (a task deleted and loaded again under the same name?): "
                    "run ei-catalog index --rebuild"
                )
            found = []
            for ordinal in range(parquet.metadata.num_row_groups):
                table = parquet.read_row_group(ordinal, columns=list(masks))
                for mask in masks:
                    numbers, counts = bit_counts(table.column(mask))
                    found.append((ordinal, mask, numbers.astype("<i4").tobytes(), counts.astype("<i8").tobytes()))
    except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
        raise CatalogIndexError(f"cannot count the trigger bits of {path}: {exc}") from exc
    return found


def _names(record: dict[str, Any], what: str) -> tuple[dict[str, list[Any]], list[tuple[str, list[Any], list[str]]]]:
    """A marker's `trigger_names` {mask: names} and `trigger_name_sets` as (mask, names, input GUIDs)."""
    names = record.get("trigger_names", {})
    sets = record.get("trigger_name_sets", [])
    try:
        plain = {str(mask): list(value) for mask, value in names.items()}
        listed = [(str(s["column"]), list(s["names"]), [str(g) for g in s["input_guids"]]) for s in sets]
    except (AttributeError, KeyError, TypeError) as exc:
        raise CatalogIndexError(f"{what}: its trigger names are malformed ({exc})") from exc
    return plain, listed


def _duplicates_in(record: dict[str, Any]) -> str | None:
    dups = record.get("duplicates")
    listed = dups.get("listed_in") if isinstance(dups, dict) and dups.get("count") else None
    return str(listed) if listed else None


def _files_of(record: dict[str, Any], what: str) -> list[tuple[str, int]]:
    try:
        return [(validate_name("part file", str(f["name"])), int(f["rows"])) for f in record.get("files", [])]
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CatalogIndexError(f"{what}: its file list is malformed ({exc})") from exc


# ---------------------------------------------------------------- the SQLite file


@dataclass(frozen=True)
class RefreshReport:
    added: int
    amended: int
    dropped: int
    tasks: int
    files: int
    row_groups: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _check_is_index(db: sqlite3.Connection, path: Path) -> None:
    """Refuse, before writing anything, a SQLite file that holds tables and is not an index (a supersink
    ledger, a queue: `--index` pointed at the wrong file), so nothing of it is changed or dropped."""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables = {name for name in tables if not name.startswith("sqlite_")}
    if not tables:
        return  # a new index
    foreign = sorted(tables - {"meta", *_TABLES})
    known = "meta" in tables and db.execute("SELECT 1 FROM meta WHERE key = 'warehouse'").fetchone() is not None
    if foreign or not known:
        held = ", ".join((foreign or sorted(tables))[:5])
        raise ConfigError(f"{path} is not an ei-catalog index (it holds the tables {held})")


class CatalogIndex:
    """The index of one warehouse, in a SQLite file."""

    def __init__(
        self, path: Path, warehouse_url: str, reader: WarehouseReader | None = None, *, create_parent: bool = True
    ) -> None:
        """`create_parent`: make the file's directory when missing (the default place); without it a missing
        directory is a ConfigError (a path given by hand: a typo is not created)."""
        self.path = path
        #: The warehouse the index reads mask columns from to fill bit counts: given here, or the last refreshed.
        self.reader = reader
        if not create_parent and not path.parent.is_dir():
            raise ConfigError(f"index {path}: directory {path.parent} does not exist")
        try:
            if create_parent:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
            try:
                _check_is_index(self.db, path)
            except ConfigError:
                self.db.close()
                raise
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("warehouse", warehouse_url) != warehouse_url:
                raise CatalogIndexError(f"index {path} belongs to warehouse {meta['warehouse']}, not {warehouse_url}")
            if int(meta.get("version", INDEX_VERSION)) != INDEX_VERSION:  # another layout: built again
                with self._transaction():
                    for table in _TABLES:
                        self.db.execute(f"DROP TABLE IF EXISTS {table}")
            self.db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise CatalogIndexError(f"index {path}: {exc}") from exc
        self.db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [("warehouse", warehouse_url), ("version", str(INDEX_VERSION))],
        )

    def close(self) -> None:
        self.db.close()

    def clear(self) -> None:
        """Forget everything (the next refresh reads every marker and footer again)."""
        with self._transaction():
            for table in _TABLES:
                self.db.execute(f"DELETE FROM {table}")

    # -------------------------------------------------------- refresh

    def _known(self) -> dict[tuple[str, str], tuple[int, bool, int]]:
        rows = self.db.execute(
            "SELECT t.dataset, t.task, t.id, t.partial, count(g.number) FROM tasks t "
            "JOIN generations g ON g.task_id = t.id GROUP BY t.id"
        ).fetchall()
        return {(d, t): (i, bool(p), n) for d, t, i, p, n in rows}

    def refresh(self, reader: WarehouseReader, dataset_glob: str | None = None) -> RefreshReport:
        """Bring the index up to date with the warehouse's commits (of the datasets matching the glob)."""
        self.reader = reader
        listed: dict[tuple[str, str], None] = {}
        try:
            datasets = [d for d in reader.datasets() if dataset_glob is None or fnmatch.fnmatchcase(d, dataset_glob)]
        except EventIndexError as exc:
            raise CatalogIndexError(str(exc)) from exc
        for dataset in datasets:
            for task in _task_names(reader, dataset):
                listed[(dataset, task)] = None
        known = {
            key: value
            for key, value in self._known().items()
            if dataset_glob is None or fnmatch.fnmatchcase(key[0], dataset_glob)
        }
        new = [key for key in listed if key not in known]
        amendable = [key for key, (_, partial, _) in known.items() if partial and key in listed]
        gone = [key for key in known if key not in listed]

        def read_new(key: tuple[str, str]) -> tuple[CommittedTask, list[_File]] | None:
            committed = reader.committed(*key)
            if committed is None:
                return None  # no marker: not committed (yet), not indexed
            return committed, _footers(reader, committed, 0)

        def read_amendments(key: tuple[str, str]) -> tuple[CommittedTask, list[_File]] | None:
            committed = reader.committed(*key)
            if committed is None:  # the marker is gone: the task was deleted since the listing
                return None
            indexed = known[key][2]
            if len(committed.amendments) + 1 == indexed:
                return None
            return committed, _footers(reader, committed, indexed)

        try:
            with ThreadPoolExecutor(READ_THREADS) as pool:
                added = [found for found in pool.map(read_new, new) if found is not None]
                amended = [found for found in pool.map(read_amendments, amendable) if found is not None]
        except (EventIndexError, OSError) as exc:
            raise CatalogIndexError(f"indexing {reader.url}: {exc}") from exc
        try:
            with self._transaction():
                for key in gone:
                    self.db.execute("DELETE FROM tasks WHERE dataset = ? AND task = ?", key)
                for committed, files in [*added, *amended]:
                    self._insert(committed, files)
            if added or amended or gone:  # the changes into the main file: the write-ahead log stays small
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            counts = self.db.execute(
                "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM files), (SELECT count(*) FROM row_groups)"
            ).fetchone()
        except sqlite3.Error as exc:
            raise CatalogIndexError(f"index {self.path}: {exc}") from exc
        return RefreshReport(len(added), len(amended), len(gone), *counts)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction; concurrent refreshes of the same index take turns."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _names_digest(self, names: list[Any]) -> str:
        text = json.dumps(names, separators=(",", ":"))
        digest = hashlib.sha256(text.encode()).hexdigest()
        self.db.execute("INSERT OR IGNORE INTO names VALUES (?, ?)", (digest, text))
        return digest

    def _insert(self, committed: CommittedTask, files: list[_File]) -> None:
        """Add a task's generations and files that the index does not hold yet (another refresh may have)."""
        values = (int(committed.partial), committed.rows, committed.marker.get("committed_at"))
        key = (committed.dataset, committed.task)
        row = self.db.execute("SELECT id FROM tasks WHERE dataset = ? AND task = ?", key).fetchone()
        if row is None:
            cursor = self.db.execute(
                "INSERT INTO tasks (dataset, task, partial, rows, committed_at) VALUES (?, ?, ?, ?, ?)", (*key, *values)
            )
            task_id = int(cursor.lastrowid or 0)
        else:
            task_id = int(row[0])
            self.db.execute("UPDATE tasks SET partial = ?, rows = ?, committed_at = ? WHERE id = ?", (*values, task_id))
        first = int(self.db.execute("SELECT count(*) FROM generations WHERE task_id = ?", (task_id,)).fetchone()[0])
        records = [committed.marker, *committed.amendments]
        for number in range(first, len(records)):
            plain, sets = _names(records[number], f"{committed.directory} generation {number}")
            names = {
                "names": {mask: self._names_digest(value) for mask, value in plain.items()},
                "sets": [[mask, self._names_digest(value), guids] for mask, value, guids in sets],
            }
            self.db.execute(
                "INSERT INTO generations VALUES (?, ?, ?, ?)",
                (task_id, number, json.dumps(names), _duplicates_in(records[number])),
            )
        for part in files:
            if part.generation < first:
                continue
            cursor = self.db.execute(
                "INSERT INTO files (task_id, generation, name, rows, footer, masks) VALUES (?, ?, ?, ?, ?, ?)",
                (task_id, part.generation, part.name, part.rows, part.footer, ",".join(part.masks)),
            )
            file_id = int(cursor.lastrowid or 0)
            self.db.executemany(
                "INSERT INTO row_groups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(file_id, g.ordinal, g.rows, *g.stats) for g in part.row_groups],
            )

    # -------------------------------------------------------- bit counts, filled lazily

    def fill_counts(self, files: Sequence[FileEntry], masks: Sequence[str]) -> int:
        """Store the bit counts of those of the mask columns that the files hold and the index has no counts of
        yet: each such file's missing columns are read (on several threads) and their bits counted, and its
        counts stored in a transaction of their own (an interrupted fill keeps what it stored). A file whose
        task was dropped meanwhile gets none. Returns how many files were read; none without a reader."""
        reader = self.reader
        if reader is None or not masks:
            return 0
        try:
            counted = {
                mask: {
                    fid for (fid,) in self.db.execute("SELECT DISTINCT file_id FROM bit_counts WHERE mask = ?", (mask,))
                }
                for mask in masks
            }
        except sqlite3.Error as exc:
            raise CatalogIndexError(f"index {self.path}: {exc}") from exc
        todo: list[tuple[FileEntry, list[str]]] = []
        for entry in files:
            missing = [mask for mask in masks if mask in entry.masks and entry.file_id not in counted[mask]]
            if missing and entry.rows > 0:
                todo.append((entry, missing))
        if not todo:
            return 0

        def read(item: tuple[FileEntry, list[str]]) -> tuple[FileEntry, list[tuple[int, str, bytes, bytes]]]:
            entry, missing = item
            path = f"{reader.task_dir(entry.task.dataset, entry.task.task)}/{entry.name}"
            return entry, count_bits(reader.fs, path, entry.footer, missing)

        try:
            with ThreadPoolExecutor(min(READ_THREADS, len(todo))) as pool:
                for entry, found in pool.map(read, todo):
                    with self._transaction():
                        still = "SELECT 1 FROM files WHERE id = ? AND footer = ?"
                        if self.db.execute(still, (entry.file_id, entry.footer)).fetchone() is not None:
                            self.db.executemany(
                                "INSERT OR IGNORE INTO bit_counts VALUES (?, ?, ?, ?, ?)",
                                [(entry.file_id, *row) for row in found],
                            )
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise CatalogIndexError(f"index {self.path}: {exc}") from exc
        return len(todo)

    # -------------------------------------------------------- load

    def load(self) -> IndexView:
        """The whole index, for pruning."""
        try:
            return self._load()
        except sqlite3.Error as exc:
            raise CatalogIndexError(f"index {self.path}: {exc}") from exc

    def _load(self) -> IndexView:
        tasks: dict[int, TaskEntry] = {}
        for tid, dataset, task, partial, task_rows, committed_at in self.db.execute(
            "SELECT id, dataset, task, partial, rows, committed_at FROM tasks ORDER BY dataset, task"
        ):
            tasks[tid] = TaskEntry(dataset, task, bool(partial), task_rows, committed_at)
        for tid, number, names, duplicates_in in self.db.execute(
            "SELECT task_id, number, trigger_names, duplicates_in FROM generations ORDER BY task_id, number"
        ):
            recorded = json.loads(names)
            sets: dict[str, list[NameSet]] = defaultdict(list)
            for mask, digest, guids in recorded["sets"]:
                sets[mask].append(NameSet(digest, tuple(guids)))
            tasks[tid].generations.append(Generation(number, recorded["names"], dict(sets), duplicates_in))
        files: list[FileEntry] = []
        file_pos: dict[int, int] = {}
        for fid, tid, generation, name, file_rows, footer, masks in self.db.execute(
            "SELECT f.id, f.task_id, f.generation, f.name, f.rows, f.footer, f.masks FROM files f "
            "JOIN tasks t ON t.id = f.task_id ORDER BY t.dataset, t.task, f.generation, f.name"
        ):
            file_pos[fid] = len(files)
            files.append(
                FileEntry(tasks[tid], name, generation, file_rows, fid, footer, tuple(filter(None, masks.split(","))))
            )
        rows = self.db.execute(
            "SELECT file_id, rows, min_run, min_event, max_run, max_event, min_lumi, max_lumi, lumi_nulls, ordinal "
            "FROM row_groups ORDER BY file_id, ordinal"
        ).fetchall()
        table = np.array(
            [[file_pos[r[0]], r[1], *(_INT64_MIN if v is None else v for v in r[2:9])] for r in rows], dtype=np.int64
        ).reshape(-1, 9)
        position = {(r[0], r[9]): i for i, r in enumerate(rows)}  # (file id, ordinal) -> row group in the view
        known = table[:, 2:6] != _INT64_MIN
        exact = known.all(axis=1)
        bounds = np.where(known, table[:, 2:6], 0)
        lo = np.where(exact, pack(bounds[:, 0], bounds[:, 1]), LOWEST)
        hi = np.where(exact, pack(bounds[:, 2], bounds[:, 3]), HIGHEST)
        min_run = np.where(known[:, 0], table[:, 2], _INT64_MIN)
        max_run = np.where(known[:, 2], table[:, 4], _INT64_MAX)
        lumi_known = table[:, 6] != _INT64_MIN
        min_lumi = np.where(lumi_known, table[:, 6], _INT64_MIN)
        max_lumi = np.where(lumi_known, table[:, 7], _INT64_MAX)
        lumi_nulls = np.where(table[:, 8] != _INT64_MIN, table[:, 8], -1)

        def name_list(digest: str) -> list[str | None]:
            row = self.db.execute("SELECT names FROM names WHERE digest = ?", (digest,)).fetchone()
            if row is None:
                raise CatalogIndexError(f"index {self.path}: trigger names {digest} are missing")
            value: list[str | None] = json.loads(row[0])
            return value

        def fill_counts(masks: Sequence[str], chosen: Sequence[FileEntry] | None) -> int:
            return self.fill_counts(files if chosen is None else chosen, masks)

        def stored_counts(
            mask: str, numbers: Sequence[int], chosen: Sequence[FileEntry] | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
            fill_counts([mask], chosen)
            present = np.zeros(len(rows), dtype=bool)
            counts = np.zeros((len(rows), len(numbers)), dtype=np.int64)
            wanted = np.asarray(numbers, dtype=np.int32)
            try:
                stored = self.db.execute(
                    "SELECT file_id, ordinal, bits, counts FROM bit_counts WHERE mask = ?", (mask,)
                ).fetchall()
            except sqlite3.Error as exc:
                raise CatalogIndexError(f"index {self.path}: {exc}") from exc
            for file_id, ordinal, bits, values in stored:
                group = position.get((file_id, ordinal))
                if group is None:
                    continue
                set_bits = np.frombuffer(bits, dtype="<i4")
                at = np.minimum(np.searchsorted(set_bits, wanted), max(len(set_bits) - 1, 0))
                hit = (set_bits[at] == wanted) if len(set_bits) else np.zeros(len(wanted), dtype=bool)
                counts[group] = np.where(hit, np.frombuffer(values, dtype="<i8")[at] if len(set_bits) else 0, 0)
                present[group] = True
            return present, counts

        return IndexView(list(tasks.values()), files, table[:, 0], table[:, 1], lo, hi, min_run, max_run,
                         min_lumi, max_lumi, lumi_nulls, name_list, stored_counts, fill_counts)  # fmt: skip


def _footers(reader: WarehouseReader, committed: CommittedTask, first_generation: int) -> list[_File]:
    """The footers of a committed task's files, from generation `first_generation` on."""
    records = [committed.marker, *committed.amendments]
    found = []
    for number in range(first_generation, len(records)):
        what = f"{committed.directory} generation {number}"
        for name, _rows in _files_of(records[number], what):
            found.append(read_footer(reader.fs, f"{committed.directory}/{name}", number, name))
    return found


def _task_names(reader: WarehouseReader, dataset: str) -> Iterable[str]:
    """The task directories of a dataset (committed or not: the marker decides)."""
    directory = f"{reader.root}/{DATASET_KEY}={dataset}"
    try:
        infos = reader.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    except OSError as exc:
        raise CatalogIndexError(f"cannot list {directory}: {exc}") from exc
    prefix = f"{TASK_KEY}="
    for info in infos:
        if info.type == pafs.FileType.Directory and info.base_name.startswith(prefix):
            name = info.base_name[len(prefix) :]
            try:
                yield validate_name(TASK_KEY, name)
            except ConfigError:
                continue  # not a task directory of ours
