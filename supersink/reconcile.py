"""`ei-supersink reconcile`: bring the ledger up to date from the manifests in the object store.

The store is the source of truth. A manifest the ledger lacks (its pointer was lost by the
broker, or the ledger was rebuilt) is fetched, verified and recorded, with the chunks it lists,
exactly as if its pointer had arrived. A manifest the ledger has is not fetched again: objects are
write-once, so its key names the bytes recorded (the service rescans incomplete tasks this way
every minute, and a task of thousands of jobs would otherwise cost thousands of GETs each time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventindex.errors import CodecError, ObjectNotFoundError
from supersink.fetch import fetch_manifest
from supersink.intake import Intake, Rejected

MANIFEST_NAME = "manifest.eim"


@dataclass
class ReconcileReport:
    manifests_seen: int = 0
    manifests_recorded: int = 0
    already_known: int = 0
    problems: list[str] = field(default_factory=list)
    tasks: set[str] = field(default_factory=set)

    def summary(self) -> dict[str, Any]:
        """What `reconcile` prints: the counts, and the tasks it recorded manifests of."""
        return {
            "manifests_seen": self.manifests_seen,
            "manifests_recorded": self.manifests_recorded,
            "already_known": self.already_known,
            "problems": len(self.problems),
            "tasks": sorted(self.tasks),
        }


def reconcile(sink: Intake, prefix: str = "") -> ReconcileReport:
    report = ReconcileReport()
    for key in sink.store.list(prefix):
        if not key.endswith("/" + MANIFEST_NAME):
            continue
        report.manifests_seen += 1
        parts = key.split("/")
        if len(parts) != 4 or not parts[2].isdigit():
            report.problems.append(f"{key}: not a task/job/attempt/manifest.eim key")
            continue
        task, job, attempt = parts[0], parts[1], int(parts[2])
        if sink.ledger.attempt(task, job, attempt) is not None or sink.accounted_for(task, job, attempt) is not None:
            report.already_known += 1  # in the ledger, or accounted for by the task's commit (its rows compacted)
            continue
        try:
            manifest, digest = fetch_manifest(sink.store, key, None, None)
        except (CodecError, ObjectNotFoundError) as exc:
            report.problems.append(f"{key}: {exc}")
            continue
        try:
            with sink.ledger.transaction():
                sink.record_manifest(manifest, key, digest)
        except Rejected as rejected:
            report.problems.append(rejected.reason)
            continue
        report.manifests_recorded += 1
        report.tasks.add(manifest.task)
        sink.on_event(f"reconcile: recorded {key} ({manifest.total_events:,} events)")
    return report
