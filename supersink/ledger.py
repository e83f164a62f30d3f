"""The ledger: a SQLite database recording every step, committed before the broker message is acked.

What it knows: tasks and their expectations, every verified chunk, every recorded attempt
manifest and the chunks it lists, load state, and the quarantine. It is the supersink's memory
across crashes; `reconcile` can rebuild it from the object store.

It stays bounded over months (supersink.retention): some time after a task's commit its rows of
chunks and attempts are compacted away (the task row, with its commit marker, remains as the
task's summary), later the summary is forgotten, and quarantine entries expire.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from eventindex import __version__
from eventindex.errors import ConfigError, EventIndexError, StateError
from eventindex.redact import redact

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    task TEXT PRIMARY KEY,
    dataset TEXT,
    expected_jobs INTEGER,
    expected_events INTEGER,
    state TEXT NOT NULL DEFAULT 'waiting',
    detail TEXT NOT NULL DEFAULT '',
    first_seen REAL NOT NULL,
    updated REAL NOT NULL,
    loaded_at REAL,
    events_loaded INTEGER,
    location TEXT,
    marker TEXT,
    purged_at REAL,
    purge_note TEXT
);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state);
CREATE INDEX IF NOT EXISTS tasks_purge ON tasks (purged_at, loaded_at);
CREATE INDEX IF NOT EXISTS tasks_not_purged ON tasks (purged_at) WHERE purge_note LIKE 'not purged: %';
CREATE TABLE IF NOT EXISTS chunks (
    task TEXT NOT NULL, job TEXT NOT NULL, attempt INTEGER NOT NULL, seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    events INTEGER NOT NULL,
    min_key BLOB,
    max_key BLOB,
    verified REAL NOT NULL,
    PRIMARY KEY (task, job, attempt, seq)
);
CREATE TABLE IF NOT EXISTS attempts (
    task TEXT NOT NULL, job TEXT NOT NULL, attempt INTEGER NOT NULL,
    dataset TEXT NOT NULL,
    manifest_key TEXT NOT NULL,
    manifest_sha256 BLOB NOT NULL,
    events INTEGER NOT NULL,
    status TEXT NOT NULL,
    producer_version TEXT NOT NULL,
    end_time_ms INTEGER NOT NULL,
    recorded REAL NOT NULL,
    PRIMARY KEY (task, job, attempt)
);
CREATE TABLE IF NOT EXISTS listed_chunks (
    task TEXT NOT NULL, job TEXT NOT NULL, attempt INTEGER NOT NULL, seq INTEGER NOT NULL,
    key TEXT NOT NULL, size INTEGER NOT NULL, sha256 BLOB NOT NULL, events INTEGER NOT NULL,
    problem TEXT,
    PRIMARY KEY (task, job, attempt, seq)
);
CREATE TABLE IF NOT EXISTS seen_jobs (
    task TEXT NOT NULL, job TEXT NOT NULL, attempt INTEGER NOT NULL,
    PRIMARY KEY (task, job, attempt)
);
-- What an attempt's manifest says of its input files that readers need (JSON: trigger names, notes);
-- a row only for attempts that have any.
CREATE TABLE IF NOT EXISTS attempt_inputs (
    task TEXT NOT NULL, job TEXT NOT NULL, attempt INTEGER NOT NULL, info TEXT NOT NULL,
    PRIMARY KEY (task, job, attempt)
);
CREATE TABLE IF NOT EXISTS mq_parts (
    task TEXT NOT NULL, job TEXT NOT NULL, attempt INTEGER NOT NULL, seq INTEGER NOT NULL, part INTEGER NOT NULL,
    last INTEGER NOT NULL,
    events INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (task, job, attempt, seq, part)
);
-- per input file of the broker-only transport: how many of its messages are in, and which is its last
-- (so that checking a file is complete costs one row, not a scan of its messages and their payloads)
CREATE TABLE IF NOT EXISTS mq_files (
    task TEXT NOT NULL, job TEXT NOT NULL, attempt INTEGER NOT NULL, seq INTEGER NOT NULL,
    received INTEGER NOT NULL, max_part INTEGER NOT NULL, last_part INTEGER,
    PRIMARY KEY (task, job, attempt, seq)
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received REAL NOT NULL,
    task TEXT,
    reason TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'held',
    job TEXT,
    attempt INTEGER,
    size INTEGER
);
CREATE INDEX IF NOT EXISTS quarantine_task ON quarantine (task, state);
CREATE INDEX IF NOT EXISTS quarantine_received ON quarantine (received);
-- the commit notifications' outbox (supersink.notify): written in the transaction that records a commit,
-- `published` set once the broker took it; `seq` orders the Server-Sent Events stream
CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    dataset TEXT NOT NULL,
    task TEXT NOT NULL,
    committed REAL NOT NULL,
    body TEXT NOT NULL,
    published REAL
);
CREATE INDEX IF NOT EXISTS notifications_pending ON notifications (published);
CREATE INDEX IF NOT EXISTS notifications_committed ON notifications (committed);
"""

