"""The supersink: intake of every message, then completeness, load and commit of each task.

Every message is recorded in the ledger (supersink.intake) before it is acked; then the task it
touched is settled: evaluated, and loaded when complete. Transient store failures leave the
message unacked (released for redelivery, after a backoff), so work stays pending, never dropped.

A failure tied to one task stops that task alone, in a named state with the reason (see STATES);
the others flow. Only the operator, the ledger failing, or the broker unreachable past its outage
budget end `run`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventindex.backoff import compute_backoff
from eventindex.errors import (
    AlreadyCommittedError,
    ConfigError,
    EventIndexError,
    NeedsAttentionError,
    StoreAccessError,
    StoreError,
)
from eventindex.store import ObjectStore
from eventindex.store.counting import CountingStore
from eventindex.transport import Consumer, Message
from supersink.amend import amend, ledger_marker
from supersink.completeness import TaskView, chosen_chunks, evaluate
from supersink.crashpoints import crashpoint
from supersink.fetch import ChunkUnusableError
from supersink.instance import loads_lock
from supersink.intake import Counters, Intake
from supersink.ledger import LOADED_STATES, Ledger, LedgerError, TaskRecord, TaskState
from supersink.loader import DEFAULT_LAYOUT, FileLayout, LoadPlan, load_task
from supersink.notify import Notifier, add_commit
from supersink.progress import LoadProgress
from supersink.reconcile import ReconcileReport, reconcile
from supersink.retention import Retention, RetentionPolicy
from supersink.warehouse import ClaimedElsewhereError, Warehouse

log = logging.getLogger(__name__)

RECEIVE_TIMEOUT = 0.5
SWEEP_SECONDS = 5.0
DEFAULT_RESCAN_SECONDS = 60.0
LOAD_RETRY_BASE = 5.0
LOAD_RETRY_CAP = 300.0
MAX_TRANSIENT_BACKOFF = 30.0
#: Group commit: the messages recorded in one ledger transaction (and acked after it) at most, and the
#: time the batch may take. A batch holds what is already waiting; a lone message is committed at once.
BATCH_MESSAGES = 100
BATCH_SECONDS = 0.05

#: Every state a task can be in, what it means (README "Operations" says how each is healed).
STATES = {
    TaskState.WAITING: "incomplete, nothing known to be wrong: jobs, manifests or chunks not arrived yet",
    TaskState.DAMAGED: "incomplete because a job it waits for has a bad or missing object or a quarantined message",
    TaskState.FAILED: "past its deadline, or inconsistent (more jobs than expected, event total differs)",
    TaskState.LOADING: "being loaded (a crash during a load is finished at the next start)",
    TaskState.LOAD_FAILED: "complete, but its load failed (warehouse or store error): retried with backoff",
    TaskState.CLAIMED_ELSEWHERE: "another supersink holds its load claim",
    TaskState.LOADED: "committed",
    TaskState.LOADED_PARTIAL: "committed by `load --force` with jobs missing",
}
#: States that need attention: `run --until-idle` ends with a non-zero code when a task is in one.
STUCK_STATES = (TaskState.DAMAGED, TaskState.FAILED, TaskState.LOAD_FAILED, TaskState.CLAIMED_ELSEWHERE)
MAX_DETAIL_ITEMS = 3
#: What `load` prints of a commit marker, and of an amendment.
LOAD_SUMMARY = ("task", "dataset", "rows", "partial", "missing")
AMEND_SUMMARY = ("task", "dataset", "amendment", "rows", "partial", "missing", "attempts")


@dataclass(frozen=True)
class StuckTask:
    task: str
    state: TaskState
    detail: str

    def line(self) -> str:
        return f"task {self.task} {self.state}: {self.detail}"


class TaskNotLoadableError(NeedsAttentionError):
    """`load` cannot load the task now: it is not complete (without --force), or nothing of it resolved."""


class Supersink:
    def __init__(
        self,
        ledger: Ledger,
        store: ObjectStore,
        warehouse: Warehouse,
        *,
        on_event: Callable[[str], None] | None = None,
        task_deadline: float | None = None,
        layout: FileLayout = DEFAULT_LAYOUT,
        rescan_seconds: float | None = DEFAULT_RESCAN_SECONDS,
        retention: RetentionPolicy | None = None,
        on_problem: Callable[[str], None] | None = None,
        notifier: Notifier | None = None,
        observe_load: Callable[[float], None] | None = None,
        wait_for_loads: bool = False,
    ) -> None:
        #: a one-shot command waits for the ledger's loads lock; the service tries it (supersink.instance)
        self.wait_for_loads = wait_for_loads
        #: publishes the commit notifications (supersink.notify) after each commit and at each sweep
        self.notifier = notifier
        #: told how long each load that committed took (the metrics' histogram)
        self.observe_load = observe_load
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
        #: errors an operator must see (logged as warnings: `--quiet` keeps them)
        self.on_problem = on_problem or (lambda text: log.warning("%s", text))
        self.intake = Intake(ledger, store, on_event=self.on_event, on_problem=self.on_problem)
        self.counters: Counters = self.intake.counters
        self.retention = (
            None
            if retention is None
            else Retention(
                ledger,
                store=store,
                assembly=self.intake.assembly,
                warehouse=warehouse,
                policy=retention,
                on_event=self.on_event,
                on_problem=self.on_problem,
            )
        )

    # ------------------------------------------------------------ completeness and load

    def settle(self, task: str) -> TaskView:
        """Re-evaluate a task; load it when complete. Returns the view after any load."""
        view = evaluate(self.ledger, task)
        if view.state in LOADED_STATES:
            return view
        if view.failure is not None:
            self._set_state(view, TaskState.FAILED, view.failure)
            return view
        if not view.complete:
            self._incomplete(view)
            return view
        self.load(view)
        return evaluate(self.ledger, task)

    def _incomplete(self, view: TaskView) -> None:
        if self.past_deadline(view.task):
            detail = f"not complete {self.task_deadline:g}s after it was first seen: " + "; ".join(view.missing)
            self._set_state(view, TaskState.FAILED, detail)
        elif view.problems:
            self._set_state(view, TaskState.DAMAGED, _listing(view.problems))
        else:
            self._set_state(view, TaskState.WAITING, _listing(view.missing))

    def _set_state(self, view: TaskView, state: TaskState, detail: str) -> None:
        """Record a task's state; a new state that needs attention is reported as a problem."""
        if view.state == state and view.detail == detail:
            return
        with self.ledger.transaction():
            self.ledger.set_state(view.task, state, detail)
        if state in STUCK_STATES:
            self.on_problem(f"task {view.task} {state}: {detail}")
        view.state, view.detail = state, detail

    def past_deadline(self, task: str) -> bool:
        if self.task_deadline is None:
            return False
        row = self.ledger.task(task)
        return row is not None and time.time() - row.first_seen > self.task_deadline

    def sweep(self) -> None:
        """Periodic look at the tasks not loaded yet.

        - An incomplete task is rescanned in the store (every `rescan_seconds`): manifests whose
          pointers were lost, or went to another supersink, are recorded as if they had arrived.
        - A task past its deadline is failed, naming what is missing (it still loads if it
          completes later).
        - A task another supersink claimed is looked at again: it may have been committed.
        - A damaged task's bad chunks are verified again at its rescan: restored objects heal it.
        - Retention, if configured: transit objects of tasks committed long enough ago are deleted.
        """
        now = time.monotonic()
        rows = self.ledger.open_tasks()
        open_tasks = {row.task for row in rows}
        for row in rows:
            task = row.task
            if row.state != TaskState.CLAIMED_ELSEWHERE and self._rescan_due(row, now):
                self._scanned[task] = now
                try:
                    found = reconcile(self.intake, prefix=f"{task}/")
                    healed = self.intake.recheck(task) if row.state == TaskState.DAMAGED else 0
                except StoreError as exc:
                    self.on_event(f"task {task}: rescan failed, will try again: {exc}")
                    continue
                except (LedgerError, sqlite3.Error):
                    raise
                except Exception as exc:  # isolation: whatever the store holds, the rescan is this task's
                    self.on_problem(f"task {task}: rescan failed, will try again: {_reason(exc)}")
                    continue
                if found.manifests_recorded:
                    self.on_event(f"task {task}: rescan found {found.manifests_recorded} unannounced manifest(s)")
                if healed:
                    self.on_event(f"task {task}: {healed} chunk(s) verify again")
            self.try_settle(task)
        for memory in (self._scanned, self._failures, self._retry_at):
            for task in [t for t in memory if t not in open_tasks]:
                del memory[task]
        if self.retention is not None:
            try:
                self.retention.run()
            except (LedgerError, sqlite3.Error):
                raise
            except Exception as exc:  # deleting nothing is safe: try again at the next sweep
                self.on_problem(f"retention pass failed, will try again: {_reason(exc)}")
        if self.notifier is not None:
            self.notifier.drain()

    def _rescan_due(self, row: TaskRecord, now: float) -> bool:
        """Every `rescan_seconds`, the first time once the task's pointers have had that long to arrive
        (counted from when the ledger first saw the task, so a task that waited through a restart is
        rescanned at once, and a task just announced is not fetched from the store behind its pointers)."""
        if self.rescan_seconds is None:
            return False
        last = self._scanned.get(row.task)
        if last is None:
            return time.time() - row.first_seen >= self.rescan_seconds
        return now - last >= self.rescan_seconds

    def force_load(self, task: str) -> dict[str, Any] | None:
        """Load what is there now: the resolved jobs' chosen attempts, marked partial if incomplete."""
        view = evaluate(self.ledger, task)
        if view.state in LOADED_STATES:
            raise AlreadyCommittedError(f"task {task} is already {view.state}")
        if view.dataset is None or not view.chosen:
            raise TaskNotLoadableError(f"task {task} has no resolved job to load")
        return self.load(view, partial=not view.complete)

    def _known(self, task: str) -> TaskRecord:
        """The task's record; ConfigError when the ledger does not know it (an operator's typo)."""
        record = self.ledger.task(task)
        if record is None:
            raise ConfigError(f"the ledger {self.ledger.path} knows no task {task}")
        return record

    def load_now(self, task: str, *, force: bool = False) -> dict[str, Any]:
        """`ei-supersink load`: settle a task now (`force`: load what is there, marked partial, when it is
        incomplete); returns its commit's summary, with whether it was loaded already. ConfigError for a
        task the ledger does not know, TaskNotLoadableError when the task is not loaded after this."""
        already = self._known(task).state in LOADED_STATES
        if not already and self.adopt_commit(task):
            # the warehouse holds its commit and the ledger does not know: a ledger restored from a backup
            # older than the commit (the task's objects may be gone by retention), or rebuilt after a loss
            already = True
        elif force and not already:
            self.force_load(task)
        else:
            self.settle(task)
        row = self.ledger.task(task)
        if row is None or row.state not in LOADED_STATES or row.marker is None:
            state, detail = (row.state, row.detail) if row is not None else ("unknown", "")
            hint = "" if force or state != TaskState.WAITING else " (use --force to load what is there)"
            raise TaskNotLoadableError(f"task {task} is {state}: {detail}{hint}")
        if already and row.dataset is not None and self.warehouse.read_marker(row.dataset, task) is None:
            raise self.warehouse.holds_no_commit(task, row.location)
        marker = row.marker
        return {**{k: marker.get(k) for k in LOAD_SUMMARY}, "already_loaded": already}

    def amend_now(self, task: str) -> dict[str, Any]:
        """`ei-supersink load --amend`: load a committed task's late jobs as its next amendment; returns
        the amendment's summary (NotLoadedError, NothingToAmendError: see supersink.amend)."""
        self._known(task)
        with loads_lock(self.ledger.path, wait=True):
            amendment = amend(
                self.ledger,
                self.warehouse,
                task=task,
                store=self.store,
                assembly=self.intake.assembly,
                owner=self.owner,
                layout=self.layout,
            )
        return {k: amendment[k] for k in AMEND_SUMMARY}

    def load(self, view: TaskView, partial: bool = False) -> dict[str, Any] | None:
        """Load a task; None when another supersink holds its claim, when a one-shot command of this one is
        loading (the task is looked at again later), or when a chunk turned out to be gone or changed (the
        task is then damaged, its state says which chunk)."""
        with loads_lock(self.ledger.path, wait=self.wait_for_loads) as held:
            if not held:
                self.on_event(f"task {view.task}: a one-shot `ei-supersink load` is loading; looked at again later")
                return None
            return self._load_locked(view, partial)

    def _load_locked(self, view: TaskView, partial: bool) -> dict[str, Any] | None:
        assert view.dataset is not None
        claimed_before = view.state == TaskState.CLAIMED_ELSEWHERE  # the ledger's state, as evaluate() read it
        with self.ledger.transaction():
            self.ledger.set_state(view.task, TaskState.LOADING, "partial" if partial else "")
        plan = LoadPlan(
            task=view.task,
            dataset=view.dataset,
            chunks=chosen_chunks(self.ledger, view),
            attempts={job: a.attempt for job, a in sorted(view.chosen.items())},
            superseded=[a.reference() for a in view.superseded],
            partial=partial,
            missing=tuple(view.missing),
            inputs=tuple(self.ledger.attempt_inputs(view.task, {j: a.attempt for j, a in view.chosen.items()})),
        )
        self.on_event(
            f"task {view.task}: loading {sum(c.events for c in plan.chunks):,} events "
            f"from {len(plan.chunks)} chunks of {len(plan.attempts)} jobs"
        )
        location = self.warehouse.location(view.dataset, view.task)
        try:
            progress = LoadProgress(
                view.task,
                total_events=sum(c.events for c in plan.chunks),
                rows_per_file=self.layout.rows_per_file,
                say=self.on_event,
            )
            marker = load_task(
                plan,
                store=self.store,
                assembly=self.intake.assembly,
                warehouse=self.warehouse,
                owner=self.owner,
                layout=self.layout,
                on_progress=progress,
                cache=self.intake.cache,
            )
            if self.observe_load is not None:
                self.observe_load(time.monotonic() - progress.started)
            self.on_event(f"task {view.task}: committed {marker['rows']:,} events to {location}")
        except ClaimedElsewhereError as exc:
            with self.ledger.transaction():
                self.ledger.set_state(view.task, TaskState.CLAIMED_ELSEWHERE, str(exc))
            if claimed_before:
                self.on_event(f"task {view.task}: standing down: {exc}")  # looked at again at every sweep
            else:  # a state that needs attention: a warning, as the README says, once
                self.on_problem(f"task {view.task} claimed-elsewhere: standing down: {exc}")
            return None
        except ChunkUnusableError as exc:
            self._chunk_unusable(view.task, exc)
            return None
        except AlreadyCommittedError:
            adopted = self._adopt(view.task, view.dataset, location)
            if adopted is None:
                raise
            return adopted
        self._record_commit(view.task, location, marker, [marker])
        return marker

    def adopt_commit(self, task: str) -> bool:
        """Record the warehouse's commit of a task the ledger has not loaded (a ledger rebuilt by `reconcile`
        after the commit: its expectation may be long gone); False when the warehouse has none."""
        row = self.ledger.task(task)
        if row is None or row.dataset is None or row.state in LOADED_STATES:
            return False
        return self._adopt(task, row.dataset, self.warehouse.location(row.dataset, task)) is not None

    def _adopt(self, task: str, dataset: str, location: str) -> dict[str, Any] | None:
        """Record the commit the warehouse holds for a task, its amendments merged in (as `amend` keeps it);
        None when the warehouse has no commit marker for it."""
        found = self.warehouse.committed(dataset, task)
        if found is None:
            return None
        marker = ledger_marker(found)
        self.on_event(f"task {task}: already committed in {location} ({marker.get('rows')} events)")
        self._record_commit(task, location, marker, [found.marker, *found.amendments])
        return marker

    def _record_commit(self, task: str, location: str, marker: dict[str, Any], commits: list[dict[str, Any]]) -> None:
        """Record a task as loaded with the ledger's view of its commit (`marker`), and the notifications of
        the `commits` (the marker and amendments) it is made of."""
        with self.ledger.transaction():
            self.ledger.mark_loaded(
                task,
                events=int(marker["rows"]),
                location=location,
                marker=marker,
                state=TaskState.LOADED_PARTIAL if marker.get("partial") else TaskState.LOADED,
            )
            for commit in commits:  # announced at least once, never before the commit
                add_commit(self.ledger, location, commit)
        self.counters.tasks_loaded += 1
        self.counters.events_loaded += int(marker["rows"])
        self.counters.cpu_at_last_commit = time.process_time()
        self.counters.commits.append((int(marker["rows"]), round(self.counters.cpu_at_last_commit, 3)))
        if self.notifier is not None:
            self.notifier.drain()

    def _chunk_unusable(self, task: str, exc: ChunkUnusableError) -> None:
        """A chunk verified at intake is gone or changed at load: as if it had failed at intake, its
        attempt is incomplete (a new attempt of the job, or the object restored, heals the task)."""
        row = self.ledger.chunk_by_key(task, exc.key)
        if row is None:
            raise exc  # not a chunk of this task's ledger: a load failure like any other
        with self.ledger.transaction():
            self.ledger.invalidate_chunk(task, row.job, row.attempt, row.seq, f"at load: {exc.reason}")
        self._incomplete(evaluate(self.ledger, task))

    def settle_all(self) -> None:
        """At start-up: finish loads a crash interrupted, and anything complete but not loaded."""
        for row in self.ledger.open_tasks():
            self.try_settle(row.task)

    def try_settle(self, task: str) -> None:
        """settle(), but whatever fails in it (the warehouse, the store, anything the task's data
        causes) puts the task alone into `load-failed` with the reason, retried with backoff, instead
        of stopping the service. Only the ledger failing propagates."""
        if time.monotonic() < self._retry_at.get(task, 0.0):
            return
        try:
            self.settle(task)
            self._failures.pop(task, None)
            self._retry_at.pop(task, None)
        except (LedgerError, sqlite3.Error):
            raise
        except Exception as exc:  # isolation: one task's failure, whatever it is, is that task's
            if not isinstance(exc, EventIndexError):
                log.debug("unexpected error loading task %s", task, exc_info=True)
            reason = _reason(exc)
            failures = self._failures[task] = self._failures.get(task, 0) + 1
            delay = compute_backoff(failures, base=LOAD_RETRY_BASE, cap=LOAD_RETRY_CAP)
            self._retry_at[task] = time.monotonic() + delay
            self.counters.transient_failures += 1
            with self.ledger.transaction():
                self.ledger.set_state(
                    task, TaskState.LOAD_FAILED, f"{reason} (failure {failures}, next try in {delay:.0f}s)"
                )
            self.on_problem(f"task {task} load-failed: {reason} (failure {failures}, next try in {delay:.0f}s)")

    def stuck(self) -> list[StuckTask]:
        """The tasks that need attention (STUCK_STATES), after a last look at those another supersink
        claimed (it may have committed them meanwhile)."""
        for row in self.ledger.open_tasks():
            if row.state == TaskState.CLAIMED_ELSEWHERE:
                self._retry_at.pop(row.task, None)
                self.try_settle(row.task)
        return [
            StuckTask(row.task, row.state, row.detail) for row in self.ledger.open_tasks() if row.state in STUCK_STATES
        ]

    # ------------------------------------------------------------ the loop

    def _record_batch(
        self, consumer: Consumer, first: Message, stop: threading.Event
    ) -> tuple[list[tuple[Message, str | None, bool]], tuple[StoreError, Message] | None]:
        """Record `first` and the messages already waiting behind it in one ledger transaction (group
        commit: one durable write for up to BATCH_MESSAGES messages, or BATCH_SECONDS of work), each
        message in a savepoint of its own. Returns, once committed, the messages recorded (or
        quarantined), each with its task and whether it may have completed it, and the message a store
        failure stopped at, if one did (its own writes undone). Nothing is acked here: the caller acks
        what the ledger now holds."""
        recorded: list[tuple[Message, str | None, bool]] = []
        deadline = time.monotonic() + BATCH_SECONDS
        message: Message | None = first
        with self.ledger.transaction():
            while message is not None:
                try:
                    task = self.intake.handle(message)
                except StoreError as exc:
                    return recorded, (exc, message)
                recorded.append((message, task, self.intake.may_complete))
                if len(recorded) >= BATCH_MESSAGES or time.monotonic() >= deadline or stop.is_set():
                    break
                message = consumer.receive(0)
        return recorded, None

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
            recorded, failed = self._record_batch(consumer, message, stop)
            for done, _, _ in recorded:
                crashpoint("intake.recorded")
                consumer.ack(done)
            backoff = 0.0
            if failed is not None:
                # Not the message's fault: give it back and wait; the work stays pending.
                exc, undone = failed
                consumer.release(undone)
                if isinstance(exc, StoreAccessError):
                    raise exc  # the store refuses us (credentials, certificate): every message would fail alike
                failures += 1
                self.counters.transient_failures += 1
                backoff = compute_backoff(failures, cap=MAX_TRANSIENT_BACKOFF)
                self.on_problem(f"store failure, message put back, retrying in {backoff:.1f}s: {exc}")
            else:
                failures = 0
            for _, task, may_complete in recorded:
                if task is None:
                    continue
                if may_complete:
                    dirty.discard(task)
                    self.try_settle(task)
                else:
                    dirty.add(task)  # re-evaluated when the queue pauses: keeps `status` current
            if backoff:
                stop.wait(backoff)
            idle_since = time.monotonic()
        return self.counters


