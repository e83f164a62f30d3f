"""The pointer spool: where a producer keeps its pointer messages when no broker is reachable.

File format: one JSON object per line (UTF-8), appended and fsync'd one record at a time:
    {"v": 1, "time_ms": ..., "group": "<task>" | null, "headers": {...}, "body": "<base64>", "crc32": N}
`crc32` is of the decoded body. A line that is not a complete, valid record (a write torn by a
crash, a damaged disk block) is skipped and counted when the spool is flushed, and moved to
`<spool>.damaged` (appended, fsync'd) before the spool is emptied: nothing is thrown away. Every append
starts on a fresh line, so one bad line never spoils the next record. A file none of whose lines is a
record is not a spool (a mistyped --spool): flush refuses it and leaves it as it is.

Concurrency and durability: every append and every flush holds an exclusive `flock` on
`<spool>.lock`, so several producers (one spool per working directory, or a shared one) and a
flush never interleave. A new spool file's directory is fsync'd too.

`flush` sends the records in order, then empties the file (truncate + fsync). When a send fails
part-way, the records not yet sent replace the file (written to a temporary file, fsync'd,
renamed over it): nothing is lost. A crash during a flush leaves the whole spool in place, so
the next flush sends some records again: the supersink is idempotent to duplicate pointers, which
makes `ei-producer flush-spool` safe to re-run at any time.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import logging
import os
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventindex.errors import BrokerConnectionError, ConfigError, TransportError
from eventindex.transport.base import Publisher
from eventindex.transport.failover import FailoverPublisher

log = logging.getLogger(__name__)

SPOOL_VERSION = 1
DEFAULT_SPOOL = "ei-producer.spool"
#: Far above any pointer (a few hundred bytes): a longer line is not a record.
MAX_RECORD_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Record:
    body: bytes
    headers: Mapping[str, str]
    group: str | None


@dataclass(frozen=True)
class FlushResult:
    sent: int
    #: damaged lines left out
    skipped: int


class PointerSpoolError(TransportError):
    """The pointer spool file cannot be written or read."""


class NotASpoolError(ConfigError):
    """The file named as the spool has lines, none of them a pointer record: it was left untouched."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode(record: Record) -> bytes:
    line = json.dumps(
        {
            "v": SPOOL_VERSION,
            "time_ms": int(time.time() * 1000),
            "group": record.group,
            "headers": dict(record.headers),
            "body": base64.b64encode(record.body).decode("ascii"),
            "crc32": zlib.crc32(record.body),
        },
        separators=(",", ":"),
    )
    return line.encode() + b"\n"


def _decode(line: bytes) -> Record | None:
    """A record, or None when the line is not a complete valid one."""
    if not line.endswith(b"\n"):
        return None
    try:
        raw: Any = json.loads(line)
        if not isinstance(raw, dict) or raw.get("v") != SPOOL_VERSION:
            return None
        body = base64.b64decode(raw["body"], validate=True)
        headers = raw["headers"]
        group = raw["group"]
        if zlib.crc32(body) != raw["crc32"] or not isinstance(headers, dict):
            return None
        if group is not None and not isinstance(group, str):
            return None
        return Record(body, {str(k): str(v) for k, v in headers.items()}, group)
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


