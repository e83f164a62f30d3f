"""Prometheus metrics of a running supersink (`run --metrics-port`, and `/metrics` of `--http-port`).

Every label takes a bounded set of values (message kinds and outcomes, task states, log sources):
no task, job or dataset is ever a label. What the service counts in memory (its `Counters`) is read
at each scrape; what the ledger knows (tasks by state, the quarantine, the last commit, pending
notifications) is read through a read-only connection of the scraping thread, never the service's.

- messages by kind and outcome: `MeteredConsumer` wraps the service's consumer and classifies each
  message when the service acks it (recorded, quarantined, late duplicate) or puts it back (a store
  failure). A recorded message's kind is what the service recorded; a refused one's is the kind its
  `ei-kind` header claims, `unknown` without one.
- broker errors and reconnects: `LogCounter` counts the transports' log records (warnings and errors:
  a lost connection, a send not confirmed, an ERROR frame; reconnections).

The series are those docs/operations.md lists: prometheus_client's `_created` series of the messages
counter and the load histogram (one per series, each the service's start) are left out.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from eventindex.pointers import KIND_NAMES
from eventindex.transport import Consumer, Message
from supersink.intake import Counters
from supersink.ledger import Ledger
from supersink.notify import Notifier

PREFIX = "ei_supersink"
#: The outcomes of a message.
OUTCOMES = ("recorded", "quarantined", "late-duplicate", "put-back")
#: Load durations (seconds): a small task loads in seconds, a big one in tens of minutes.
LOAD_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
#: Loggers whose warnings are broker errors (the transports), and what marks a reconnection.
BROKER_LOGGER = "eventindex.transport"
RECONNECTED = "reconnected"

#: Which Counters field counts a recorded message of each kind.
_RECORDED = {
    "chunks": "chunk",
    "manifests": "manifest",
    "event_messages": "events",
    "expectations": "task-expectation",
}


class LogCounter(logging.Handler):
    """Counts the broker transports' log records: warnings and errors, and reconnections."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.broker_errors = 0
        self.broker_reconnects = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.broker_errors += 1
        elif RECONNECTED in str(record.msg):
            self.broker_reconnects += 1

    def install(self) -> None:
        logger = logging.getLogger(BROKER_LOGGER)
        logger.addHandler(self)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)  # reconnections are INFO records; what is shown is the handlers' business

    def uninstall(self) -> None:
        """Stop counting (a service run in process, by a test, leaves no handler behind)."""
        logging.getLogger(BROKER_LOGGER).removeHandler(self)


class SinkMetrics:
    """The registry of one running supersink."""

    def __init__(
        self,
        ledger_path: Path,
        counters: Counters,
        states: Iterable[str],
        notifier: Notifier | None = None,
        logs: LogCounter | None = None,
    ) -> None:
        self.ledger_path = ledger_path
        self.counters = counters
        self.states = tuple(states)
        self.notifier = notifier
        self.logs = logs or LogCounter()
        self.started = time.time()
        #: messages put back because the store failed (the service counts them with its load failures)
        self.put_back = 0
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.messages = Counter(
            f"{PREFIX}_messages",
            "Broker messages handled, by pointer kind and outcome",
            ["kind", "outcome"],
            registry=None,
        )
        for kind in (*KIND_NAMES.values(), "unknown"):
            for outcome in OUTCOMES:
                self.messages.labels(kind, outcome)
        self.load_seconds = Histogram(
            f"{PREFIX}_load_duration_seconds",
            "Time a task's load took, from its claim to its commit marker",
            buckets=LOAD_BUCKETS,
            registry=None,
        )
        self.registry.register(_WithoutCreated(self.messages, self.load_seconds))
        self.registry.register(_Collector(self))

    def summary(self) -> dict[str, Any]:
        """The counters the status page shows."""
        c = self.counters
        return {
            "uptime_seconds": round(time.time() - self.started),
            "messages": c.messages,
            "quarantined": c.quarantined,
            "late_duplicates": c.after_commit,
            "chunks_verified": c.chunks_verified,
            "bytes_verified": c.bytes_verified,
            "tasks_committed": c.tasks_loaded,
            "events_loaded": c.events_loaded,
            "transient_failures": c.transient_failures,
            "broker_errors": self.logs.broker_errors,
            "broker_reconnects": self.logs.broker_reconnects,
            "notifications_published": None
            if self.notifier is None or self.notifier.url is None
            else self.notifier.published,
        }


