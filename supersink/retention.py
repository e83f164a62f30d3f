"""Retention: the object store is a transit store, the ledger stays bounded.

Some time after a task's commit (`transit`, default 3 days: time to look at a fresh task before
its sources go) the supersink

1. reads the task's commit marker and amendments from the warehouse: nothing is deleted unless
   they exist (a task without its marker is noted NOT_PURGED and tried again `retry` later; a warehouse
   or store that does not answer pauses the passes), and they say which attempts the commit accounted
   for (loaded or superseded);
2. deletes those attempts' chunk and manifest objects, only keys `<task>/<job>/<attempt>/...`
   under its own store (bucket and prefix), and their assembled chunks (broker-only transport);
   objects of any other attempt (one that arrived after the commit) are kept and reported;
3. compacts the ledger: the rows of those attempts go, the task row stays as the task's summary,
   with its marker, so that a late duplicate pointer is still recognised and ignored
   (supersink.intake). A partial load keeps its rows (late jobs may still be amended).

`forget` later (default 90 days) the summary itself goes; a pointer arriving after that finds
its object gone (quarantined, harmless) and the write-once commit marker prevents any second
load. Quarantine entries expire `quarantine` after they were received (default 30 days).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventindex.errors import EventIndexError, StoreUnavailableError, WarehouseUnavailableError
from eventindex.store import ObjectStore
from supersink.completeness import committed_attempts
from supersink.ledger import NOT_PURGED, Ledger, LedgerError, TaskRecord, TaskState
from supersink.warehouse import Warehouse

DAY = 86_400.0
#: Wall-clock seconds one retention pass may take (it runs inside the service's loop).
PASS_SECONDS = 2.0
#: Tasks fetched from the ledger at a time.
BATCH = 200
#: After a pass stopped on an unavailable store, the next one waits this long.
UNAVAILABLE_PAUSE = 60.0


@dataclass(frozen=True)
class RetentionPolicy:
    """Seconds after a commit before its transit data goes (None: never), after that before the
    task's summary goes, and after receipt before a quarantine entry goes; and how long after retention
    had to leave a task alone (NOT_PURGED: e.g. no commit marker on a warehouse that was unmounted) it tries
    that task again."""

    transit: float | None = 3 * DAY
    forget: float | None = 90 * DAY
    quarantine: float | None = 30 * DAY
    retry: float = 3600.0


@dataclass
class RetentionCounters:
    tasks_purged: int = 0
    objects_deleted: int = 0
    objects_kept: int = 0
    rows_compacted: int = 0
    tasks_forgotten: int = 0
    quarantine_expired: int = 0
    not_purged: list[str] = field(default_factory=list)


def split_keys(keys: list[str], task: str, accounted: set[tuple[str, int]]) -> tuple[list[str], list[str]]:
    """Keys under `<task>/` to delete (those of the accounted attempts) and to keep (all others)."""
    delete: list[str] = []
    keep: list[str] = []
    for key in keys:
        parts = key.split("/")
        ours = len(parts) == 4 and parts[0] == task and parts[2].isdigit()
        (delete if ours and (parts[1], int(parts[2])) in accounted else keep).append(key)
    return delete, keep


def _attempts_of(keys: list[str]) -> list[str]:
    found = sorted({tuple(k.split("/")[1:3]) for k in keys if k.count("/") == 3})
    return [f"job {job} attempt {attempt}" for job, attempt in found]


class Retention:
    def __init__(
        self,
        ledger: Ledger,
        *,
        store: ObjectStore,
        assembly: ObjectStore,
        warehouse: Warehouse,
        policy: RetentionPolicy,
        on_event: Callable[[str], None],
        on_problem: Callable[[str], None],
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.assembly = assembly
        self.warehouse = warehouse
        self.policy = policy
        self.on_event = on_event
        self.on_problem = on_problem
        self.counters = RetentionCounters()
        self._paused_until = 0.0

    def run(self, budget: float = PASS_SECONDS) -> None:
        """One pass: purge the tasks that are due (for at most `budget` seconds), forget old
        summaries, expire old quarantine entries."""
        started = time.monotonic()
        now = time.time()
        if self.policy.transit is not None and started >= self._paused_until:
            self._purge_due(now - self.policy.transit, now - self.policy.retry, started + budget)
        with self.ledger.transaction():
            if self.policy.forget is not None:
                forgotten = self.ledger.forget(now - self.policy.forget)
                self.counters.tasks_forgotten += len(forgotten)
            if self.policy.quarantine is not None:
                self.counters.quarantine_expired += self.ledger.expire_quarantine(now - self.policy.quarantine)

    def _purge_due(self, loaded_before: float, retry_before: float, deadline: float) -> None:
        while time.monotonic() < deadline:
            rows = self.ledger.due_for_purge(loaded_before, BATCH, retry_before)
            if not rows:
                return
            for row in rows:
                if time.monotonic() >= deadline:
                    return
                try:
                    self.purge(row)
                except (StoreUnavailableError, WarehouseUnavailableError) as exc:
                    self._paused_until = time.monotonic() + UNAVAILABLE_PAUSE
                    self.on_problem(f"retention paused {UNAVAILABLE_PAUSE:.0f}s: {exc}")
                    return
                except (LedgerError, sqlite3.Error):
                    raise
                except Exception as exc:  # this task's problem: report it, keep its data, go on
                    reason = str(exc) if isinstance(exc, EventIndexError) else f"unexpected {type(exc).__name__}: {exc}"
                    self._not_purged(row.task, reason)

    def _not_purged(self, task: str, reason: str) -> None:
        note = NOT_PURGED + reason
        with self.ledger.transaction():
            self.ledger.mark_purged(task, note)
        self.counters.not_purged.append(task)
        self.on_problem(f"task {task}: {note}")

    def purge(self, row: TaskRecord) -> None:
        """Delete a committed task's transit objects and compact its ledger rows (see the module doc)."""
        task = row.task
        committed = self.warehouse.committed(row.dataset, task) if row.dataset is not None else None
        if committed is None:
            self._not_purged(task, "the warehouse has no commit marker for it")
            return
        accounted = set(committed_attempts(committed.marker))
        for amendment in committed.amendments:
            accounted |= committed_attempts(amendment)
        delete, keep = split_keys(list(self.store.list(f"{task}/")), task, accounted)
        assembled, _ = split_keys(list(self.assembly.list(f"{task}/")), task, accounted)
        self.store.delete(delete)
        self.assembly.delete(assembled)
        note = None
        if keep:
            note = (
                f"kept {len(keep)} object(s) the commit did not account for (arrived after it, not loaded): "
                + ", ".join(_attempts_of(keep) or keep[:3])
            )
        with self.ledger.transaction():
            rows = self.ledger.compact(task, accounted) if row.state == TaskState.LOADED else 0
            self.ledger.mark_purged(task, note)
        self.counters.tasks_purged += 1
        self.counters.objects_deleted += len(delete) + len(assembled)
        self.counters.objects_kept += len(keep)
        self.counters.rows_compacted += rows
        self.on_event(f"task {task}: retention deleted {len(delete) + len(assembled)} transit object(s)")
        if note:
            self.on_problem(f"task {task}: {note}")

    def summary(self) -> dict[str, Any]:
        data = dict(self.counters.__dict__)
        data["not_purged"] = len(self.counters.not_purged)
        return data
