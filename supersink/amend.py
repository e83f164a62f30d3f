"""Late data after a partial load: jobs that complete after `load --force` are added as amendments.

A partial commit lists the attempts it loaded. A job that completes later (or a task that failed
its deadline and was force-loaded, then completed) is *late*: `status` lists it, and
`ei-supersink load --task T --amend` writes its events as the task's next amendment
(`part-aNNNN-*.parquet` and `_AMEND-NNNN.json`, write-once, see supersink.warehouse). Events
already committed are not written again (they are listed as duplicates), so a reader who takes a
task's marker and amendments together sees every event once. A newer attempt of a job that was
loaded already cannot be amended (its events are in the warehouse): it is reported, not loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from eventindex.errors import NeedsAttentionError, NothingToDoError
from eventindex.store import ObjectStore
from eventindex.warehouse import CommittedTask
from supersink.completeness import AttemptView, TaskView, chosen_chunks, evaluate
from supersink.ledger import Ledger, TaskState
from supersink.loader import DEFAULT_LAYOUT, FileLayout, LoadPlan, amend_task
from supersink.notify import add_commit
from supersink.warehouse import ClaimedElsewhereError, Warehouse


class NothingToAmendError(NothingToDoError):
    """An amendment was asked for a loaded task that has no late job (not an error: exit 0)."""


class NotLoadedError(NeedsAttentionError):
    """An amendment was asked for a task that has no commit to amend (it needs `load` first: exit 3)."""


class AmendmentClaimedError(NeedsAttentionError):
    """Another supersink holds the claim of the amendment this one would write (exit 3)."""


def loaded_attempts(marker: dict[str, Any] | None) -> dict[str, int]:
    """The attempt of each job a task's commit (and its amendments, as the ledger keeps them) holds."""
    return {str(job): int(attempt) for job, attempt in (marker or {}).get("attempts", {}).items()}


@dataclass(frozen=True)
class Late:
    """What arrived after a task's commit."""

    jobs: dict[str, AttemptView]  # complete jobs the commit does not hold: amendable
    newer_attempts: list[AttemptView]  # newer complete attempts of jobs already loaded: reported only

    @property
    def events(self) -> int:
        return sum(a.events for a in self.jobs.values())


def late(view: TaskView, marker: dict[str, Any] | None) -> Late:
    loaded = loaded_attempts(marker)
    jobs = {job: a for job, a in sorted(view.chosen.items()) if job not in loaded}
    newer = [
        a
        for attempts in view.attempts.values()
        for a in attempts
        if a.complete and a.job in loaded and a.attempt > loaded[a.job]
    ]
    return Late(jobs, newer)


def with_amendment(marker: dict[str, Any], amendment: dict[str, Any]) -> dict[str, Any]:
    """The ledger's view of a commit after an amendment: every attempt loaded, rows, partial or not."""
    combined = dict(marker)
    combined["attempts"] = {**loaded_attempts(marker), **loaded_attempts(amendment)}
    combined["rows"] = int(marker.get("rows", 0)) + int(amendment["rows"])
    combined["partial"] = amendment["partial"]
    combined["missing"] = amendment["missing"]
    combined["amendments"] = [*marker.get("amendments", []), amendment["amendment"]]
    # the attempts the amendment's late jobs superseded, so that status and retention account for them
    combined["superseded"] = [*marker.get("superseded", []), *amendment.get("superseded", [])]
    return combined


def ledger_marker(committed: CommittedTask) -> dict[str, Any]:
    """The ledger's view of a commit the warehouse holds: its marker with every amendment merged in."""
    marker = committed.marker
    for amendment in committed.amendments:
        marker = with_amendment(marker, amendment)
    return marker


def _record(
    ledger: Ledger, warehouse: Warehouse, view: TaskView, marker: dict[str, Any], amendments: list[dict[str, Any]]
) -> None:
    """Record the ledger's view of the commit, and the notifications of the `amendments` it adds."""
    assert view.dataset is not None
    location = warehouse.location(view.dataset, view.task)
    with ledger.transaction():
        ledger.mark_loaded(
            view.task,
            events=int(marker["rows"]),
            location=location,
            marker=marker,
            state=TaskState.LOADED_PARTIAL if marker.get("partial") else TaskState.LOADED,
        )
        for amendment in amendments:
            add_commit(ledger, location, amendment)


def amend(
    ledger: Ledger,
    warehouse: Warehouse,
    *,
    task: str,
    store: ObjectStore,
    assembly: ObjectStore,
    owner: str,
    layout: FileLayout = DEFAULT_LAYOUT,
) -> dict[str, Any]:
    """Load a committed task's late jobs as its next amendment; returns the amendment.

    Amendments the warehouse holds but the ledger does not know (a crash after the amendment's
    commit) are adopted first. NotLoadedError when the task is not loaded, NothingToAmendError when
    nothing is late.
    """
    view = evaluate(ledger, task)
    row = ledger.task(task)
    marker = row.marker if row is not None else None
    if marker is None or view.dataset is None:
        raise NotLoadedError(f"task {task} is not loaded yet: use `ei-supersink load` (with --force if partial)")
    committed = warehouse.committed(view.dataset, task)
    if committed is None:  # the wrong warehouse, or its marker deleted or not restored: nothing to add to
        raise warehouse.holds_no_commit(task, row.location if row is not None else None)
    known = set(marker.get("amendments", []))
    adopted = []
    for earlier in committed.amendments:
        if earlier.get("amendment") not in known:
            marker = with_amendment(marker, earlier)
            adopted.append(earlier)
    if adopted:
        _record(ledger, warehouse, view, marker, adopted)
    pending = late(view, marker)
    if not pending.jobs:
        raise NothingToAmendError(f"task {task}: no late job to amend")
    plan = LoadPlan(
        task=task,
        dataset=view.dataset,
        chunks=chosen_chunks(ledger, replace(view, chosen=pending.jobs)),
        attempts={job: a.attempt for job, a in pending.jobs.items()},
        superseded=[a.reference() for a in view.superseded if a.job in pending.jobs],
        partial=not view.complete,
        missing=tuple(view.missing),
        inputs=tuple(ledger.attempt_inputs(task, {job: a.attempt for job, a in pending.jobs.items()})),
    )
    try:
        amendment = amend_task(plan, store=store, assembly=assembly, warehouse=warehouse, owner=owner, layout=layout)
    except ClaimedElsewhereError as exc:
        number = len(committed.amendments) + 1
        raise AmendmentClaimedError(
            f"{exc}; once that supersink is certainly not running, delete "
            f"{warehouse.claim_path(view.dataset, task, number)} (only if there is no _AMEND-{number:04d}.json "
            "next to the task's _SUCCESS.json) and amend again"
        ) from exc
    _record(ledger, warehouse, view, with_amendment(marker, amendment), [amendment])
    return amendment