#: Columns added since schema version 1: (table, column, type), added to older ledgers on open.
_ADDED_COLUMNS = (
    ("tasks", "purged_at", "REAL"),
    ("tasks", "purge_note", "TEXT"),
    ("quarantine", "job", "TEXT"),
    ("quarantine", "attempt", "INTEGER"),
    ("quarantine", "size", "INTEGER"),
)
#: Tables that hold per-attempt rows, compacted away after retention.
_ATTEMPT_TABLES = ("chunks", "listed_chunks", "attempts", "seen_jobs", "mq_parts", "mq_files", "attempt_inputs")
#: How a purge note starts when retention left a task's data alone (such a task is never forgotten).
NOT_PURGED = "not purged: "
#: Largest message body the quarantine keeps; the rest of a bigger one is cut (its size is kept).
MAX_QUARANTINE_BODY = 4 * 1024 * 1024


class LedgerError(StateError):
    """The ledger could not be opened or written."""


class LedgerTooNewError(ConfigError):
    """The ledger was written by a newer supersink (a downgrade): a usage error (exit 2), which restarting the
    service cannot heal (a unit with RestartPreventExitStatus=2 does not loop on it)."""


class TaskState(StrEnum):
    """The state of a task (`tasks.state`); supersink.service.STATES says what each means."""

    WAITING = "waiting"
    DAMAGED = "damaged"
    FAILED = "failed"
    LOADING = "loading"
    LOAD_FAILED = "load-failed"
    CLAIMED_ELSEWHERE = "claimed-elsewhere"
    LOADED = "loaded"
    LOADED_PARTIAL = "loaded-partial"


#: The states of a committed task.
LOADED_STATES = (TaskState.LOADED, TaskState.LOADED_PARTIAL)


class QuarantineState(StrEnum):
    """The state of a quarantine entry (`quarantine.state`)."""

    HELD = "held"
    RETRIED = "retried"


@dataclass(frozen=True)
class TaskRecord:
    """A task's row: its expectation, state, and (once committed) its commit."""

    task: str
    dataset: str | None
    expected_jobs: int | None
    expected_events: int | None
    state: TaskState
    detail: str
    first_seen: float
    updated: float
    loaded_at: float | None
    events_loaded: int | None
    location: str | None
    #: the commit marker as the ledger holds it (JSON), decoded on first use by `marker`
    marker_json: str | None
    purged_at: float | None
    purge_note: str | None

    @cached_property
    def marker(self) -> dict[str, Any] | None:
        """The commit marker, with its amendments merged in (None before the commit)."""
        decoded: dict[str, Any] | None = json.loads(self.marker_json) if self.marker_json else None
        return decoded

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> TaskRecord:
        return cls(
            task=row["task"],
            dataset=row["dataset"],
            expected_jobs=row["expected_jobs"],
            expected_events=row["expected_events"],
            state=TaskState(row["state"]),
            detail=row["detail"],
            first_seen=row["first_seen"],
            updated=row["updated"],
            loaded_at=row["loaded_at"],
            events_loaded=row["events_loaded"],
            location=row["location"],
            marker_json=row["marker"] or None,
            purged_at=row["purged_at"],
            purge_note=row["purge_note"],
        )


@dataclass(frozen=True)
class ChunkRecord:
    """A verified chunk (`chunks`), as recorded and as loaded."""

    job: str
    attempt: int
    seq: int
    key: str
    size: int
    sha256: bytes
    events: int
    min_key: bytes | None
    max_key: bytes | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ChunkRecord:
        return cls(
            row["job"],
            row["attempt"],
            row["seq"],
            row["key"],
            row["size"],
            bytes(row["sha256"]),
            row["events"],
            row["min_key"],
            row["max_key"],
        )


@dataclass(frozen=True)
class ListedChunk:
    """A chunk an attempt's manifest lists (`listed_chunks`), with the problem its verification found."""

    job: str
    attempt: int
    seq: int
    key: str
    size: int
    sha256: bytes
    events: int
    problem: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ListedChunk:
        return cls(
            row["job"],
            row["attempt"],
            row["seq"],
            row["key"],
            row["size"],
            bytes(row["sha256"]),
            row["events"],
            row["problem"],
        )