def _reason(exc: Exception) -> str:
    """One line for an error: ours say what went wrong; anything else is named as unexpected."""
    text = str(exc) if isinstance(exc, EventIndexError) else f"unexpected {type(exc).__name__}: {exc}"
    return " ".join(text.split())


def _listing(items: list[str]) -> str:
    """The first few items of a list, and how many more there are."""
    text = "; ".join(items[:MAX_DETAIL_ITEMS])
    return text + (f" (and {len(items) - MAX_DETAIL_ITEMS} more)" if len(items) > MAX_DETAIL_ITEMS else "")


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


def reconcile_into(ledger: Ledger, store: ObjectStore, prefix: str, warehouse: Warehouse | None) -> ReconcileReport:
    """`ei-supersink reconcile`: record the manifests under `prefix` the ledger lacks; with a warehouse,
    also load the tasks they touched that are now complete."""
    if warehouse is None:
        return reconcile(Intake(ledger, store), prefix)
    sink = Supersink(ledger, store, warehouse, wait_for_loads=True)
    report = reconcile(sink.intake, prefix)  # the chunks it verifies stay in the intake's cache for their load
    for task in sorted(report.tasks):
        if not sink.adopt_commit(task):  # a ledger rebuilt after the commit: the warehouse says it is loaded
            sink.settle(task)
    return report


def run_summary(sink: Supersink, store: CountingStore, stuck: list[StuckTask]) -> str:
    """The JSON line `run` ends with: the counters, the store's traffic, the chunk cache and retention."""
    cache = sink.intake.cache
    retention = sink.retention.summary() if sink.retention is not None else {}
    return counters_json(
        sink.counters,
        store_requests=store.stats.requests,
        store_bytes=store.stats.bytes,
        store_deletes=store.stats.deletes,
        chunk_cache_hits=cache.hits,
        chunk_cache_misses=cache.misses,
        tasks_stuck=len(stuck),
        **{f"retention_{k}": v for k, v in retention.items()},
    )
