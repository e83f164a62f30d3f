"""results.md of `ei-bench compare`: the targets section from the runs' figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import report
from benchmarks.cli import build_parser, config_from
from benchmarks.harness import Run, _above_idle, _central_cost
from benchmarks.processes import JobOutcome
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


def test_targets_compare_the_transports_and_report_end_to_end_without_a_target() -> None:
    lines = targets(results([row("store", 1, 600), row("store", 4, 1000), row("mq", 1, 300), row("mq", 4, 100)]))
    assert "- broker bytes per event: 2,000x fewer with the object store (target 1,000x)" in lines
    assert "- broker messages per event: 200x fewer with the object store (target 100x)" in lines
    assert not any("target 5x" in line for line in lines), "the end-to-end 5x target is retired"
    assert any(
        line.startswith("- end-to-end events/s, object store over broker only, where both finished: 2.0x at 1, "
                        "10.0x at 4 (report only")
        for line in lines
    )  # fmt: skip


def test_a_broker_only_run_that_failed_is_named_not_divided_by() -> None:
    runs = [row("store", 1, 600), row("store", 4, 1000), row("mq", 1, 300), row("mq", 4, None, status="failed")]
    lines = targets(results(runs))
    assert any("2.0x at 1 (report only" in line for line in lines) and not any("at 4 (" in line for line in lines)
    assert "- broker bytes per event: 2,000x fewer with the object store (target 1,000x)" in lines, "from 1 producer"
    table = markdown(results(runs))
    assert "## Against the targets" in table and "- mq-p4 (failed): 4 producer(s) failed" in table


def test_a_drain_run_reports_the_supersink_against_its_targets() -> None:
    drain = row("store", 4, None, mode="drain", supersink_events_per_cpu_second=150_000, ceiling_ratio=0.45,
                supersink_steady_events_per_cpu_second=180_000, steady_ceiling_ratio=0.55)  # fmt: skip
    lines = targets(results([drain]))
    assert lines == [
        "- supersink on a backlog, S3 chunk to committed Parquet: 150,000 events per CPU-second (target 200,000): "
        "**missed**; 45 % of the ceiling (target 70 %): **missed**; warmed up (the second half of the tasks): "
        "180,000, 55 %"
    ]
    fast = {**drain, "supersink_events_per_cpu_second": 250_000, "ceiling_ratio": 0.71}
    assert targets(results([fast]))[0].startswith(
        "- supersink on a backlog, S3 chunk to committed Parquet: 250,000 events per CPU-second (target 200,000): "
        "met; 71 % of the ceiling (target 70 %): met"
    )


def central(transport: str, producers: int, broker: float, store: float, sink: float, **extra: Any) -> dict[str, Any]:
    r = row(transport, producers, 100, events_loaded=128_000, **extra)
    r.update(_central_cost(r, sink, broker, store))
    return r


def test_central_cost_adds_the_three_services() -> None:
    r = central("store", 4, broker=0.5, store=0.25, sink=0.25)
    assert r["central_cpu_seconds"] == 1.0
    assert r["central_cpu_seconds_by_service"] == {"broker": 0.5, "store_server": 0.25, "supersink": 0.25}
    assert r["events_per_central_cpu_second"] == 128_000
    assert r["central_cpu_seconds_per_1000_events"] == round(1000 / 128_000, 4)
    unknown = row("store", 4, 100, events_loaded=128_000)
    unknown.update(_central_cost(unknown, 0.25, None, 0.25))
    assert unknown["central_cpu_seconds"] is None and unknown["events_per_central_cpu_second"] is None
    assert unknown["central_cpu_note"], "a server whose CPU cannot be read is said, not counted as 0"


def test_above_idle_takes_each_servers_upkeep_over_the_run_off_its_cpu() -> None:
    r = central("store", 4, broker=5.0, store=2.0, sink=1.0)
    r.update(_above_idle(r, {"broker": 0.04, "store": 0.01}, wall=100.0))  # upkeep: 4 s and 1 s
    assert r["central_idle_cpu_seconds"] == {"broker": 4.0, "store_server": 1.0}
    assert r["central_cpu_seconds_above_idle"] == 3.0  # 1 + 1 + the supersink's 1
    assert r["events_per_central_cpu_second_above_idle"] == round(128_000 / 3.0)
    busy = central("store", 4, broker=1.0, store=2.0, sink=1.0)
    busy.update(_above_idle(busy, {"broker": 0.05, "store": 0.0}, wall=100.0))
    assert busy["central_cpu_seconds_above_idle"] == 3.0, "never below zero for a server"
    unread = central("store", 4, broker=1.0, store=2.0, sink=1.0)
    unread.update(_above_idle(unread, {"broker": None, "store": 0.0}, wall=100.0))
    assert unread["central_cpu_seconds_above_idle"] is None, "an unread upkeep leaves the figure unknown"
    page = markdown(results([r]))
    assert "| 0.040 / 0.010 | 3.00 | 42,667 |" in page
    assert "without the servers' idle upkeep (above idle; reported, the target is on the whole): 42,667" in page


def test_central_targets_need_every_object_store_run_and_twenty_times_cheaper() -> None:
    runs = [
        central("store", 1, broker=0.2, store=0.3, sink=0.5),  # 128,000 events per central CPU-s
        central("store", 4, broker=0.3, store=0.4, sink=0.5),  # 106,667
        central("mq", 1, broker=10, store=0.1, sink=10.0),
        central("mq", 4, broker=20, store=0.1, sink=10.0),
    ]
    lines = targets(results(runs))
    rate = next(line for line in lines if line.startswith("- events per central CPU-second"))
    assert "128,000 (1 producer), 106,667 (4 producers)" in rate and rate.endswith("**missed**")
    cheaper = next(line for line in lines if line.startswith("- central CPU, broker only over object store"))
    assert "20.1x (1 producer), 25.1x (4 producers)" in cheaper and cheaper.endswith(": met")
    table = markdown(results(runs))
    assert "## What the central services pay" in table
    assert "| store | 1 producer | ok | 128,000 | 0.20 | 0.30 | 0.50 | 1.00 | 0.008 | 128,000 |" in table


def test_latency_target_looks_at_up_to_sixteen_producers() -> None:
    runs = [
        row("store", 4, 100, latency_last_job_seconds={"p50": 0.4, "p95": 0.9}),
        row("store", 16, 100, latency_last_job_seconds={"p50": 0.9, "p95": 2.0}),
        row("store", 64, 100, latency_last_job_seconds={"p50": 11.0, "p95": 20.0}),
    ]
    line = next(x for x in targets(results(runs)) if x.startswith("- last job"))
    assert "0.40 s at 4, 0.90 s at 16 (target ≤ 1 s): met" in line and "at 64" not in line


def test_producers_run_niced_unless_told_otherwise(tmp_path: Path) -> None:
    def argv(*options: str) -> list[str]:
        cfg = config_from(build_parser().parse_args(["compare", "--quick", *options]), tmp_path, tmp_path)
        run = Run(cfg, "store", 1, 1, 1, "s", None, None, "b", None, "")  # type: ignore[arg-type]
        run.broker_url, run.store_url = "stomp://127.0.0.1:1", "s3://b/p"
        job = JobOutcome(task="t", job="j1", seed=1)
        return run._producer_argv(job)

    assert argv()[:3] == ["nice", "-n", "10"] and "ei-producer" in argv()[3]
    assert "ei-producer" in argv("--producer-nice", "0")[0]
    assert argv("--producer-nice", "19")[:3] == ["nice", "-n", "19"]


def test_a_failed_runs_reason_stays_on_one_line_of_the_list() -> None:
    # a supersink's last stderr lines used to be pasted in as they were, breaking the Markdown list
    failed = row("store", 1, None, status="failed")
    failed["reason"] = "ei-supersink expect failed (5): refused\nei-supersink: broker error: cannot connect"
    text = markdown(results([failed]))
    entry = next(line for line in text.splitlines() if line.startswith("- store-p1 (failed)"))
    assert entry.endswith("refused ei-supersink: broker error: cannot connect")


def test_results_are_written_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done = results([row("store", 1, 100.0)])

    def broken(results: dict[str, Any], out: Path) -> list[Path]:
        (out / "central_cost.png").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "plots", broken)
    with pytest.raises(OSError):
        report.write(done, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no results.json beside half of the files"


def test_without_matplotlib_the_tables_are_written_and_say_so(tmp_path: Path) -> None:
    paths = report.write(results([row("store", 1, 100.0)]), tmp_path, draw=False)
    assert sorted(p.name for p in paths) == ["results.json", "results.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md"]
    assert "Plots: not drawn (matplotlib is not installed" in (tmp_path / "results.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["plots"] is None
