"""The supersink: intake of every message, then completeness, load and commit of each task.

Every message is recorded in the ledger (supersink.intake) before it is acked; then the task it
touched is settled: evaluated, and loaded when complete. Transient store failures leave the
message unacked (released for redelivery, after a backoff), so work stays pending, never dropped.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from eventindex.backoff import compute_backoff
from eventindex.errors import AlreadyCommittedError, EventIndexError, StoreError, WarehouseError
from eventindex.store import ObjectStore
from eventindex.transport import Consumer
from supersink.completeness import TaskView, chosen_chunks, evaluate
from supersink.intake import Counters, Intake
from supersink.ledger import Ledger
from supersink.loader import DEFAULT_LAYOUT, FileLayout, LoadPlan, load_task
from supersink.reconcile import reconcile
from supersink.warehouse import ClaimedElsewhereError, Warehouse

log = logging.getLogger(__name__)

RECEIVE_TIMEOUT = 0.5
SWEEP_SECONDS = 5.0
DEFAULT_RESCAN_SECONDS = 60.0
LOAD_RETRY_BASE = 5.0
LOAD_RETRY_CAP = 300.0
LOADED_STATES = ("loaded", "loaded-partial")
MAX_TRANSIENT_BACKOFF = 30.0


class TaskNotLoadableError(EventIndexError):
    """A forced load of a task with nothing to load."""


class Supersink:
    def __init__(
        self,
        ledger: Ledger,
        store: ObjectStore,
        warehouse: Warehouse,
        on_event: Callable[[str], None] | None = None,
        task_deadline: float | None = None,
        layout: FileLayout = DEFAULT_LAYOUT,
        rescan_seconds: float | None = DEFAULT_RESCAN_SECONDS,
    ) -> None:
        self.layout = layout
        self.rescan_seconds = rescan_seconds
        self._scanned: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self.task_deadline = task_deadline
        self.ledger = ledger
        self.owner = ledger.instance_id()
        self.store = store
        self.warehouse = warehouse
        self.on_event = on_event or (lambda text: log.info("%s", text))
        self.intake = Intake(ledger, store, self.on_event)
        self.counters: Counters = self.intake.counters

    # ------------------------------------------------------------ completeness and load

    def settle(self, task: str) -> TaskView:
        """Re-evaluate a task; load it when complete. Returns the view after any load."""
        view = evaluate(self.ledger, task)
        if view.state in LOADED_STATES:
            return view
        if view.failure is not None:
            if view.state != "failed" or view.detail != view.failure:
                with self.ledger.transaction():
                    self.ledger.set_state(task, "failed", view.failure)
                self.on_event(f"task {task} failed: {view.failure}")
                view.state, view.detail = "failed", view.failure
            return view
        if not view.complete:
            state, detail = "waiting", "; ".join(view.missing[:3])
            if self.past_deadline(task):
                state = "failed"
                detail = f"not complete {self.task_deadline:g}s after it was first seen: " + "; ".join(view.missing)
            if view.state != state or view.detail != detail:
                with self.ledger.transaction():
                    self.ledger.set_state(task, state, detail)
                if state == "failed":
                    self.on_event(f"task {task} failed: {detail}")
                view.state, view.detail = state, detail
            return view
        self.load(view)
        return evaluate(self.ledger, task)

    def past_deadline(self, task: str) -> bool:
        if self.task_deadline is None:
            return False
        row = self.ledger.task(task)
        return row is not None and time.time() - row["first_seen"] > self.task_deadline

    def sweep(self) -> None:
        """Periodic look at the tasks not loaded yet.

        - An incomplete task is rescanned in the store (every `rescan_seconds`): manifests whose
          pointers were lost, or went to another supersink, are recorded as if they had arrived.
        - A task past its deadline is failed, naming what is missing (it still loads if it
          completes later).
        - A task another supersink claimed is looked at again: it may have been committed.
        """
        now = time.monotonic()
        for row in self.ledger.query(
            f"SELECT task, state FROM tasks WHERE state NOT IN ({', '.join(repr(s) for s in LOADED_STATES)})"
        ):
            task = row["task"]
            if (
                row["state"] != "claimed-elsewhere"
                and self.rescan_seconds is not None
                and now - self._scanned.get(task, -math.inf) >= self.rescan_seconds
            ):
                self._scanned[task] = now
                try:
                    found = reconcile(self.intake, prefix=f"{task}/")
                except StoreError as exc:
                    self.on_event(f"task {task}: rescan failed, will try again: {exc}")
                    continue
                if found.manifests_recorded:
                    self.on_event(f"task {task}: rescan found {found.manifests_recorded} unannounced manifest(s)")
            self.try_settle(task)

    def force_load(self, task: str) -> dict[str, Any] | None:
        """Load what is there now: the resolved jobs' chosen attempts, marked partial if incomplete."""
        view = evaluate(self.ledger, task)
        if view.state in LOADED_STATES:
            raise AlreadyCommittedError(f"task {task} is already {view.state}")
        if view.dataset is None or not view.chosen:
            raise TaskNotLoadableError(f"task {task} has no resolved job to load")
        return self.load(view, partial=not view.complete)

    def load(self, view: TaskView, partial: bool = False) -> dict[str, Any] | None:
        """Load a task; None when another supersink holds its claim."""
        assert view.dataset is not None
        with self.ledger.transaction():
            self.ledger.set_state(view.task, "loading", "partial" if partial else "")
        plan = LoadPlan(
            task=view.task,
            dataset=view.dataset,
            chunks=chosen_chunks(self.ledger, view),
            attempts={job: a.attempt for job, a in sorted(view.chosen.items())},
            superseded=[{"job": a.job, "attempt": a.attempt, "complete": a.complete} for a in view.superseded],
            partial=partial,
            missing=tuple(view.missing),
        )
        self.on_event(
            f"task {view.task}: loading {sum(c.events for c in plan.chunks):,} events "
            f"from {len(plan.chunks)} chunks of {len(plan.attempts)} jobs"
        )
        location = self.warehouse.location(view.dataset, view.task)
        try:
            marker = load_task(
                plan, self.store, self.intake.spool, self.warehouse, self.owner, self.layout, cache=self.intake.cache
            )
            self.on_event(f"task {view.task}: committed {marker['rows']:,} events to {location}")
        except ClaimedElsewhereError as exc:
            with self.ledger.transaction():
                self.ledger.set_state(view.task, "claimed-elsewhere", str(exc))
            self.on_event(f"task {view.task}: standing down: {exc}")
            return None
        except AlreadyCommittedError:
            existing = self.warehouse.read_marker(view.dataset, view.task)
            if existing is None:
                raise
            marker = existing
            self.on_event(f"task {view.task}: already committed in {location} ({marker.get('rows')} events)")
        with self.ledger.transaction():
            self.ledger.mark_loaded(
                view.task,
                int(marker["rows"]),
                location,
                marker,
                "loaded-partial" if marker.get("partial") else "loaded",
            )
        self.counters.tasks_loaded += 1
        self.counters.events_loaded += int(marker["rows"])
        self.counters.cpu_at_last_commit = time.process_time()
        self.counters.commits.append((int(marker["rows"]), round(self.counters.cpu_at_last_commit, 3)))
        return marker

    def settle_all(self) -> None:
        """At start-up: finish loads a crash interrupted, and anything complete but not loaded."""
        for row in self.ledger.tasks():
            if row["state"] not in LOADED_STATES:
                self.try_settle(row["task"])

    def try_settle(self, task: str) -> None:
        """settle(), but a store or warehouse failure postpones the task (retried with backoff) instead
        of stopping the service."""
        if time.monotonic() < self._retry_at.get(task, 0.0):
            return
        try:
            self.settle(task)
            self._failures.pop(task, None)
            self._retry_at.pop(task, None)
        except (StoreError, WarehouseError) as exc:
            failures = self._failures[task] = self._failures.get(task, 0) + 1
            delay = compute_backoff(failures, base=LOAD_RETRY_BASE, cap=LOAD_RETRY_CAP)
            self._retry_at[task] = time.monotonic() + delay
            self.counters.transient_failures += 1
            with self.ledger.transaction():
                self.ledger.set_state(task, "waiting", f"load postponed (failure {failures}): {exc}")
            self.on_event(f"task {task}: load postponed {delay:.0f}s after failure {failures}: {exc}")

    # ------------------------------------------------------------ the loop

    def run(self, consumer: Consumer, stop: threading.Event, until_idle: float | None = None) -> Counters:
        """Consume until `stop` is set, or until `until_idle` seconds pass with nothing to do."""
        self.settle_all()
        idle_since = time.monotonic()
        next_sweep = idle_since
        failures = 0
        dirty: set[str] = set()
        while not stop.is_set():
            if time.monotonic() >= next_sweep:
                self.sweep()
                next_sweep = time.monotonic() + SWEEP_SECONDS
            message = consumer.receive(RECEIVE_TIMEOUT)
            if message is None:
                while dirty:
                    self.try_settle(dirty.pop())
                if until_idle is not None and time.monotonic() - idle_since >= until_idle:
                    break
                continue
            idle_since = time.monotonic()
            if self.counters.cpu_at_first_message is None:
                self.counters.cpu_at_first_message = time.process_time()
            try:
                task = self.intake.handle(message)
            except StoreError as exc:
                # Not the message's fault: give it back and wait; the work stays pending.
                consumer.release(message)
                failures += 1
                self.counters.transient_failures += 1
                delay = compute_backoff(failures, cap=MAX_TRANSIENT_BACKOFF)
                self.on_event(f"store failure, message put back, retrying in {delay:.1f}s: {exc}")
                stop.wait(delay)
                idle_since = time.monotonic()
                continue
            failures = 0
            consumer.ack(message)
            if task is not None:
                if self.intake.may_complete:
                    dirty.discard(task)
                    self.try_settle(task)
                else:
                    dirty.add(task)  # re-evaluated when the queue pauses: keeps `status` current
            idle_since = time.monotonic()
        return self.counters


def counters_json(counters: Counters, **extra: int) -> str:
    data: dict[str, Any] = dict(counters.__dict__)
    data["seconds"] = round(time.monotonic() - data.pop("started"), 3)
    del data["cpu_at_first_message"], data["cpu_at_last_commit"], data["commits"]
    data["commits"] = [list(commit) for commit in counters.commits]
    busy = counters.busy_cpu_seconds
    data["busy_cpu_seconds"] = None if busy is None else round(busy, 3)
    data["cpu_seconds"] = round(time.process_time(), 3)
    data.update(extra)
    return json.dumps(data)
