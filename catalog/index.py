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
  counts); a file is counted only if its footer is still the one indexed, and its size and modification
  time still those it was indexed with.

Where: a SQLite file on the reader's machine (`--index PATH`; by default under
`$XDG_CACHE_HOME/eventindex/catalog/`, one per warehouse URL). A reader may not write the warehouse
(S3 read-only credentials, HDFS permissions), and a local file is read in milliseconds; each reader
keeps its own, built from the same markers, so none can be wrong about another's.

Kept up to date incrementally (:meth:`CatalogIndex.refresh`): one listing of the dataset and task
directories; markers are read for tasks not yet indexed, amendments probed for partial tasks (the
only ones that can gain files), tasks that disappeared are dropped. Committed files never change,
so nothing indexed is read twice, unless the listing says a task's directory changed (a task
deleted and loaded again under the same name): its marker is read again, and the task indexed again
if the marker or one of its files is not the one indexed. Uncommitted tasks (no marker) are never
indexed, whatever files they hold. A committed task that cannot be indexed (its marker not a commit
record, a listed part file missing or not Parquet) is recorded as damaged, with the reason, instead
of failing the whole refresh: the questions over its dataset refuse to answer (catalog.selection),
the others are answered; it is read again by every refresh until it can be indexed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
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
from eventindex.errors import ConfigError, EventIndexError, WarehouseUnavailableError
from eventindex.names import validate_name
from eventindex.warehouse import DATASET_KEY, TASK_KEY, CommittedTask, WarehouseReader

