"""Completeness: which attempt each job resolves to, whether a task is complete, what is missing.

1. chunk valid: recorded in the ledger after its object was fetched and verified.
2. attempt complete: its manifest is recorded with status ok, and every chunk it lists is valid
   with the same size, sha256 and event count.
3. job resolved: the highest complete attempt is chosen; every other attempt is superseded.
4. task complete: the expected number of jobs are resolved (no more jobs seen than expected) and,
   when an event total is expected, the chosen attempts add up to it.

An incomplete task is *damaged* when a job it waits for has a known problem: a listed chunk that
failed verification (at intake, or found changed or gone at load), or a message of the job that
was quarantined. It heals without a manual step when the object verifies again (restored: found at
the next rescan) or a new attempt of the job completes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from supersink.ledger import ChunkRecord, Ledger, TaskState


def committed_attempts(marker: dict[str, Any] | None) -> set[tuple[str, int]]:
    """The (job, attempt) pairs a task's commit accounted for, as the ledger keeps its marker (with
    the attempts of its amendments merged in): the loaded attempts and the ones they superseded."""
    if marker is None:
        return set()
    pairs = {(str(job), int(attempt)) for job, attempt in marker.get("attempts", {}).items()}
    pairs |= {(str(s["job"]), int(s["attempt"])) for s in marker.get("superseded", [])}
    return pairs


@dataclass
class AttemptView:
    job: str
    attempt: int
    events: int = 0
    has_manifest: bool = False
    complete: bool = False
    chunks_seen: int = 0
    chunks_listed: int = 0
    missing: list[str] = field(default_factory=list)
    #: what is known to be wrong with it (a subset of `missing`, with the object key and the reason)
    problems: list[str] = field(default_factory=list)

    def reference(self) -> dict[str, Any]:
        """How a commit marker (its `superseded` list) and `status` name this attempt."""
        return {"job": self.job, "attempt": self.attempt, "complete": self.complete}


@dataclass
class TaskView:
    task: str
    dataset: str | None
    state: TaskState
    detail: str
    expected_jobs: int | None
    expected_events: int | None
    attempts: dict[str, list[AttemptView]]
    chosen: dict[str, AttemptView]
    superseded: list[AttemptView]
    missing: list[str]
    failure: str | None
    #: known problems of the jobs the task waits for (chunk keys and reasons, quarantined messages)
    problems: list[str] = field(default_factory=list)

    @property
    def jobs_seen(self) -> int:
        return len(self.attempts)

    @property
    def events_chosen(self) -> int:
        return sum(a.events for a in self.chosen.values())

    @property
    def complete(self) -> bool:
        return self.failure is None and not self.missing


def evaluate(ledger: Ledger, task: str) -> TaskView:
    row = ledger.task(task)
    if row is None:
        raise KeyError(task)
    views: dict[tuple[str, int], AttemptView] = {}
    for job, attempt in ledger.seen_attempts(task):
        views[(job, attempt)] = AttemptView(job, attempt)
    valid = {(c.job, c.attempt, c.seq): (c.size, c.sha256, c.events) for c in ledger.chunks(task)}
    for (job, attempt, _), _unused in valid.items():
        views[(job, attempt)].chunks_seen += 1
    listed: dict[tuple[str, int], list[tuple[int, str, int, bytes, int, str | None]]] = defaultdict(list)
    for lc in ledger.listed_chunks(task):
        listed[(lc.job, lc.attempt)].append((lc.seq, lc.key, lc.size, lc.sha256, lc.events, lc.problem))
    for att in ledger.attempts(task):
        view = views[(att.job, att.attempt)]
        view.has_manifest = True
        view.events = att.events
        entries = listed[(att.job, att.attempt)]
        view.chunks_listed = len(entries)
        if att.status != "ok":
            view.missing.append(f"job {view.job} attempt {view.attempt}: the producer reported status {att.status}")
        for seq, key, size, sha, events, problem in entries:
            if valid.get((view.job, view.attempt, seq)) != (size, sha, events):
                why = f" ({problem})" if problem else ""
                view.missing.append(f"job {view.job} attempt {view.attempt}: chunk-{seq:06d} missing{why}")
                if problem:
                    view.problems.append(f"job {view.job} attempt {view.attempt}: chunk {key}: {problem}")
        view.complete = not view.missing
    for view in views.values():
        if not view.has_manifest:
            view.missing.append(
                f"job {view.job} attempt {view.attempt}: no manifest yet ({view.chunks_seen} chunks seen)"
            )

    by_job: dict[str, list[AttemptView]] = defaultdict(list)
    for view in sorted(views.values(), key=lambda v: (v.job, v.attempt)):
        by_job[view.job].append(view)
    chosen: dict[str, AttemptView] = {}
    superseded: list[AttemptView] = []
    missing: list[str] = []
    problems: list[str] = []
    for job, attempts in by_job.items():
        complete = [a for a in attempts if a.complete]
        if complete:
            chosen[job] = complete[-1]
            superseded += [a for a in attempts if a is not complete[-1]]
        else:
            missing += [m for a in attempts for m in a.missing]
            problems += [p for a in attempts for p in a.problems]
    for entry in ledger.quarantined_for(task):
        if entry.job is not None and entry.job not in chosen:
            where = f"job {entry.job} attempt {entry.attempt}"
            problems.append(f"{where}: message quarantined (#{entry.id}): {entry.reason}")

    expected_jobs, expected_events = row.expected_jobs, row.expected_events
    failure = None
    if expected_jobs is None:
        missing.append("no task expectation received yet (ei-supersink expect)")
    else:
        if len(by_job) > expected_jobs:
            failure = f"{len(by_job)} jobs seen, only {expected_jobs} expected"
        elif len(by_job) < expected_jobs:
            missing.append(f"{expected_jobs - len(by_job)} of {expected_jobs} expected jobs not seen yet")
        if not missing and failure is None and expected_events is not None:
            total = sum(a.events for a in chosen.values())
            if total != expected_events:
                failure = (
                    f"chosen attempts hold {total} events, {expected_events} expected ({total - expected_events:+d})"
                )
    return TaskView(
        task=task,
        dataset=row.dataset,
        state=row.state,
        detail=row.detail,
        expected_jobs=expected_jobs,
        expected_events=expected_events,
        attempts=dict(by_job),
        chosen=chosen,
        superseded=superseded,
        missing=missing,
        failure=failure,
        problems=problems,
    )


def chosen_chunks(ledger: Ledger, view: TaskView) -> list[ChunkRecord]:
    """The verified chunks of the chosen attempts, in (job, attempt, seq) order."""
    records: list[ChunkRecord] = []
    for job, chosen in sorted(view.chosen.items()):
        records += ledger.loadable_chunks(view.task, job, chosen.attempt)
    return records