class PointerSpool:
    """The pointer spool: an append-only file of pointer messages (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise PointerSpoolError(f"cannot lock the spool {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def append(self, body: bytes, headers: Mapping[str, str] | None = None, group: str | None = None) -> None:
        """Add one message; returns once it is on disk."""
        self.append_many([Record(bytes(body), dict(headers or {}), group)])

    def append_many(self, records: Sequence[Record]) -> None:
        """Add messages in one write; returns once they are on disk."""
        data = b"".join(_encode(record) for record in records)
        with self._locked():
            try:
                created = not self.path.exists()
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        data = b"\n" + data  # the last record was torn: start on a fresh line
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if created:
                    _fsync_dir(self.path.parent)
            except OSError as exc:
                raise PointerSpoolError(f"cannot write the spool {self.path}: {exc.strerror}") from exc

    @property
    def damaged_path(self) -> Path:
        """Where flush moves the lines that are not records."""
        return self.path.with_name(self.path.name + ".damaged")

    def _read(self) -> tuple[list[Record], list[bytes]]:
        """The valid records, and the lines that are not records."""
        records: list[Record] = []
        damaged: list[bytes] = []
        try:
            with self.path.open("rb") as handle:
                while line := handle.readline(MAX_RECORD_BYTES + 1):
                    if not line.strip():
                        continue
                    record = _decode(line)
                    if record is None:
                        damaged.append(line)
                    else:
                        records.append(record)
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            raise PointerSpoolError(f"cannot read the spool {self.path}: {exc.strerror}") from exc
        return records, damaged

    def pending(self) -> int:
        """Valid records waiting in the spool."""
        if not self.path.exists():
            return 0
        with self._locked():
            return len(self._read()[0])

    def flush(self, publisher: Publisher) -> FlushResult:
        """Send every record in order; empty the spool, or keep what could not be sent and raise.
        Lines that are not records go to `damaged_path` first; NotASpoolError (nothing touched) when
        no line is a record. A spool that does not exist has nothing to send (nothing is created)."""
        if not self.path.exists():
            return FlushResult(0, 0)
        with self._locked():
            records, damaged = self._read()
            if damaged and not records:
                raise NotASpoolError(
                    f"spool {self.path}: none of its {len(damaged)} line(s) is a pointer record; "
                    "not a pointer spool? left as it is"
                )
            if damaged:
                self._set_aside(damaged)
                log.warning("spool %s: %d damaged line(s) moved to %s", self.path, len(damaged), self.damaged_path)
            skipped = len(damaged)
            sent = 0
            try:
                for record in records:
                    publisher.send(record.body, record.headers, record.group)
                    sent += 1
            except TransportError as exc:
                self._keep(records[sent:])
                kind = BrokerConnectionError if isinstance(exc, BrokerConnectionError) else TransportError
                raise kind(f"{exc} ({sent} sent, {len(records) - sent} kept in {self.path})") from exc
            except BaseException:
                self._keep(records[sent:])
                raise
            if records or skipped:
                self._keep([])
            return FlushResult(sent, skipped)

    def _set_aside(self, lines: list[bytes]) -> None:
        """Append `lines` to the damaged-lines file, on disk before the spool is rewritten (the lock is held)."""
        try:
            created = not self.damaged_path.exists()
            with self.damaged_path.open("ab") as handle:
                for line in lines:
                    handle.write(line if line.endswith(b"\n") else line + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            if created:
                _fsync_dir(self.path.parent)
        except OSError as exc:
            raise PointerSpoolError(f"cannot keep the damaged lines in {self.damaged_path}: {exc.strerror}") from exc

    def _keep(self, records: list[Record]) -> None:
        """Make the spool hold exactly `records` (the lock is held)."""
        try:
            if not records:
                if self.path.exists():
                    with self.path.open("r+b") as handle:
                        handle.truncate(0)
                        handle.flush()
                        os.fsync(handle.fileno())
                return
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            with tmp.open("wb") as handle:
                for record in records:
                    handle.write(_encode(record))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            raise PointerSpoolError(f"cannot rewrite the spool {self.path}: {exc.strerror}") from exc


class SpoolingPublisher(Publisher):
    """Sends through `inner`; once no broker is reachable, keeps every later message in the pointer spool.

    The switch is sticky for the rest of the job: after the brokers' bounded attempts all failed,
    trying again per message would only slow the job down. Only BrokerConnectionError (nothing
    reachable) spools; a broker that answers and refuses (TransportError) is an error.
    """

    def __init__(self, inner: Publisher, spool: PointerSpool) -> None:
        self.inner = inner
        self.spool = spool
        self.spooled = 0
        #: why the brokers were given up on (the first BrokerConnectionError), once spooling
        self.reason: str | None = None

    def send(self, body: bytes, headers: Mapping[str, str] | None = None, group: str | None = None) -> None:
        if self.reason is None:
            try:
                self.inner.send(body, headers, group)
                return
            except BrokerConnectionError as exc:
                self.reason = str(exc)
                log.warning("no broker reachable: pointers go to the spool %s (%s)", self.spool.path, exc)
        self.spool.append(body, headers, group)
        self.spooled += 1

    def send_batch(self, messages: Sequence[tuple[bytes, Mapping[str, str]]], group: str | None = None) -> None:
        """One broker transaction while a broker is reachable; else every message to the spool (flushed later
        one by one: a consumer of batches assembles them by their part numbers, not by the transaction)."""
        if self.reason is None:
            try:
                self.inner.send_batch(messages, group)
                return
            except BrokerConnectionError as exc:
                self.reason = str(exc)
                log.warning("no broker reachable: pointers go to the spool %s (%s)", self.spool.path, exc)
        self.spool.append_many([Record(bytes(body), dict(headers), group) for body, headers in messages])
        self.spooled += len(messages)

    def close(self) -> None:
        self.inner.close()


def flush_spool(path: Path, brokers: Sequence[str]) -> FlushResult:
    """`ei-producer flush-spool`: send the pointer spool at `path` through the first of `brokers` that takes
    each message, then empty it; what was not sent stays in it."""
    if path.is_dir():
        raise ConfigError(f"--spool {path} is a directory, not a pointer spool")
    spool = PointerSpool(path)
    with FailoverPublisher(brokers) as publisher:
        return spool.flush(publisher)
