"""`sqlite:///abs/queue.db[?queue=NAME&visibility=SECONDS]`: a durable queue in one SQLite file.

The embedded default: no server, several processes on one machine (producers and a
supersink) share the file. A received message is leased to its consumer; `ack` deletes it,
`release` hands it back. A lease ends, and the message is delivered again, when its
visibility timeout passes or when the consumer's process is gone (checked by pid on this host),
so a supersink killed with SIGKILL loses nothing it had not acked.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from eventindex.errors import ConfigError, TransportError
from eventindex.names import validate_name
from eventindex.redact import has_userinfo, redact
from eventindex.transport.base import Consumer, Message, Publisher

DEFAULT_QUEUE = "eventindex"
DEFAULT_VISIBILITY = 300.0
BUSY_TIMEOUT_MS = 60_000
_POLL_MIN = 0.01
#: How often a consumer looks for the leases of dead consumers to hand back.
RECLAIM_SECONDS = 1.0
_POLL_MAX = 0.25

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    enqueued REAL NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS messages_queue ON messages (queue, id);
"""


@dataclass(frozen=True)
class EmbeddedQueue:
    path: Path
    queue: str = DEFAULT_QUEUE
    visibility: float = DEFAULT_VISIBILITY

    def __post_init__(self) -> None:
        validate_name("queue", self.queue)
        if not self.path.is_absolute():
            raise ConfigError(f"sqlite queue path {self.path} must be absolute")
        if self.visibility <= 0:
            raise ConfigError("visibility must be positive")

    @classmethod
    def from_url(cls, url: str) -> EmbeddedQueue:
        if has_userinfo(url):  # never echo it: it holds a password (a queue file has none to take)
            raise ConfigError(
                "broker URL must not contain credentials: a queue file is sqlite:///absolute/path/queue.db"
            )
        shown = redact(url)
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # e.g. an unclosed [ in the host
            raise ConfigError(f"broker URL is malformed: {exc}") from None  # not shown: it may be a secret
        if parts.scheme != "sqlite" or parts.netloc not in ("", "localhost") or not parts.path:
            raise ConfigError(f"broker URL {shown!r}: expected sqlite:///absolute/path/queue.db")
        query = parse_qs(parts.query)
        unknown = set(query) - {"queue", "visibility"}
        if unknown:
            raise ConfigError(f"broker URL {shown!r}: unknown parameter(s) {', '.join(sorted(unknown))}")
        try:
            visibility = float(query.get("visibility", [DEFAULT_VISIBILITY])[-1])
        except ValueError:
            raise ConfigError(f"broker URL {shown!r}: visibility must be a number of seconds") from None
        return cls(Path(parts.path), query.get("queue", [DEFAULT_QUEUE])[-1], visibility)

    def check(self) -> None:
        """ConfigError when the queue's directory does not exist (checked before a job: a producer stores
        nothing it could not announce)."""
        if not self.path.parent.is_dir():
            raise ConfigError(f"sqlite queue {self.path}: directory {self.path.parent} does not exist")

    def connect(self) -> sqlite3.Connection:
        """Open (or create) the queue database. Its directory must exist, and an existing database
        must be a queue (ConfigError otherwise): a typo or the ledger's path creates nothing."""
        self.check()
        try:
            db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise TransportError(f"cannot open queue {self.path}: {exc}") from exc
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "messages" not in tables:
                raise ConfigError(f"{self.path} is not a queue database (it holds {', '.join(sorted(tables))})")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            db.close()
            if exc.sqlite_errorname == "SQLITE_NOTADB":
                raise ConfigError(f"{self.path} is not a queue database: {exc}") from exc
            raise TransportError(f"cannot open queue {self.path}: {exc}") from exc
        except ConfigError:
            db.close()
            raise
        return db

    def publisher(self) -> EmbeddedPublisher:
        return EmbeddedPublisher(self)

    def consumer(self) -> EmbeddedConsumer:
        return EmbeddedConsumer(self)

    def depth(self) -> int:
        """Messages not yet acked (for status displays and tests)."""
        db = self.connect()
        try:
            (count,) = db.execute("SELECT count(*) FROM messages WHERE queue = ?", (self.queue,)).fetchone()
            return int(count)
        finally:
            db.close()