class _WithoutCreated(Collector):
    """prometheus_client's own counters and histograms, without their `_created` samples."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            for family in collector.collect():
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
                yield family


class _Collector(Collector):
    """What is read at each scrape: the service's counters and the ledger's facts."""

    def __init__(self, metrics: SinkMetrics) -> None:
        self.m = metrics
        self._load_failures = 0
        self._lock = threading.Lock()  # scrapes run in the servers' threads, several at once

    def _monotonic_load_failures(self) -> int:
        """Load failures: the service's transient failures minus the messages put back (store errors).
        A message is counted put back (`release`) just before the service counts it a transient failure:
        a scrape in between would see one failure less, a decrease Prometheus takes for a counter reset
        (rate() and increase() jump). The count never goes below what was served already."""
        with self._lock:
            self._load_failures = max(self._load_failures, self.m.counters.transient_failures - self.m.put_back)
            return self._load_failures

    def collect(self) -> Iterator[Metric]:
        m, c = self.m, self.m.counters
        yield _counter("chunks_verified", "Chunk objects fetched from the store and verified", c.chunks_verified)
        yield _counter("verified_bytes", "Bytes of the chunk objects verified", c.bytes_verified)
        yield _counter("events_loaded", "Events committed to the warehouse", c.events_loaded)
        yield _counter("tasks_committed", "Tasks committed to the warehouse", c.tasks_loaded)
        yield _counter("redelivered_messages", "Messages the broker delivered again", c.redelivered)
        yield _counter("store_errors", "Messages put back because the object store failed", m.put_back)
        yield _counter(
            "load_failures", "Loads that failed (warehouse or store error), retried with backoff",
            self._monotonic_load_failures(),
        )  # fmt: skip
        yield _counter("broker_errors", "Broker connection losses and refusals", m.logs.broker_errors)
        yield _counter("broker_reconnects", "Broker consumer reconnections", m.logs.broker_reconnects)
        if m.notifier is not None and m.notifier.url is not None:  # with --notify, as notifications_pending
            yield _counter("notifications_published", "Commit notifications the broker confirmed", m.notifier.published)
        uptime = GaugeMetricFamily(f"{PREFIX}_start_time_seconds", "When this supersink started (Unix time)")
        uptime.add_metric([], m.started)
        yield uptime
        yield from self._ledger_facts()

    def _ledger_facts(self) -> Iterator[Metric]:
        m = self.m
        ledger = Ledger.read_only(m.ledger_path)
        try:
            counts = ledger.state_counts()
            held = ledger.held_count()
            last = ledger.last_commit_time()
            unsent = ledger.unpublished_count()
        finally:
            ledger.close()
        tasks = GaugeMetricFamily(f"{PREFIX}_tasks", "Tasks in the ledger, by state", labels=["state"])
        for state in sorted({*m.states, *counts}):
            tasks.add_metric([state], counts.get(state, 0))
        yield tasks
        yield _gauge("quarantined_messages", "Messages held in the quarantine", held)
        if last is not None:  # no commit yet: no sample, rather than a made-up age
            yield _gauge("last_commit_timestamp_seconds", "When the ledger recorded the last commit (Unix time)", last)
            yield _gauge(  # never negative, should the clock be set back
                "seconds_since_last_commit",
                "Seconds since the ledger recorded the last commit",
                max(0.0, time.time() - last),
            )
        if m.notifier is not None and m.notifier.url is not None:
            yield _gauge("notifications_pending", "Commit notifications not yet confirmed by the broker", unsent)
        size = sum(_size(Path(f"{m.ledger_path}{suffix}")) for suffix in ("", "-wal"))
        yield _gauge("ledger_bytes", "Size of the ledger database and its write-ahead log", size)


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", text, value=value)


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", text, value=value)


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


class MeteredConsumer(Consumer):
    """The service's consumer, counting each message by kind and outcome when it is acked or put back.

    A message's outcome is what its handling moved in the service's counters: the service handles each
    message it received before it receives the next, so the change from one `receive` to the next (or
    to the ack, for the last one of a batch) is that message's, even when a batch is acked together."""

    def __init__(self, inner: Consumer, metrics: SinkMetrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self._before: dict[str, int] = {}
        self._pending: Message | None = None  # received, its handling maybe not over yet
        self._outcomes: dict[int, tuple[str, str]] = {}  # by id(message): (kind, outcome), until acked

    def _snapshot(self) -> dict[str, int]:
        c = self.metrics.counters
        return {name: getattr(c, name) for name in (*_RECORDED, "quarantined", "after_commit")}

    def _close_pending(self) -> None:
        """The message received last has been handled: keep what its handling did."""
        message, self._pending = self._pending, None
        if message is None:
            return
        after = self._snapshot()
        moved = [name for name, value in after.items() if value != self._before.get(name, value)]
        claimed = message.headers.get("ei-kind", "")
        claimed = claimed if claimed in KIND_NAMES.values() else "unknown"
        if "quarantined" in moved:
            self._outcomes[id(message)] = (claimed, "quarantined")
        elif "after_commit" in moved:
            self._outcomes[id(message)] = (claimed, "late-duplicate")
        else:
            recorded = [_RECORDED[name] for name in moved if name in _RECORDED]
            self._outcomes[id(message)] = (recorded[0] if recorded else claimed, "recorded")

    def receive(self, timeout: float) -> Message | None:
        self._close_pending()
        message = self.inner.receive(timeout)
        if message is not None:
            self._before = self._snapshot()
            self._pending = message
        return message

    def ack(self, message: Message) -> None:
        self.inner.ack(message)
        if self._pending is message:
            self._close_pending()
        kind, outcome = self._outcomes.pop(id(message), ("unknown", "recorded"))
        self.metrics.messages.labels(kind, outcome).inc()

    def release(self, message: Message) -> None:
        self.inner.release(message)
        if self._pending is message:
            self._pending = None
        self._outcomes.pop(id(message), None)
        self.metrics.put_back += 1
        claimed = message.headers.get("ei-kind", "")
        self.metrics.messages.labels(claimed if claimed in KIND_NAMES.values() else "unknown", "put-back").inc()

    def close(self) -> None:
        self.inner.close()
