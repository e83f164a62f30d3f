"""The ledger: a SQLite database recording every step, committed before the broker message is acked.

What it knows: tasks and their expectations, every verified chunk, every recorded attempt
manifest and the chunks it lists, load state, and the quarantine. It is the supersink's memory
across crashes; `reconcile` can rebuild it from the object store.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventindex.errors import EventIndexError

SCHEMA_VERSION = 1

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
    marker TEXT
);
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
    state TEXT NOT NULL DEFAULT 'held'
);
"""


class LedgerError(EventIndexError):
    """The ledger could not be opened or written."""


@dataclass(frozen=True)
class ChunkRecord:
    job: str
    attempt: int
    seq: int
    key: str
    size: int
    sha256: bytes
    events: int
    min_key: bytes | None
    max_key: bytes | None


_COUNT_FILES = """
INSERT OR REPLACE INTO mq_files
SELECT task, job, attempt, seq, count(*), max(part), max(CASE WHEN last THEN part END)
FROM mq_parts GROUP BY task, job, attempt, seq
"""


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            had_files = self._has_table("mq_files")
            self.db.executescript(_SCHEMA)
            if not had_files:  # a ledger from before mq_files: count the messages already in
                self.db.execute(_COUNT_FILES)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
        self._depth = 0

    def _has_table(self, name: str) -> bool:
        row = self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return row is not None

    def close(self) -> None:
        self.db.close()

    def instance_id(self) -> str:
        """This ledger's supersink identity: it survives restarts, so a restarted supersink resumes its claims."""
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('instance_id', ?)", (uuid.uuid4().hex,))
        (value,) = self.db.execute("SELECT value FROM meta WHERE key = 'instance_id'").fetchone()
        return str(value)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One durable step: everything inside commits together, or nothing does."""
        if self._depth:
            self._depth += 1
            try:
                yield
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

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return list(self.db.execute(sql, params))

    # ------------------------------------------------------------ tasks

    def touch_task(self, task: str, dataset: str | None = None) -> None:
        now = time.time()
        self.db.execute(
            "INSERT INTO tasks (task, dataset, first_seen, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (task) DO UPDATE SET updated = excluded.updated, "
            "dataset = coalesce(tasks.dataset, excluded.dataset)",
            (task, dataset, now, now),
        )

    def task(self, task: str) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM tasks WHERE task = ?", (task,))
        return rows[0] if rows else None

    def tasks(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM tasks ORDER BY first_seen, task")

    def set_expectation(self, task: str, jobs: int, events: int | None) -> None:
        self.touch_task(task)
        self.db.execute("UPDATE tasks SET expected_jobs = ?, expected_events = ? WHERE task = ?", (jobs, events, task))

    def set_state(self, task: str, state: str, detail: str = "") -> None:
        self.db.execute(
            "UPDATE tasks SET state = ?, detail = ?, updated = ? WHERE task = ?", (state, detail, time.time(), task)
        )

    def mark_loaded(self, task: str, events: int, location: str, marker: dict[str, Any], state: str = "loaded") -> None:
        self.db.execute(
            "UPDATE tasks SET state = ?, detail = '', loaded_at = ?, events_loaded = ?, location = ?, marker = ?, "
            "updated = ? WHERE task = ?",
            (state, time.time(), events, location, json.dumps(marker), time.time(), task),
        )

    # ------------------------------------------------------------ chunks and attempts

    def see_job(self, task: str, job: str, attempt: int) -> None:
        self.db.execute("INSERT OR IGNORE INTO seen_jobs VALUES (?, ?, ?)", (task, job, attempt))

    def chunk(self, task: str, job: str, attempt: int, seq: int) -> sqlite3.Row | None:
        rows = self.query(
            "SELECT * FROM chunks WHERE task = ? AND job = ? AND attempt = ? AND seq = ?", (task, job, attempt, seq)
        )
        return rows[0] if rows else None

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

    def attempt(self, task: str, job: str, attempt: int) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM attempts WHERE task = ? AND job = ? AND attempt = ?", (task, job, attempt))
        return rows[0] if rows else None

    def record_attempt(
        self,
        task: str,
        job: str,
        attempt: int,
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

    def set_listed_problem(self, task: str, job: str, attempt: int, seq: int, problem: str | None) -> None:
        self.db.execute(
            "UPDATE listed_chunks SET problem = ? WHERE task = ? AND job = ? AND attempt = ? AND seq = ?",
            (problem, task, job, attempt, seq),
        )

    # ------------------------------------------------------------ broker-only transport

    def record_part(
        self, task: str, job: str, attempt: int, seq: int, part: int, last: bool, events: int, payload: bytes
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

    def parts(self, task: str, job: str, attempt: int, seq: int) -> list[sqlite3.Row]:
        return self.query(
            "SELECT part, last, events, payload FROM mq_parts WHERE task = ? AND job = ? AND attempt = ? AND seq = ? "
            "ORDER BY part",
            (task, job, attempt, seq),
        )

    def drop_parts(self, task: str, job: str, attempt: int, seq: int) -> None:
        for table in ("mq_parts", "mq_files"):
            self.db.execute(
                f"DELETE FROM {table} WHERE task = ? AND job = ? AND attempt = ? AND seq = ?", (task, job, attempt, seq)
            )

    # ------------------------------------------------------------ quarantine

    def quarantine(self, reason: str, headers: dict[str, str], body: bytes, task: str | None = None) -> int:
        cursor = self.db.execute(
            "INSERT INTO quarantine (received, task, reason, headers, body) VALUES (?, ?, ?, ?, ?)",
            (time.time(), task, reason, json.dumps(headers), body),
        )
        return int(cursor.lastrowid or 0)

    def quarantined(self, state: str | None = "held") -> list[sqlite3.Row]:
        if state is None:
            return self.query("SELECT * FROM quarantine ORDER BY id")
        return self.query("SELECT * FROM quarantine WHERE state = ? ORDER BY id", (state,))

    def set_quarantine_state(self, entry_id: int, state: str) -> None:
        self.db.execute("UPDATE quarantine SET state = ? WHERE id = ?", (state, entry_id))