@dataclass(frozen=True)
class AttemptRecord:
    """A recorded attempt manifest (`attempts`)."""

    job: str
    attempt: int
    dataset: str
    manifest_key: str
    manifest_sha256: bytes
    events: int
    status: str
    producer_version: str
    end_time_ms: int
    recorded: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AttemptRecord:
        return cls(
            row["job"],
            row["attempt"],
            row["dataset"],
            row["manifest_key"],
            bytes(row["manifest_sha256"]),
            row["events"],
            row["status"],
            row["producer_version"],
            row["end_time_ms"],
            row["recorded"],
        )


@dataclass(frozen=True)
class MqPart:
    """One message of an input file of the broker-only transport (`mq_parts`)."""

    part: int
    last: bool
    events: int
    payload: bytes


@dataclass(frozen=True)
class QuarantineEntry:
    """A refused message (`quarantine`), with the raw bytes kept (`size` is the whole body's)."""

    id: int
    received: float
    task: str | None
    reason: str
    headers: dict[str, str]
    body: bytes
    state: QuarantineState
    job: str | None
    attempt: int | None
    size: int | None

    @property
    def cut(self) -> bool:
        """Whether only the start of the body was kept."""
        return self.size is not None and self.size > len(self.body)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> QuarantineEntry:
        return cls(
            id=row["id"],
            received=row["received"],
            task=row["task"],
            reason=row["reason"],
            headers=json.loads(row["headers"]),
            body=bytes(row["body"]),
            state=QuarantineState(row["state"]),
            job=row["job"],
            attempt=row["attempt"],
            size=row["size"],
        )


@dataclass(frozen=True)
class QuarantineSummary:
    """A quarantine entry without its body: what listings show."""

    id: int
    received: float
    task: str | None
    reason: str
    state: QuarantineState
    bytes: int


