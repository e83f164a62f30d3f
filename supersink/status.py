"""`ei-supersink status`: each task's state and why (what it waits for, what is wrong with it), what was
chosen, superseded and quarantined, and what retention did with it."""

from __future__ import annotations

import time
from typing import Any

from supersink.amend import late
from supersink.completeness import evaluate
from supersink.ledger import LOADED_STATES, Ledger, TaskState

MAX_LISTED = 50
#: States whose reason is the task's `detail` (a waiting task's are its missing items, a damaged
#: task's its problems, both listed in full).
REASONED_STATES = (TaskState.FAILED, TaskState.LOAD_FAILED, TaskState.CLAIMED_ELSEWHERE)


def task_status(ledger: Ledger, task: str) -> dict[str, Any]:
    view = evaluate(ledger, task)
    row = ledger.task(task)
    assert row is not None
    marker = row.marker
    after = late(view, marker) if marker is not None else None
    late_attempts = [{"job": a.job, "attempt": a.attempt} for a in after.newer_attempts] if after else []
    late_jobs = [{"job": a.job, "attempt": a.attempt, "events": a.events} for a in after.jobs.values()] if after else []
    chosen = {job: a.attempt for job, a in sorted(view.chosen.items())}
    events = view.events_chosen
    superseded = [a.reference() for a in view.superseded]
    # a loaded task is what its commit says: its rows may be compacted away (retention), and attempts that came
    # after the commit (late_attempts) or a job rerun after retention would make the view choose otherwise
    loaded = row.state == TaskState.LOADED and marker is not None
    if loaded:
        assert marker is not None
        chosen = {str(j): int(a) for j, a in sorted(marker.get("attempts", {}).items())}
        events = int(row.events_loaded or 0)
        superseded = [
            {"job": str(s["job"]), "attempt": int(s["attempt"]), "complete": bool(s.get("complete", True))}
            for s in marker.get("superseded", [])
        ]
    return {
        "task": task,
        "dataset": view.dataset,
        "state": view.state,
        "detail": view.detail,
        "expected_jobs": view.expected_jobs,
        "expected_events": view.expected_events,
        "jobs_seen": max(view.jobs_seen, len(chosen)),
        "jobs_resolved": len(chosen),
        "events": events,
        "events_loaded": row.events_loaded,
        "loaded_at": row.loaded_at,
        "first_seen": row.first_seen,
        "last_job_end_ms": ledger.last_job_end_ms(task),
        "location": row.location,
        "chosen": chosen,
        "superseded": superseded,
        "late_attempts": late_attempts,
        "late_jobs": late_jobs,
        # a loaded task's rows may be gone: what its view would call missing is what was loaded
        "missing": [] if loaded else view.missing[:MAX_LISTED],
        "missing_total": 0 if loaded else len(view.missing),
        "failure": None if loaded else view.failure,
        "problems": view.problems[:MAX_LISTED] if view.state not in LOADED_STATES else [],
        "purged_at": row.purged_at,
        "purge_note": row.purge_note,
        "duplicates": (marker or {}).get("duplicates", {"count": 0, "examples": []}),
        "partial": bool((marker or {}).get("partial", False)),
        "quarantined": ledger.held_count(task),
    }


def status(ledger: Ledger) -> dict[str, Any]:
    tasks = [task_status(ledger, row.task) for row in ledger.tasks()]
    return {"tasks": tasks, "quarantined": ledger.held_count()}


def render(report: dict[str, Any]) -> str:
    lines = []
    for t in report["tasks"]:
        expected = "?" if t["expected_jobs"] is None else str(t["expected_jobs"])
        lines.append(
            f"{t['task']} [{t['dataset'] or '-'}] {t['state'].upper()}: jobs {t['jobs_resolved']}/{expected} resolved"
            f" ({t['jobs_seen']} seen), {t['events']:,} events"
            + (f", {t['events_loaded']:,} loaded -> {t['location']}" if t["events_loaded"] is not None else "")
        )
        if t["state"] in REASONED_STATES and t["detail"] and t["detail"] != t["failure"]:
            lines.append(f"  reason: {t['detail']}")
        for problem in t["problems"]:
            lines.append(f"  problem: {problem}")
        if t["failure"]:
            lines.append(f"  failed: {t['failure']}")
        for m in t["missing"]:
            lines.append(f"  missing: {m}")
        if t["missing_total"] > len(t["missing"]):
            lines.append(f"  ... and {t['missing_total'] - len(t['missing'])} more missing")
        for s in t["superseded"]:
            lines.append(
                f"  superseded: job {s['job']} attempt {s['attempt']}{'' if s['complete'] else ' (incomplete)'}"
            )
        for s in t["late_attempts"]:
            lines.append(f"  late (after load, ignored): job {s['job']} attempt {s['attempt']}")
        for s in t["late_jobs"]:
            lines.append(
                f"  late job (not loaded; `ei-supersink load --task {t['task']} --amend`): job {s['job']} attempt"
                f" {s['attempt']}, {s['events']:,} events"
            )
        if t["duplicates"]["count"]:
            lines.append(f"  duplicates: {t['duplicates']['count']} (run, event) pairs loaded once")
        if t["quarantined"]:
            lines.append(f"  quarantined messages: {t['quarantined']}")
        if t["purged_at"] is not None:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t["purged_at"]))
            done = "transit objects deleted" + (", ledger rows compacted" if t["state"] == TaskState.LOADED else "")
            lines.append(f"  retention ({when}): {t['purge_note'] or done}")
    if not report["tasks"]:
        lines.append("no tasks")
    lines.append(f"quarantine: {report['quarantined']} held")
    return "\n".join(lines)