INDEX_VERSION = 5
#: Markers and footers are read on this many threads (S3 and WebHDFS answer in milliseconds each).
READ_THREADS = 8
_INT64_MIN = np.iinfo(np.int64).min
_INT64_MAX = np.iinfo(np.int64).max
_NEVER_BUILT = "index {path} was never built: build it with ei-catalog index, or leave out --no-refresh"
_OLDER = "index {path} is of an older format: rebuild it with ei-catalog index, or leave out --no-refresh"
_READ_ONLY = "index {path} is read-only: it cannot be brought up to date (--no-refresh answers from it as it is)"

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
    marker TEXT NOT NULL,
    stamp TEXT NOT NULL,
    UNIQUE (dataset, task)
);
CREATE TABLE IF NOT EXISTS damaged (
    dataset TEXT NOT NULL,
    task TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (dataset, task)
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
    size INTEGER NOT NULL,
    mtime_ns INTEGER,
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
_TABLES = ("bit_counts", "row_groups", "files", "generations", "tasks", "names", "damaged")


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
    size: int = field(default=-1, compare=False)  # its size and modification time when it was indexed
    mtime_ns: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DamagedTask:
    """A committed task the index could not index: its marker is not a commit record, or a part file it lists is
    missing or unreadable. Questions over its dataset are refused while it is."""

    dataset: str
    task: str
    reason: str


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
    #: files -> None, or CatalogIndexError naming one that is missing or changed since it was indexed
    check_unchanged: Callable[[Sequence[FileEntry]], None]
    damaged: list[DamagedTask] = field(default_factory=list)

    def datasets(self) -> list[str]:
        """The datasets with an indexed task."""
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
    size: int
    mtime_ns: int | None


def marker_digest(marker: dict[str, Any]) -> str:
    """A digest of a commit marker: a task deleted and committed again under the same name has another (its
    commit time and its files at least)."""
    text = json.dumps(marker, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
    """A part file's row groups: their key, run and lumi ranges, from its footer alone (and its size and
    modification time, taken first: a file rewritten meanwhile is then found changed, never the reverse)."""
    try:
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            raise CatalogIndexError(f"cannot index the Parquet file {path}: it is missing")
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
        raise CatalogIndexError(f"cannot index the Parquet file {path}: {_one_line(str(exc))}") from exc
    return _File(generation, name, meta.num_rows, groups, footer, masks, int(info.size), info.mtime_ns)


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
    reindexed: int  # indexed again: deleted and committed again under the same name, or a file rewritten
    dropped: int
    damaged: int  # committed tasks that could not be indexed
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


@dataclass(frozen=True)
class _Known:
    """An indexed task, as a refresh compares it with the warehouse."""

    id: int
    partial: bool
    generations: int
    marker: str  # digest of its commit marker
    stamp: str  # what the listing said of its directory


@dataclass(frozen=True)
class _Found:
    """What a refresh read of a listed task: not committed (no marker), damaged, or its marker and new files."""

    key: tuple[str, str]
    stamp: str
    committed: CommittedTask | None = None
    files: list[_File] = field(default_factory=list)
    whole: bool = False  # the files of every generation (indexed from scratch), not only the new ones
    replace: bool = False  # indexed, but its marker or one of its files is not the one indexed: indexed again
    damage: str | None = None
    partial: int = 0
    rows: int = 0
    committed_at: str | None = None


def _read_task(
    reader: WarehouseReader,
    key: tuple[str, str],
    stamp: str,
    known: _Known | None,
    stats: dict[str, tuple[int, int | None]] | None,
) -> _Found:
    """Read a listed task's marker (and amendments), and the footers the index lacks: every file's for a task
    not indexed, or whose marker or files (`stats`: those indexed, when its directory changed) are not those
    indexed; else those of new amendments. Everything the index will write is checked here, before its write
    transaction: a malformed record fails this task alone."""
    committed = reader.committed(*key)
    if committed is None:
        return _Found(key, stamp)
    records = [committed.marker, *committed.amendments]
    for number, record in enumerate(records):
        what = f"{committed.directory} generation {number}"
        _names(record, what)
        _files_of(record, what)
    try:
        partial, rows = int(committed.partial), committed.rows
    except (TypeError, ValueError) as exc:
        raise CatalogIndexError(f"{committed.directory}: its row count is malformed ({exc})") from exc
    at = committed.marker.get("committed_at")
    replace = known is not None and (
        known.marker != marker_digest(committed.marker) or _files_changed(reader, committed.directory, stats)
    )
    first = 0 if known is None or replace else known.generations
    files = _footers(reader, committed, first)
    return _Found(
        key, stamp, committed, files, first == 0, replace, None, partial, rows, None if at is None else str(at)
    )


def _files_changed(reader: WarehouseReader, directory: str, stats: dict[str, tuple[int, int | None]] | None) -> bool:
    """Whether a file indexed with these sizes and times is missing, or has another size or time now."""
    if not stats:
        return False
    names = sorted(stats)
    for name, info in zip(names, reader.fs.get_file_info([f"{directory}/{n}" for n in names]), strict=True):
        size, mtime_ns = stats[name]
        if not _same_file(info, size, mtime_ns):
            return True
    return False


def _same_file(info: pafs.FileInfo, size: int, mtime_ns: int | None) -> bool:
    return (
        info.type == pafs.FileType.File
        and info.size == size
        and (mtime_ns is None or info.mtime_ns is None or info.mtime_ns == mtime_ns)
    )


class CatalogIndex:
    """The index of one warehouse, in a SQLite file."""

    def __init__(
        self,
        path: Path,
        warehouse_url: str,
        reader: WarehouseReader | None = None,
        *,
        create_parent: bool = True,
        refresh: bool = True,
    ) -> None:
        """`create_parent`: make the file's directory when missing (the default place); without it a missing
        directory is a ConfigError (a path given by hand: a typo is not created). `refresh` False (--no-refresh):
        the index is read as it is, and nothing is created or changed to open it: a file this process may not
        write is opened read-only (the bit counts it lacks are then not stored: the files are read instead), and
        an index never built (or of an older format) is refused by :meth:`load` unless :meth:`refresh` is called
        first (from Python), which builds it."""
        self.path = path
        self.warehouse_url = warehouse_url
        #: The warehouse the index reads mask columns from to fill bit counts: given here, or the last refreshed.
        self.reader = reader
        #: Whether bit counts can be stored (False: a read-only index opened with refresh False).
        self.writable = True
        self.create_parent = create_parent
        self._db: sqlite3.Connection | None = None
        #: Why the index cannot answer as it is (never built, an older format), until a refresh.
        self._unusable: str | None = None
        if not refresh and not path.is_file():
            self._unusable = _NEVER_BUILT.format(path=path)
            return
        self._connect(refresh)

    @property
    def db(self) -> sqlite3.Connection:
        """The SQLite connection (the file created and laid out on first use if it was not opened yet)."""
        if self._db is None:
            self._connect(refresh=True)
        assert self._db is not None
        return self._db

    def _connect(self, refresh: bool) -> None:
        path = self.path
        if refresh and not self.create_parent and not path.parent.is_dir():
            raise ConfigError(f"index {path}: directory {path.parent} does not exist")
        if refresh and path.is_file() and not os.access(path, os.W_OK):
            raise CatalogIndexError(_READ_ONLY.format(path=path))
        self.writable = refresh or os.access(path, os.W_OK)
        try:
            if refresh and self.create_parent:
                path.parent.mkdir(parents=True, exist_ok=True)
            if self.writable:
                db = sqlite3.connect(path, timeout=60, isolation_level=None)
            else:
                db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", timeout=60, isolation_level=None, uri=True)
        except OSError as exc:
            raise CatalogIndexError(f"index {path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            _check_is_index(db, path)
            self._db = db
            self._open(refresh)
        except BaseException:
            self._db = None
            db.close()
            raise

    def _open(self, refresh: bool) -> None:
        warehouse_url = self.warehouse_url
        try:
            tables = {name for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            meta = self._meta() if "meta" in tables else {}
            if meta.get("warehouse", warehouse_url) != warehouse_url:
                raise CatalogIndexError(
                    f"index {self.path} belongs to warehouse {meta['warehouse']}, not {warehouse_url}"
                )
            current = int(meta.get("version", INDEX_VERSION)) == INDEX_VERSION
            if not refresh:  # read as it is: never created, converted or written here
                if not current or "built" not in meta:
                    self._unusable = (_OLDER if not current else _NEVER_BUILT).format(path=self.path)
                    self.close()  # a refresh opens it again, to build it
                    return
                self.db.execute("PRAGMA foreign_keys=ON")
                return
            if meta.get("warehouse") == warehouse_url and current and "damaged" in tables:
                self.db.execute("PRAGMA foreign_keys=ON")
                return  # nothing to write to open it
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            with self._transaction():
                if not current:  # another layout: built again
                    for table in _TABLES:
                        self.db.execute(f"DROP TABLE IF EXISTS {table}")
                    self.db.execute("DELETE FROM meta WHERE key = 'built'")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    [("warehouse", warehouse_url), ("version", str(INDEX_VERSION))],
                )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def _error(self, exc: sqlite3.Error) -> CatalogIndexError:
        """A SQLite error as one line naming the index (a read-only one saying what still works)."""
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_READONLY:
            return CatalogIndexError(_READ_ONLY.format(path=self.path))
        return CatalogIndexError(f"index {self.path}: {_one_line(str(exc))}")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def clear(self) -> None:
        """Forget everything (the next refresh reads every marker and footer again). `refresh(rebuild=True)` does
        both in one transaction: readers never see the index empty."""
        try:
            with self._transaction():
                for table in _TABLES:
                    self.db.execute(f"DELETE FROM {table}")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    # -------------------------------------------------------- refresh

    def _known(self) -> dict[tuple[str, str], _Known]:
        rows = self.db.execute(
            "SELECT t.dataset, t.task, t.id, t.partial, count(g.number), t.marker, t.stamp FROM tasks t "
            "JOIN generations g ON g.task_id = t.id GROUP BY t.id"
        ).fetchall()
        return {(d, t): _Known(i, bool(p), n, m, s) for d, t, i, p, n, m, s in rows}

    def _file_stats(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], dict[str, tuple[int, int | None]]]:
        """The indexed files of these tasks: name -> (size, modification time) when indexed."""
        found: dict[tuple[str, str], dict[str, tuple[int, int | None]]] = defaultdict(dict)
        if keys:
            for dataset, task, name, size, mtime_ns in self.db.execute(
                "SELECT t.dataset, t.task, f.name, f.size, f.mtime_ns FROM files f JOIN tasks t ON t.id = f.task_id"
            ):
                if (dataset, task) in keys:
                    found[(dataset, task)][name] = (size, mtime_ns)
        return found

    def refresh(
        self, reader: WarehouseReader, dataset_globs: str | Sequence[str] | None = None, *, rebuild: bool = False
    ) -> RefreshReport:
        """Bring the index up to date with the warehouse's commits (of the datasets matching the globs; None:
        all). `rebuild`: forget everything (of those datasets) and index every committed task again, in the same
        transaction (a reader sees the old index until the new one is complete; nothing changes if it fails).

        A committed task that cannot be indexed is recorded as damaged (:class:`DamagedTask`) and the refresh
        goes on; only a warehouse that cannot be listed, or is unavailable, fails it (CatalogIndexError)."""
        self.reader = reader
        globs = [dataset_globs] if isinstance(dataset_globs, str) else dataset_globs

        def wanted(dataset: str) -> bool:
            return globs is None or any(fnmatch.fnmatchcase(dataset, glob) for glob in globs)

        listed: dict[tuple[str, str], str] = {}
        try:
            for dataset in [d for d in reader.datasets() if wanted(d)]:
                for task, stamp in _task_stamps(reader, dataset).items():
                    listed[(dataset, task)] = stamp
        except EventIndexError as exc:
            raise CatalogIndexError(str(exc)) from exc
        try:
            known = {} if rebuild else {key: value for key, value in self._known().items() if wanted(key[0])}
            # Tasks whose directory changed since they were indexed: their files' sizes and times are compared.
            moved = {key for key, value in known.items() if key in listed and listed[key] != value.stamp}
            stats = self._file_stats(moved)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        # Read: tasks not indexed (or damaged), partial ones (they may have been amended), changed ones.
        todo = [key for key in listed if key not in known or known[key].partial or key in moved]
        gone = [key for key in known if key not in listed]

        def read(key: tuple[str, str]) -> _Found:
            try:
                return _read_task(reader, key, listed[key], known.get(key), stats.get(key) if key in moved else None)
            except WarehouseUnavailableError:
                raise
            except (EventIndexError, OSError) as exc:  # this task's: recorded, the others indexed
                return _Found(key, listed[key], damage=_one_line(str(exc)))

        try:
            with ThreadPoolExecutor(READ_THREADS) as pool:
                found = list(pool.map(read, todo))
        except (EventIndexError, OSError) as exc:
            raise CatalogIndexError(f"indexing {reader.url}: {_one_line(str(exc))}") from exc
        outcomes: dict[str, int] = defaultdict(int)
        try:
            with self._transaction():
                if rebuild and globs is None:
                    for table in _TABLES:
                        self.db.execute(f"DELETE FROM {table}")
                elif rebuild:  # those datasets' tasks (their files, row groups and counts with them)
                    for task_id, dataset in self.db.execute("SELECT id, dataset FROM tasks").fetchall():
                        if wanted(dataset):
                            self.db.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
                for key in gone:
                    self.db.execute("DELETE FROM tasks WHERE dataset = ? AND task = ?", key)
                if gone:
                    outcomes["dropped"] += len(gone)
                for dataset, task in self.db.execute("SELECT dataset, task FROM damaged").fetchall():
                    if wanted(dataset):  # recorded again below if still damaged
                        self.db.execute("DELETE FROM damaged WHERE dataset = ? AND task = ?", (dataset, task))
                for item in found:
                    outcome = self._apply(item)
                    if outcome is not None:
                        outcomes[outcome] += 1
                if "built" not in self._meta():  # the first refresh: the index is built (--no-refresh may use it)
                    self.db.execute(
                        "INSERT INTO meta VALUES ('built', ?)", (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),)
                    )
            if outcomes:  # the changes into the main file: the write-ahead log stays small
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            counts = self.db.execute(
                "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM files), (SELECT count(*) FROM row_groups)"
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        self._unusable = None
        return RefreshReport(outcomes["added"], outcomes["amended"], outcomes["reindexed"], outcomes["dropped"],
                             outcomes["damaged"], *counts)  # fmt: skip

    @contextlib.contextmanager
    def _transaction(self, kind: str = "IMMEDIATE") -> Iterator[None]:
        """One transaction: a write transaction (concurrent refreshes of the same index take turns), or with
        kind "DEFERRED" a read transaction (one snapshot of the index, whatever commits meanwhile)."""
        self.db.execute(f"BEGIN {kind}")
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

    def _apply(self, found: _Found) -> str | None:
        """Write what a refresh found of a task; what it did: added, amended, reindexed, dropped, damaged or None."""
        key = found.key
        row = self.db.execute("SELECT id FROM tasks WHERE dataset = ? AND task = ?", key).fetchone()
        if found.damage is not None:  # what the index held of it no longer describes the warehouse
            self.db.execute("DELETE FROM tasks WHERE dataset = ? AND task = ?", key)
            self.db.execute("INSERT OR REPLACE INTO damaged VALUES (?, ?, ?)", (*key, found.damage))
            return "damaged"
        if found.committed is None:  # no marker (any more): not committed
            self.db.execute("DELETE FROM tasks WHERE dataset = ? AND task = ?", key)
            return "dropped" if row is not None else None
        return self._insert(found)

    def _insert(self, found: _Found) -> str | None:
        """Add a task's generations and files that the index does not hold yet (another refresh may have), or
        index it again from scratch when its marker or its files are not those indexed."""
        committed, key = found.committed, found.key
        assert committed is not None
        digest = marker_digest(committed.marker)
        values = (found.partial, found.rows, found.committed_at, digest, found.stamp)
        row = self.db.execute("SELECT id, marker FROM tasks WHERE dataset = ? AND task = ?", key).fetchone()
        outcome = "added" if row is None else None
        if row is not None and (row[1] != digest or found.replace):
            if not found.whole:
                return None  # another refresh indexed another commit of it meanwhile: the next refresh compares again
            self.db.execute("DELETE FROM tasks WHERE id = ?", (row[0],))  # its files, row groups and counts too
            row, outcome = None, "reindexed"
        if row is None:
            cursor = self.db.execute(
                "INSERT INTO tasks (dataset, task, partial, rows, committed_at, marker, stamp) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*key, *values),
            )
            task_id = int(cursor.lastrowid or 0)
        else:
            task_id = int(row[0])
            self.db.execute(
                "UPDATE tasks SET partial = ?, rows = ?, committed_at = ?, marker = ?, stamp = ? WHERE id = ?",
                (*values, task_id),
            )
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
        if outcome is None and first < len(records):
            outcome = "amended"
        for part in found.files:
            if part.generation < first:
                continue
            cursor = self.db.execute(
                "INSERT INTO files (task_id, generation, name, rows, footer, masks, size, mtime_ns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, part.generation, part.name, part.rows, part.footer, ",".join(part.masks), part.size,
                 part.mtime_ns),
            )  # fmt: skip
            file_id = int(cursor.lastrowid or 0)
            self.db.executemany(
                "INSERT INTO row_groups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(file_id, g.ordinal, g.rows, *g.stats) for g in part.row_groups],
            )
        return outcome

    # -------------------------------------------------------- bit counts, filled lazily

    def fill_counts(self, files: Sequence[FileEntry], masks: Sequence[str]) -> int:
        """Store the bit counts of those of the mask columns that the files hold and the index has no counts of
        yet: each such file's missing columns are read (on several threads) and their bits counted, and its
        counts stored in a transaction of their own (an interrupted fill keeps what it stored). A file whose
        task was dropped meanwhile gets none. Returns how many files were read; none without a reader."""
        reader = self.reader
        if reader is None or not masks or not self.writable:
            return 0  # a read-only index: the files are read instead
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
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_READONLY:
                self.writable = False  # opened for writing, refused: those files' counts are read instead
                return 0
            raise self._error(exc) from exc
        return len(todo)

    def check_unchanged(self, files: Sequence[FileEntry]) -> None:
        """CatalogIndexError naming the first of the files that is missing, or whose size or modification time is not
        the one it was indexed with (rewritten under the same name): its stored counts are not its rows'. One stat
        per file (a HEAD request on S3), on several threads."""
        reader = self.reader
        if reader is None or not files:
            return
        paths = [f"{reader.task_dir(entry.task.dataset, entry.task.task)}/{entry.name}" for entry in files]
        chunks = [paths[i::READ_THREADS] for i in range(min(READ_THREADS, len(paths)))]
        try:
            with ThreadPoolExecutor(len(chunks)) as pool:
                infos = list(pool.map(reader.fs.get_file_info, chunks))
        except OSError as exc:
            raise CatalogIndexError(f"cannot check the files of {reader.url}: {_one_line(str(exc))}") from exc
        found = {
            path: info for chunk, got in zip(chunks, infos, strict=True) for path, info in zip(chunk, got, strict=True)
        }
        for entry, path in zip(files, paths, strict=True):
            info = found[path]
            if info.type != pafs.FileType.File:
                raise CatalogIndexError(f"committed part file {path} is missing")
            if not _same_file(info, entry.size, entry.mtime_ns):
                raise CatalogIndexError(
                    f"{path} changed since it was indexed (rewritten under the same name): run ei-catalog index "
                    "--rebuild"
                )

    # -------------------------------------------------------- load

    def load(self) -> IndexView:
        """The whole index, for pruning: one snapshot of it, whatever a concurrent refresh commits meanwhile."""
        if self._unusable is not None:
            raise CatalogIndexError(self._unusable)
        try:
            with self._transaction("DEFERRED"):
                return self._load()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

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
        for fid, tid, generation, name, file_rows, footer, masks, size, mtime_ns in self.db.execute(
            "SELECT f.id, f.task_id, f.generation, f.name, f.rows, f.footer, f.masks, f.size, f.mtime_ns FROM files f "
            "JOIN tasks t ON t.id = f.task_id ORDER BY t.dataset, t.task, f.generation, f.name"
        ):
            file_pos[fid] = len(files)
            masks_held = tuple(filter(None, masks.split(",")))
            files.append(FileEntry(tasks[tid], name, generation, file_rows, fid, footer, masks_held, size, mtime_ns))
        damaged = [
            DamagedTask(*row) for row in self.db.execute("SELECT dataset, task, reason FROM damaged ORDER BY 1, 2")
        ]
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
                raise self._error(exc) from exc
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
                         min_lumi, max_lumi, lumi_nulls, name_list, stored_counts, fill_counts, self.check_unchanged,
                         damaged)  # fmt: skip