class EmbeddedPublisher(Publisher):
    def __init__(self, queue: EmbeddedQueue) -> None:
        self.queue = queue
        self._db = queue.connect()

    def send(self, body: bytes, headers: Mapping[str, str] | None = None, group: str | None = None) -> None:
        all_headers = dict(headers or {})
        if group is not None:
            all_headers["JMSXGroupID"] = group
        try:
            self._db.execute(
                "INSERT INTO messages (queue, body, headers, enqueued) VALUES (?, ?, ?, ?)",
                (self.queue.queue, body, json.dumps(all_headers), time.time()),
            )
        except sqlite3.Error as exc:
            raise TransportError(f"cannot enqueue into {self.queue.path}: {exc}") from exc

    def send_batch(self, messages: Sequence[tuple[bytes, Mapping[str, str]]], group: str | None = None) -> None:
        rows = []
        for body, headers in messages:
            all_headers = dict(headers)
            if group is not None:
                all_headers["JMSXGroupID"] = group
            rows.append((self.queue.queue, body, json.dumps(all_headers), time.time()))
        try:
            with self._db:  # one transaction: all or none
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO messages (queue, body, headers, enqueued) VALUES (?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            raise TransportError(f"cannot enqueue into {self.queue.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()


def _parse_headers(raw: bytes) -> tuple[dict[str, str], str | None]:
    """A row's headers: a JSON object of strings. Anything else is delivered with its raw text as the
    `raw-headers` header and a problem, for the consumer to quarantine."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        problem = f"message headers are not JSON: {exc}"
    else:
        if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return value, None
        problem = "message headers are not a JSON object of strings"
    return {"raw-headers": raw.decode("utf-8", errors="backslashreplace")}, problem


def _owner_alive(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # cannot tell: trust the lease timeout
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedConsumer(Consumer):
    def __init__(self, queue: EmbeddedQueue) -> None:
        self.queue = queue
        self._db = queue.connect()
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._next_reclaim = 0.0
        #: set by close(), from any thread: a receive waiting for a message returns at once
        self._closed = threading.Event()

    def _reclaim_dead(self) -> None:
        """Hand back the leases of consumers whose process is gone (at most every RECLAIM_SECONDS: the
        query reads every leased row, and a deep backlog would make each claim cost its depth)."""
        now = time.monotonic()
        if now < self._next_reclaim:
            return
        self._next_reclaim = now + RECLAIM_SECONDS
        owners = [
            row[0]
            for row in self._db.execute(
                "SELECT DISTINCT lease_owner FROM messages WHERE queue = ? AND lease_owner IS NOT NULL",
                (self.queue.queue,),
            )
        ]
        for owner in owners:
            if owner != self._owner and not _owner_alive(owner):
                self._db.execute(
                    "UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?", (owner,)
                )

    def _claim(self) -> Message | None:
        now = time.time()
        with self._lock:
            if self._closed.is_set():  # closed by another thread while this one was receiving
                return None
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._reclaim_dead()
                    row = self._db.execute(
                        # as bytes whatever was stored: a TEXT value that is not UTF-8 cannot stop the queue
                        "SELECT id, CAST(body AS BLOB), CAST(headers AS BLOB), deliveries FROM messages "
                        "WHERE queue = ? AND (lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT 1",
                        (self.queue.queue, now),
                    ).fetchone()
                    if row is not None:
                        self._db.execute(
                            "UPDATE messages SET lease_owner = ?, lease_until = ?, deliveries = deliveries + 1 "
                            "WHERE id = ?",
                            (self._owner, now + self.queue.visibility, row[0]),
                        )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise TransportError(f"cannot read queue {self.queue.path}: {exc}") from exc
        if row is None:
            return None
        msg_id, body, raw_headers, deliveries = row
        headers, problem = _parse_headers(bytes(raw_headers or b""))
        return Message(bytes(body or b""), headers, handle=str(msg_id), redelivered=deliveries > 0, problem=problem)

    def receive(self, timeout: float) -> Message | None:
        """The next message, or None after `timeout` seconds, or at once when another thread closes the consumer."""
        if self._closed.is_set():
            raise TransportError(f"consumer of queue {self.queue.path} is closed")
        deadline = time.monotonic() + timeout
        pause = _POLL_MIN
        while True:
            message = self._claim()
            if message is not None:
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed.wait(min(pause, remaining)):
                return None
            pause = min(pause * 2, _POLL_MAX)

    def _finish(self, message: Message, sql: str) -> None:
        with self._lock:
            try:
                self._db.execute(sql, (int(message.handle), self._owner))
            except sqlite3.Error as exc:
                raise TransportError(f"cannot update queue {self.queue.path}: {exc}") from exc

    def ack(self, message: Message) -> None:
        self._finish(message, "DELETE FROM messages WHERE id = ? AND lease_owner = ?")

    def release(self, message: Message) -> None:
        self._finish(
            message, "UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?"
        )

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            with contextlib.suppress(sqlite3.Error):  # else the leases expire by themselves
                self._db.execute(
                    "UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?", (self._owner,)
                )
            self._db.close()
