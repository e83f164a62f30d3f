"""The ledger's cheap test of whether a task may be complete (or failed) now, which spares a full
evaluation after every manifest of a task still short of jobs."""

from __future__ import annotations

from pathlib import Path

from supersink.ledger import Ledger


def _manifest(ledger: Ledger, job: str, attempt: int = 1) -> None:
    ledger.see_job("t", job, attempt)
    ledger.record_attempt(
        "t", job, attempt, dataset="d", manifest_key=f"t/{job}/{attempt}/manifest.eim", manifest_sha256=bytes(32),
        events=10, status="ok", producer_version="test", end_time_ms=0, listed=[],
    )  # fmt: skip


def test_a_task_may_complete_once_as_many_jobs_as_expected_have_a_manifest(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    with ledger.transaction():
        assert not ledger.could_complete("t"), "an unknown task"
        ledger.touch_task("t", "d")
        _manifest(ledger, "j1")
        _manifest(ledger, "j2")
        assert not ledger.could_complete("t"), "no expectation yet"
        ledger.set_expectation("t", 3, None)
        assert not ledger.could_complete("t"), "2 of 3 jobs have a manifest"
        _manifest(ledger, "j2", attempt=2)
        ledger.see_job("t", "j3", 1)
        assert not ledger.could_complete("t"), "a retry and a job without a manifest count for nothing"
        _manifest(ledger, "j3")
        assert ledger.could_complete("t")
    ledger.close()


def test_a_task_may_have_failed_once_more_jobs_than_expected_were_seen(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    with ledger.transaction():
        ledger.set_expectation("t", 1, None)
        ledger.see_job("t", "j1", 1)
        assert not ledger.could_complete("t")
        ledger.see_job("t", "j2", 1)  # chunks of a second job, no manifest anywhere: too many jobs
        assert ledger.could_complete("t")
    ledger.close()
