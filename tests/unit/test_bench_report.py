"""results.md of `ei-bench compare`: the targets section from the runs' figures."""

from __future__ import annotations

from typing import Any

from benchmarks.report import markdown, targets


def row(transport: str, producers: int, rate: float | None, status: str = "ok", **extra: Any) -> dict[str, Any]:
    return {
        "run": f"{transport}-p{producers}",
        "transport": transport,
        "producers": producers,
        "mode": "online",
        "status": status,
        "reason": "" if status == "ok" else "4 producer(s) failed",
        "events_loaded": 1000 if status == "ok" else 0,
        "events_per_second": rate,
        "broker_messages": 10 if transport == "store" else 2000,
        "broker_bytes": 2_000 if transport == "store" else 4_000_000,
        **extra,
    }


CONFIG = dict(broker="activemq", store="seaweedfs", tasks=1, jobs_per_task=2, events_per_job=500,
              events_per_run=1000, input="synthetic", producers=[1, 4])  # fmt: skip


def results(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "timestamp": "2026-11-24T00:00:00Z",
        "seconds": 1,
        "machine": {},
        "ceiling": {},
        "config": CONFIG,
        "runs": runs,
    }


def test_targets_compare_the_transports_at_the_top_producer_count() -> None:
    lines = targets(results([row("store", 1, 600), row("store", 4, 1000), row("mq", 1, 300), row("mq", 4, 100)]))
    assert "- broker bytes per event: 2,000x fewer with the object store (target 1,000x)" in lines
    assert "- broker messages per event: 200x fewer with the object store (target 100x)" in lines
    assert "- end-to-end events/s at 4 producers: 10.0x the broker-only one (target 5x)" in lines
    assert "- end-to-end, object store over broker only, where both finished: 2.0x at 1, 10.0x at 4" in lines


def test_a_broker_only_run_that_failed_is_named_not_divided_by() -> None:
    runs = [row("store", 1, 600), row("store", 4, 1000), row("mq", 1, 300), row("mq", 4, None, status="failed")]
    lines = targets(results(runs))
    assert any(line.startswith("- end-to-end events/s at 4 producers: 1,000 with the object store; the broker-only "
                               "transport did not finish (failed: 4 producer(s) failed") for line in lines)  # fmt: skip
    assert "- broker bytes per event: 2,000x fewer with the object store (target 1,000x)" in lines, "from 1 producer"
    table = markdown(results(runs))
    assert "## Against the targets" in table and "- mq-p4 (failed): 4 producer(s) failed" in table


def test_a_drain_run_reports_the_supersink_against_its_targets() -> None:
    drain = row("store", 4, None, mode="drain", supersink_events_per_cpu_second=150_000, ceiling_ratio=0.45,
                supersink_steady_events_per_cpu_second=180_000, steady_ceiling_ratio=0.55)  # fmt: skip
    lines = targets(results([drain]))
    assert lines == [
        "- supersink on a backlog, S3 chunk to committed Parquet: 150,000 events per CPU-second (target 200,000), "
        "45 % of the ceiling (target 60 %); warmed up (the second half of the tasks): 180,000, 55 %"
    ]