def _footers(reader: WarehouseReader, committed: CommittedTask, first_generation: int) -> list[_File]:
    """The footers of a committed task's files, from generation `first_generation` on."""
    records = [committed.marker, *committed.amendments]
    found = []
    for number in range(first_generation, len(records)):
        what = f"{committed.directory} generation {number}"
        for name, _rows in _files_of(records[number], what):
            found.append(read_footer(reader.fs, f"{committed.directory}/{name}", number, name))
    return found


def _task_stamps(reader: WarehouseReader, dataset: str) -> dict[str, str]:
    """The task directories of a dataset (committed or not: the marker decides), each with what the listing says
    of it, which changes when a file in it is created, deleted or renamed (a task deleted and loaded again, an
    amendment): the directory's modification time where the filesystem keeps one (local, HDFS), else (an object
    store: S3) a digest of the names, sizes and times of the objects under it, from one listing of the dataset."""
    directory = f"{reader.root}/{DATASET_KEY}={dataset}"
    try:
        infos = reader.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    except OSError as exc:
        raise CatalogIndexError(f"cannot list {directory}: {_one_line(str(exc))}") from exc
    prefix = f"{TASK_KEY}="
    tasks: dict[str, pafs.FileInfo] = {}
    for info in infos:
        if info.type == pafs.FileType.Directory and info.base_name.startswith(prefix):
            name = info.base_name[len(prefix) :]
            try:
                tasks[validate_name(TASK_KEY, name)] = info
            except ConfigError:
                continue  # not a task directory of ours
    if all(info.mtime_ns is not None for info in tasks.values()):
        return {name: str(info.mtime_ns) for name, info in tasks.items()}
    try:
        objects = reader.fs.get_file_info(pafs.FileSelector(directory, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise CatalogIndexError(f"cannot list {directory}: {_one_line(str(exc))}") from exc
    digests = {name: hashlib.sha256() for name in tasks}
    for info in sorted(objects, key=lambda each: each.path):
        top, _, rest = info.path.removeprefix(f"{directory}/").partition("/")
        digest = digests.get(top.removeprefix(prefix)) if top.startswith(prefix) else None
        if digest is not None and info.type == pafs.FileType.File:
            digest.update(f"{rest}\0{info.size}\0{info.mtime_ns}\n".encode())
    return {name: digest.hexdigest()[:32] for name, digest in digests.items()}
