"""Commit notifications: one message per commit, for the workflows downstream of the catalogue.

A commit (a task's commit marker, or an amendment) is announced only after it happened, and at
least once:

- `add_commit` writes the notification into the ledger's outbox (table `notifications`) inside the
  transaction that records the commit (`mark_loaded`): the ledger never knows a commit without
  knowing it still has to announce it.
- `Notifier.drain`, called by the service loop after each commit and at every sweep, publishes the
  pending ones in commit order to `--notify URL` (a STOMP topic `stomp://host:port/topic/NAME`, or
  an AMQP exchange `amqp://host:port/ROUTING_KEY?exchange=NAME`), and marks each published only
  once the broker confirmed it. A crash between the commit and the publish (crash point
  `notify.before_publish`) leaves it pending: the restarted service publishes it. A crash between the
  broker's confirm and the mark publishes it again: consumers de-duplicate on `id`.
- `id` is derived from the commit itself (location, amendment, commit time and the supersink that
  wrote the marker), so the same commit announced twice, even by two supersinks adopting one
  marker, carries the same id; `seq` (the outbox row) orders the Server-Sent Events stream.
- Notifications are kept in the ledger for `keep_seconds` after their commit (the retention of
  task summaries, `--forget-after`), for `ei-supersink notifications --since` and SSE clients that
  resume with `Last-Event-ID`.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from eventindex.backoff import compute_backoff
from eventindex.errors import ConfigError, EventIndexError
from eventindex.transport import Publisher, open_publisher
from eventindex.warehouse import AMEND_TEMPLATE, MARKER
from supersink.crashpoints import crashpoint
from supersink.ledger import Ledger, Notification

log = logging.getLogger(__name__)

#: The notification's `type`: its format, versioned.
TYPE = "eventindex.commit.v1"
#: Notifications published per drain (the rest at the next one, so the service loop is not held long).
DRAIN_BATCH = 100
RETRY_BASE = 5.0
RETRY_CAP = 300.0
PRUNE_EVERY = 3600.0
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def notification(location: str, marker: dict[str, Any]) -> dict[str, Any]:
    """The notification of a commit marker or an amendment (which has `amendment`: its number);
    `committed_at` is the marker's (null for a marker written before markers had it)."""
    amendment = int(marker.get("amendment", 0))
    name = AMEND_TEMPLATE.format(amendment) if amendment else MARKER
    files = [str(f["name"]) for f in marker.get("files", [])]
    # a marker is write-once: what it says identifies its commit (older markers may lack a field)
    identity = json.dumps([location, amendment, marker.get("committed_at"), marker.get("loaded_by"), files])
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, identity)),
        "type": TYPE,
        "dataset": marker["dataset"],
        "task": marker["task"],
        "amendment": amendment,
        "rows": int(marker["rows"]),
        "files": [f"{location}/{name}" for name in files],
        "location": location,
        "marker": f"{location}/{name}",
        "partial": bool(marker.get("partial", False)),
        "committed_at": marker.get("committed_at"),
    }


def add_commit(ledger: Ledger, location: str, marker: dict[str, Any]) -> None:
    """Put a commit's notification into the outbox; call it inside the transaction recording the commit.
    A commit already in the outbox (the same id) is not added again."""
    data = notification(location, marker)
    ledger.add_notification(data["id"], data["dataset"], data["task"], json.dumps(data, sort_keys=True))


def since(ledger: Ledger, committed_after: float = 0.0, after_seq: int = 0, limit: int = 10_000) -> list[Notification]:
    """The notifications recorded after `committed_after` (epoch seconds) with a seq above `after_seq`, in order."""
    return ledger.notifications_since(committed_after, after_seq, limit)


def parse_since(text: str, now: float | None = None) -> float:
    """`--since`: an ISO 8601 time (UTC unless it says otherwise: 2025-06-01, 2025-06-01T12:00:00+02:00),
    or how long ago (30m, 12h, 3d); epoch seconds. ConfigError for anything else."""
    now = time.time() if now is None else now
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match is not None:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since {text!r}: expected an ISO 8601 time (2025-06-01T12:00Z) or 30m, 12h, 3d") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def replay(ledger: Ledger, committed_after: float, url: str | None = None) -> list[Notification]:
    """The notifications recorded since `committed_after`, in order; published again to `url` if given
    (with their ids: consumers that saw them already drop them)."""
    notes = []
    after_seq = 0
    while batch := since(ledger, committed_after, after_seq):
        notes.extend(batch)
        after_seq = batch[-1].seq
    if url is not None and notes:
        with open_publisher(url) as publisher:
            for note in notes:
                publisher.send(note.body.encode(), headers(note))
    return notes


def pending(ledger: Ledger, limit: int = DRAIN_BATCH) -> list[Notification]:
    return ledger.unpublished(limit)


def headers(note: Notification) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "ei-notification-id": note.id,
        "ei-dataset": note.dataset,
        "ei-task": note.task,
    }


class Notifier:
    """Publishes the outbox to one broker destination from the service loop (`drain`); a broker that
    fails leaves the notifications pending, retried with backoff, and never stops the service.
    With no URL it only prunes the outbox."""

    def __init__(
        self,
        ledger: Ledger,
        url: str | None,
        keep_seconds: float | None,
        on_problem: Callable[[str], None] | None = None,
        connect: Callable[[str], Publisher] = open_publisher,
    ) -> None:
        self.ledger = ledger
        self.url = url
        self.keep_seconds = keep_seconds
        self.on_problem = on_problem or (lambda text: log.warning("%s", text))
        self._connect = connect
        self._publisher: Publisher | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._pruned_at = -PRUNE_EVERY
        self.published = 0

    def drain(self) -> int:
        """Publish what is pending (up to DRAIN_BATCH), oldest first; returns how many were published."""
        self._prune()
        if self.url is None or time.monotonic() < self._retry_at:
            return 0
        done = 0
        for note in pending(self.ledger):
            crashpoint("notify.before_publish")
            try:
                if self._publisher is None:
                    self._publisher = self._connect(self.url)
                self._publisher.send(note.body.encode(), headers(note))
            except Exception as exc:  # a broker or client-library failure: the notification stays pending
                self._failed(exc)
                break
            with self.ledger.transaction():
                self.ledger.mark_published(note.seq)
            self._failures = 0
            done += 1
        self.published += done
        return done

    def _failed(self, exc: Exception) -> None:
        self.close()
        self._failures += 1
        delay = compute_backoff(self._failures, base=RETRY_BASE, cap=RETRY_CAP)
        self._retry_at = time.monotonic() + delay
        reason = str(exc) if isinstance(exc, EventIndexError) else f"unexpected {type(exc).__name__}: {exc}"
        self.on_problem(f"notifications: publishing failed, pending ones are retried in {delay:.0f}s: {reason}")

    def _prune(self) -> None:
        if self.keep_seconds is None or time.monotonic() - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = time.monotonic()
        with self.ledger.transaction():
            gone = self.ledger.drop_notifications(time.time() - self.keep_seconds)
        if gone:
            log.info("notifications: %d older than %.0f days removed from the ledger", gone, self.keep_seconds / 86400)

    def close(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            try:
                publisher.close()
            except EventIndexError as exc:
                log.debug("closing the notification publisher: %s", exc)