@dataclass(frozen=True)
class Notification:
    """A commit notification in the outbox (`notifications`)."""

    seq: int
    id: str
    dataset: str
    task: str
    committed: float
    body: str
    published: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Notification:
        return cls(row["seq"], row["id"], row["dataset"], row["task"], row["committed"], row["body"], row["published"])

    def data(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


_COUNT_FILES = """
INSERT OR REPLACE INTO mq_files
SELECT task, job, attempt, seq, count(*), max(part), max(CASE WHEN last THEN part END)
FROM mq_parts GROUP BY task, job, attempt, seq
"""


def _statements(script: str) -> list[str]:
    """The statements of an SQL script without its `--` comments (which may hold semicolons), to run
    one by one inside a transaction (executescript would commit first)."""
    return [s.strip() for s in re.sub(r"--[^\n]*", "", script).split(";") if s.strip()]


class Ledger:
    """The ledger at `path`. A missing file is created (unless `must_exist`), but only in a directory
    that exists; an existing database that is not a ledger is refused (ConfigError for both)."""

    def __init__(self, path: Path, must_exist: bool = False) -> None:
        self.path = path
        if not path.exists():
            if must_exist:
                raise LedgerError(f"no ledger at {path}")
            if not path.parent.is_dir():
                raise ConfigError(f"ledger {path}: directory {path.parent} does not exist")
        try:
            self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            if exc.sqlite_errorname == "SQLITE_NOTADB":
                raise ConfigError(f"{path} is not a supersink ledger: {exc}") from exc
            raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
        except EventIndexError:
            self.db.close()
            raise
        self._depth = 0

    @classmethod
    def read_only(cls, path: Path) -> Ledger:
        """A connection that can only read, for another thread than the service's (the status page, the
        metrics): no schema step, and SQLite refuses any write through it. The ledger must exist."""
        ledger = cls.__new__(cls)
        ledger.path = path
        try:
            ledger.db = sqlite3.connect(
                f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=60, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {path} to read: {exc}") from exc
        ledger.db.row_factory = sqlite3.Row
        ledger._depth = 0
        return ledger

    def _open(self) -> None:
        self.db.row_factory = sqlite3.Row
        tables = self._tables()
        if tables:
            version = self._version() if "meta" in tables else None
            if version is None:
                raise ConfigError(
                    f"{self.path} is not a supersink ledger (it holds the tables {', '.join(sorted(tables))})"
                )
            if version > SCHEMA_VERSION:
                raise LedgerTooNewError(
                    f"the ledger {self.path} has schema version {version}, newer than this supersink's "
                    f"({SCHEMA_VERSION}, ei-supersink {__version__}): it was written by a newer ei-supersink; "
                    "run that version (the ledger was left as it is)"
                )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        had_files = "mq_files" in tables
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for table, column, kind in _ADDED_COLUMNS:
                if table in tables and column not in self._columns(table):
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            for statement in _statements(_SCHEMA):
                self.db.execute(statement)
            if tables and not had_files:  # a ledger from before mq_files: count the messages already in
                self.db.execute(_COUNT_FILES)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _tables(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}

    def _version(self) -> int | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row is not None and str(row[0]).isdigit() else None

    def close(self) -> None:
        self.db.close()

    def instance_id(self) -> str:
        """This ledger's supersink identity: it survives restarts, so a restarted supersink resumes its claims."""
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('instance_id', ?)", (uuid.uuid4().hex,))
        (value,) = self.db.execute("SELECT value FROM meta WHERE key = 'instance_id'").fetchone()
        return str(value)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One durable step: everything inside commits together, or nothing does.

        Nested in another, it is a savepoint: an exception leaving it undoes its own writes alone (the
        outer transaction, if it goes on, commits the rest), so one message of a batch recorded in one
        transaction can fail without undoing the others."""
        if self._depth:
            name = f"step{self._depth}"
            self.db.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self.db.execute(f"ROLLBACK TO {name}")
                self.db.execute(f"RELEASE {name}")
                raise
            else:
                self.db.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot start a ledger transaction: {exc}") from exc
        self._depth = 1
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._depth = 0

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return list(self.db.execute(sql, params))

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(sql, params).fetchone()
        return row

    # ------------------------------------------------------------ tasks

    def touch_task(self, task: str, dataset: str | None = None) -> None:
        now = time.time()
        self.db.execute(
            "INSERT INTO tasks (task, dataset, first_seen, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (task) DO UPDATE SET updated = excluded.updated, "
            "dataset = coalesce(tasks.dataset, excluded.dataset)",
            (task, dataset, now, now),
        )

    def task(self, task: str) -> TaskRecord | None:
        row = self._one("SELECT * FROM tasks WHERE task = ?", (task,))
        return TaskRecord.from_row(row) if row is not None else None

    def tasks(self) -> list[TaskRecord]:
        return [TaskRecord.from_row(row) for row in self._rows("SELECT * FROM tasks ORDER BY first_seen, task")]

    def state_counts(self) -> dict[str, int]:
        """How many tasks are in each state."""
        return {row[0]: int(row[1]) for row in self.db.execute("SELECT state, count(*) FROM tasks GROUP BY state")}

    def row_counts(self) -> dict[str, int]:
        """How many rows the tables that grow with the work hold (what retention must keep bounded)."""
        counts = {}
        for table in ("tasks", "chunks", "notifications"):
            (counts[table],) = self.db.execute(f"SELECT count(*) FROM {table}").fetchone()
        return counts

    def last_commit_time(self) -> float | None:
        """When the last commit was recorded (None before the first)."""
        (value,) = self.db.execute("SELECT max(loaded_at) FROM tasks").fetchone()
        return None if value is None else float(value)

    def set_expectation(self, task: str, jobs: int, events: int | None) -> None:
        self.touch_task(task)
        self.db.execute("UPDATE tasks SET expected_jobs = ?, expected_events = ? WHERE task = ?", (jobs, events, task))

    def set_state(self, task: str, state: TaskState, detail: str = "") -> None:
        self.db.execute(
            "UPDATE tasks SET state = ?, detail = ?, updated = ? WHERE task = ?", (state, detail, time.time(), task)
        )

    def mark_loaded(
        self, task: str, *, events: int, location: str, marker: dict[str, Any], state: TaskState = TaskState.LOADED
    ) -> None:
        """Record a commit (or an amendment): retention starts counting from now."""
        self.db.execute(
            "UPDATE tasks SET state = ?, detail = '', loaded_at = ?, events_loaded = ?, location = ?, marker = ?, "
            "updated = ?, purged_at = NULL, purge_note = NULL WHERE task = ?",
            (state, time.time(), events, location, json.dumps(marker), time.time(), task),
        )

    def open_tasks(self) -> list[TaskRecord]:
        """The tasks not committed (not in LOADED_STATES), oldest first."""
        marks = ", ".join("?" * len(LOADED_STATES))
        rows = self._rows(f"SELECT * FROM tasks WHERE state NOT IN ({marks}) ORDER BY first_seen, task", LOADED_STATES)
        return [TaskRecord.from_row(row) for row in rows]

    # ------------------------------------------------------------ chunks and attempts

    def see_job(self, task: str, job: str, attempt: int) -> None:
        self.db.execute("INSERT OR IGNORE INTO seen_jobs VALUES (?, ?, ?)", (task, job, attempt))

    def invalidate_chunk(self, task: str, job: str, attempt: int, seq: int, problem: str) -> None:
        """A chunk verified before is no longer valid (found changed or gone at load): its attempt is
        incomplete again until the chunk verifies anew, and `problem` says why."""
        self.db.execute(
            "DELETE FROM chunks WHERE task = ? AND job = ? AND attempt = ? AND seq = ?", (task, job, attempt, seq)
        )
        self.set_listed_problem(task, job, attempt, seq, problem)

    def chunk_by_key(self, task: str, key: str) -> ChunkRecord | None:
        row = self._one("SELECT * FROM chunks WHERE task = ? AND key = ?", (task, key))
        return ChunkRecord.from_row(row) if row is not None else None

    def problem_chunks(self, task: str) -> list[ListedChunk]:
        """Chunks a manifest lists that failed verification and are not valid now."""
        rows = self._rows(
            "SELECT l.* FROM listed_chunks l LEFT JOIN chunks c USING (task, job, attempt, seq) "
            "WHERE l.task = ? AND l.problem IS NOT NULL AND c.key IS NULL ORDER BY l.job, l.attempt, l.seq",
            (task,),
        )
        return [ListedChunk.from_row(row) for row in rows]

    def chunk(self, task: str, job: str, attempt: int, seq: int) -> ChunkRecord | None:
        row = self._one(
            "SELECT * FROM chunks WHERE task = ? AND job = ? AND attempt = ? AND seq = ?", (task, job, attempt, seq)
        )
        return ChunkRecord.from_row(row) if row is not None else None

    def chunks(self, task: str) -> list[ChunkRecord]:
        """Every verified chunk of a task."""
        return [ChunkRecord.from_row(row) for row in self._rows("SELECT * FROM chunks WHERE task = ?", (task,))]

    def listed_chunks(self, task: str) -> list[ListedChunk]:
        """Every chunk the task's recorded manifests list, in seq order."""
        rows = self._rows("SELECT * FROM listed_chunks WHERE task = ? ORDER BY seq", (task,))
        return [ListedChunk.from_row(row) for row in rows]

    def loadable_chunks(self, task: str, job: str, attempt: int) -> list[ChunkRecord]:
        """The verified chunks of an attempt that its manifest lists, in seq order."""
        rows = self._rows(
            "SELECT c.* FROM chunks c JOIN listed_chunks l USING (task, job, attempt, seq) "
            "WHERE c.task = ? AND c.job = ? AND c.attempt = ? ORDER BY c.seq",
            (task, job, attempt),
        )
        return [ChunkRecord.from_row(row) for row in rows]

    def could_complete(self, task: str) -> bool:
        """Whether the task may be complete or failed now: its expectation is in, and either as many jobs
        as expected have a manifest or more jobs than expected were seen. A cheap test (two counts) that
        spares the full evaluation after every manifest of a task still short of jobs."""
        row = self.db.execute(
            "SELECT expected_jobs, (SELECT COUNT(DISTINCT job) FROM attempts WHERE task = ?1),"
            " (SELECT COUNT(DISTINCT job) FROM seen_jobs WHERE task = ?1) FROM tasks WHERE task = ?1",
            (task,),
        ).fetchone()
        if row is None or row[0] is None:
            return False
        expected, with_manifest, seen = row
        return bool(with_manifest >= expected or seen > expected)

    def seen_attempts(self, task: str) -> list[tuple[str, int]]:
        """Every (job, attempt) of the task anything arrived for."""
        return [
            (row[0], row[1]) for row in self.db.execute("SELECT job, attempt FROM seen_jobs WHERE task = ?", (task,))
        ]

    def record_chunk(self, task: str, rec: ChunkRecord) -> None:
        self.see_job(task, rec.job, rec.attempt)
        self.db.execute(
            "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                task,
                rec.job,
                rec.attempt,
                rec.seq,
                rec.key,
                rec.size,
                rec.sha256,
                rec.events,
                rec.min_key,
                rec.max_key,
                time.time(),
            ),
        )

    def attempt(self, task: str, job: str, attempt: int) -> AttemptRecord | None:
        row = self._one("SELECT * FROM attempts WHERE task = ? AND job = ? AND attempt = ?", (task, job, attempt))
        return AttemptRecord.from_row(row) if row is not None else None

    def attempts(self, task: str) -> list[AttemptRecord]:
        """Every recorded attempt manifest of a task."""
        return [AttemptRecord.from_row(row) for row in self._rows("SELECT * FROM attempts WHERE task = ?", (task,))]

    def last_job_end_ms(self, task: str) -> int | None:
        """When the last of the task's recorded attempts ended (its manifest's end time), if any."""
        (value,) = self.db.execute("SELECT max(end_time_ms) FROM attempts WHERE task = ?", (task,)).fetchone()
        return None if value is None else int(value)

    def record_attempt(
        self,
        task: str,
        job: str,
        attempt: int,
        *,
        dataset: str,
        manifest_key: str,
        manifest_sha256: bytes,
        events: int,
        status: str,
        producer_version: str,
        end_time_ms: int,
        listed: list[tuple[int, str, int, bytes, int]],
    ) -> None:
        self.see_job(task, job, attempt)
        self.db.execute(
            "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                task,
                job,
                attempt,
                dataset,
                manifest_key,
                manifest_sha256,
                events,
                status,
                producer_version,
                end_time_ms,
                time.time(),
            ),
        )
        self.db.execute("DELETE FROM listed_chunks WHERE task = ? AND job = ? AND attempt = ?", (task, job, attempt))
        self.db.executemany(
            "INSERT INTO listed_chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            [(task, job, attempt, seq, key, size, sha, events) for seq, key, size, sha, events in listed],
        )

    def record_attempt_inputs(self, task: str, job: str, attempt: int, info: list[dict[str, Any]]) -> None:
        """Per input file of an attempt: its GUID, trigger names and notes (only files that have any)."""
        self.db.execute("DELETE FROM attempt_inputs WHERE task = ? AND job = ? AND attempt = ?", (task, job, attempt))
        if info:
            self.db.execute("INSERT INTO attempt_inputs VALUES (?, ?, ?, ?)", (task, job, attempt, json.dumps(info)))

    def attempt_inputs(self, task: str, attempts: dict[str, int]) -> list[dict[str, Any]]:
        """What record_attempt_inputs kept for the given attempts of a task, in job order."""
        found: list[dict[str, Any]] = []
        for job, attempt in sorted(attempts.items()):
            row = self.db.execute(
                "SELECT info FROM attempt_inputs WHERE task = ? AND job = ? AND attempt = ?", (task, job, attempt)
            ).fetchone()
            if row is not None:
                found += json.loads(row[0])
        return found

    def set_listed_problem(self, task: str, job: str, attempt: int, seq: int, problem: str | None) -> None:
        self.db.execute(
            "UPDATE listed_chunks SET problem = ? WHERE task = ? AND job = ? AND attempt = ? AND seq = ?",
            (problem, task, job, attempt, seq),
        )

    # ------------------------------------------------------------ broker-only transport

    def record_part(
        self, task: str, job: str, attempt: int, seq: int, *, part: int, last: bool, events: int, payload: bytes
    ) -> None:
        self.see_job(task, job, attempt)
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO mq_parts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (task, job, attempt, seq, part, int(last), events, payload),
        )
        if cursor.rowcount != 1:
            return  # this message was in already
        self.db.execute(
            "INSERT INTO mq_files VALUES (?, ?, ?, ?, 1, ?, ?) "
            "ON CONFLICT (task, job, attempt, seq) DO UPDATE SET received = received + 1, "
            "max_part = max(max_part, excluded.max_part), last_part = coalesce(excluded.last_part, last_part)",
            (task, job, attempt, seq, part, part if last else None),
        )

    def parts_complete(self, task: str, job: str, attempt: int, seq: int) -> bool:
        """Whether every message of an input file is in: its last one, and all parts before it."""
        row = self.db.execute(
            "SELECT received, max_part, last_part FROM mq_files WHERE task = ? AND job = ? AND attempt = ? AND seq = ?",
            (task, job, attempt, seq),
        ).fetchone()
        if row is None or row["last_part"] is None:
            return False
        # parts are distinct non-negative numbers: last_part + 1 of them, none above it, are 0..last_part
        return bool(row["max_part"] == row["last_part"] and row["received"] == row["last_part"] + 1)

    def parts(self, task: str, job: str, attempt: int, seq: int) -> list[MqPart]:
        rows = self.db.execute(
            "SELECT part, last, events, payload FROM mq_parts WHERE task = ? AND job = ? AND attempt = ? AND seq = ? "
            "ORDER BY part",
            (task, job, attempt, seq),
        )
        return [MqPart(part, bool(last), events, bytes(payload)) for part, last, events, payload in rows]

    def drop_parts(self, task: str, job: str, attempt: int, seq: int) -> None:
        for table in ("mq_parts", "mq_files"):
            self.db.execute(
                f"DELETE FROM {table} WHERE task = ? AND job = ? AND attempt = ? AND seq = ?", (task, job, attempt, seq)
            )

    # ------------------------------------------------------------ quarantine

    def quarantine(
        self,
        reason: str,
        headers: dict[str, str],
        body: bytes,
        *,
        task: str | None = None,
        job: str | None = None,
        attempt: int | None = None,
    ) -> int:
        """Keep a refused message with its raw bytes (the first MAX_QUARANTINE_BODY of a bigger one). The
        reason is kept redacted: it is shown on the status page, in `quarantine list` and in the logs, and
        a credential that reached it (a URL's user-info, a secret parameter) must not be; the message
        itself is kept as it came, to be sent again."""
        cursor = self.db.execute(
            "INSERT INTO quarantine (received, task, reason, headers, body, job, attempt, size) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                time.time(),
                task,
                redact(reason),
                json.dumps(headers),
                body[:MAX_QUARANTINE_BODY],
                job,
                attempt,
                len(body),
            ),
        )
        return int(cursor.lastrowid or 0)

    def quarantined_for(self, task: str) -> list[QuarantineEntry]:
        """The held entries that name a task, newest first."""
        rows = self._rows(
            "SELECT * FROM quarantine WHERE task = ? AND state = ? ORDER BY id DESC", (task, QuarantineState.HELD)
        )
        return [QuarantineEntry.from_row(row) for row in rows]

    def quarantined(
        self, state: QuarantineState | None = QuarantineState.HELD, ids: Sequence[int] | None = None
    ) -> list[QuarantineEntry]:
        """The entries in `state` (None: every entry), only those of `ids` if given, oldest first. Each
        entry comes with its body: ask for the ids wanted rather than filter afterwards."""
        where: list[str] = []
        params: list[Any] = []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if ids is not None:
            where.append(f"id IN ({', '.join('?' * len(ids))})")
            params += ids
        sql = "SELECT * FROM quarantine" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return [QuarantineEntry.from_row(row) for row in self._rows(sql, tuple(params))]

    def held_cut(self, ids: Sequence[int] | None = None) -> dict[int, bool]:
        """The held entries (only those of `ids` if given), without their bodies: for each id, whether only the
        start of its body was kept. What `quarantine retry` checks before it sends anything, thousands of
        entries of up to 4 MiB each without reading one body."""
        sql = "SELECT id, coalesce(size > length(body), 0) FROM quarantine WHERE state = ?"
        params: list[Any] = [QuarantineState.HELD]
        if ids is not None:
            sql += f" AND id IN ({', '.join('?' * len(ids))})"
            params += ids
        return {int(entry_id): bool(cut) for entry_id, cut in self.db.execute(sql + " ORDER BY id", params)}

    def quarantine_listing(self) -> list[QuarantineSummary]:
        """Every entry without its body (its size instead), oldest first."""
        rows = self.db.execute("SELECT id, received, task, reason, state, length(body) FROM quarantine ORDER BY id")
        return [
            QuarantineSummary(entry_id, received, task, reason, QuarantineState(state), size)
            for entry_id, received, task, reason, state, size in rows
        ]

    def held_count(self, task: str | None = None) -> int:
        """How many entries are held (of one task, if given)."""
        if task is None:
            (n,) = self.db.execute(
                "SELECT count(*) FROM quarantine WHERE state = ?", (QuarantineState.HELD,)
            ).fetchone()
        else:
            (n,) = self.db.execute(
                "SELECT count(*) FROM quarantine WHERE task = ? AND state = ?", (task, QuarantineState.HELD)
            ).fetchone()
        return int(n)

    def set_quarantine_state(self, entry_id: int, state: QuarantineState) -> None:
        self.db.execute("UPDATE quarantine SET state = ? WHERE id = ?", (state, entry_id))

    def expire_quarantine(self, before: float) -> int:
        """Delete the quarantine entries received before `before`, but not those of a task the ledger holds
        and has not loaded in full (its raw message may be what heals it, by `quarantine retry`); returns how
        many went."""
        return int(
            self.db.execute(
                "DELETE FROM quarantine WHERE received < ? AND (task IS NULL OR NOT EXISTS "
                "(SELECT 1 FROM tasks WHERE tasks.task = quarantine.task AND tasks.state != ?))",
                (before, TaskState.LOADED),
            ).rowcount
        )

    # ------------------------------------------------------------ retention

    def due_for_purge(self, loaded_before: float, limit: int, retry_before: float | None = None) -> list[TaskRecord]:
        """Committed tasks not purged yet whose commit is older than `loaded_before`, oldest commit first; then
        (`retry_before` given) those retention last had to leave alone (NOT_PURGED) before `retry_before`."""
        marks = ", ".join("?" * len(LOADED_STATES))
        rows = self._rows(
            f"SELECT * FROM tasks WHERE purged_at IS NULL AND loaded_at < ? AND state IN ({marks}) "
            "ORDER BY loaded_at LIMIT ?",
            (loaded_before, *LOADED_STATES, limit),
        )
        if retry_before is not None and len(rows) < limit:
            # the literal matches the partial index tasks_not_purged (a bound pattern would not); +state keeps
            # SQLite from choosing tasks_state, which holds every loaded task
            rows += self._rows(
                f"SELECT * FROM tasks WHERE purged_at < ? AND purge_note LIKE 'not purged: %' AND +state IN ({marks}) "
                "ORDER BY purged_at LIMIT ?",
                (retry_before, *LOADED_STATES, limit - len(rows)),
            )
        return [TaskRecord.from_row(row) for row in rows]

    def compact(self, task: str, attempts: set[tuple[str, int]]) -> int:
        """Drop the per-attempt rows of `attempts` (their objects are gone); returns the rows dropped."""
        dropped = 0
        for table in _ATTEMPT_TABLES:
            dropped += self.db.executemany(
                f"DELETE FROM {table} WHERE task = ? AND job = ? AND attempt = ?",
                [(task, job, attempt) for job, attempt in sorted(attempts)],
            ).rowcount
        return dropped

    def reopen_retention(self, task: str) -> None:
        """Make a purged task due for retention again (objects of an attempt its commit accounted for were
        stored again after its purge); a task retention had to leave alone (NOT_PURGED) keeps its note."""
        self.db.execute(
            "UPDATE tasks SET purged_at = NULL, purge_note = NULL WHERE task = ? AND purged_at IS NOT NULL "
            "AND coalesce(purge_note, '') NOT LIKE ?",
            (task, NOT_PURGED + "%"),
        )

    def mark_purged(self, task: str, note: str | None) -> None:
        self.db.execute("UPDATE tasks SET purged_at = ?, purge_note = ? WHERE task = ?", (time.time(), note, task))

    def forget(self, purged_before: float) -> list[str]:
        """Delete every row of the tasks purged before `purged_before`, but not of those retention had to
        leave alone (NOT_PURGED: an operator must look at them); returns their names."""
        tasks = [
            row[0]
            for row in self.db.execute(
                "SELECT task FROM tasks WHERE purged_at < ? AND coalesce(purge_note, '') NOT LIKE ?",
                (purged_before, NOT_PURGED + "%"),
            )
        ]
        for table in (*_ATTEMPT_TABLES, "tasks"):
            self.db.executemany(f"DELETE FROM {table} WHERE task = ?", [(task,) for task in tasks])
        return tasks

    # ------------------------------------------------------------ commit notifications (the outbox)

    def add_notification(self, note_id: str, dataset: str, task: str, body: str) -> None:
        """Put a notification into the outbox, unless one with its id is there already."""
        self.db.execute(
            "INSERT OR IGNORE INTO notifications (id, dataset, task, committed, body) VALUES (?, ?, ?, ?, ?)",
            (note_id, dataset, task, time.time(), body),
        )

    def notifications_since(self, committed_after: float, after_seq: int, limit: int) -> list[Notification]:
        """The notifications recorded at or after `committed_after` with a seq above `after_seq`, in order."""
        rows = self._rows(
            "SELECT * FROM notifications WHERE committed >= ? AND seq > ? ORDER BY seq LIMIT ?",
            (committed_after, after_seq, limit),
        )
        return [Notification.from_row(row) for row in rows]

    def unpublished(self, limit: int) -> list[Notification]:
        """The notifications the broker has not taken yet, oldest first."""
        rows = self._rows("SELECT * FROM notifications WHERE published IS NULL ORDER BY seq LIMIT ?", (limit,))
        return [Notification.from_row(row) for row in rows]

    def unpublished_count(self) -> int:
        (n,) = self.db.execute("SELECT count(*) FROM notifications WHERE published IS NULL").fetchone()
        return int(n)

    def mark_published(self, seq: int) -> None:
        self.db.execute("UPDATE notifications SET published = ? WHERE seq = ?", (time.time(), seq))

    def drop_notifications(self, committed_before: float) -> int:
        """Delete the notifications recorded before `committed_before`; returns how many."""
        return int(self.db.execute("DELETE FROM notifications WHERE committed < ?", (committed_before,)).rowcount)

    def last_notification_seq(self) -> int:
        """The seq of the newest notification (0 when there is none)."""
        (value,) = self.db.execute("SELECT max(seq) FROM notifications").fetchone()
        return int(value or 0)
