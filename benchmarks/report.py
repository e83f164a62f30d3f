"""The results of `ei-bench compare`: results.json, results.md (tables) and PNG plots (matplotlib)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MB = 1e6
MIB = 1 << 20
PLOTS = ("central_cost.png", "events_per_second.png", "broker.png", "latency.png")
COLOURS = {"store": "tab:blue", "mq": "tab:red"}
LABELS = {"store": "object store (pointers through the broker)", "mq": "broker only (events through the broker)"}
#: the targets the report checks (issue: central cost per event at ATLAS-sized jobs)
SUPERSINK_TARGET = 200_000  # events per supersink CPU-second on a backlog
CEILING_TARGET = 0.7  # of the Parquet-write ceiling
CENTRAL_TARGET = 127_000  # events per central CPU-second, object-store transport
CHEAPER_TARGET = 20  # times fewer central CPU-seconds than the broker-only transport
LATENCY_P50_TARGET = 1.0  # seconds, last job -> task committed
LATENCY_PRODUCERS = 16  # ... at up to this many concurrent producers
SERVICES = ("broker", "store_server", "supersink")


def write(results: dict[str, Any], out: Path, *, draw: bool = True) -> list[Path]:
    """Write results.json, results.md and (with `draw`, which needs matplotlib) the plots into ``out``; return
    the paths written.

    All or nothing: each file is written under a temporary name and renamed into place once every one is written,
    results.json last, so an interrupted or failed write leaves no results.json beside the files of another run.
    """
    out.mkdir(parents=True, exist_ok=True)
    if not draw:
        results = {**results, "plots": None}
    staging = out / f".partial-{os.getpid()}"
    staging.mkdir(exist_ok=True)
    try:
        (staging / "results.md").write_text(markdown(results), encoding="utf-8")
        drawn = plots(results, staging) if draw else []
        (staging / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        names = [p.name for p in drawn] + ["results.md", "results.json"]
        for name in names:
            os.replace(staging / name, out / name)
    finally:
        for leftover in staging.glob("*"):
            with contextlib.suppress(OSError):
                leftover.unlink()
        with contextlib.suppress(OSError):
            staging.rmdir()
    return [out / "results.json", out / "results.md", *(out / p.name for p in drawn)]


# ---------------------------------------------------------------- markdown


def _num(value: Any, digits: int = 0, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    return f"{value / scale:,.{digits}f}"


def _mb(value: Any) -> str:
    """Bytes as MB, with the precision small figures (a few hundred pointers) need."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    mb = value / MB
    return f"{mb:.3f}" if mb < 1 else f"{mb:.1f}" if mb < 100 else f"{mb:,.0f}"


def _pair(d: dict[str, Any] | None, digits: int = 1) -> str:
    if not d or d.get("p50") is None:
        return "-"
    return f"{d['p50']:,.{digits}f} / {d['p95']:,.{digits}f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.0f} %" if value >= 0.1 else f"{100 * value:.2g} %"


def _status(row: dict[str, Any]) -> str:
    return "ok" if row.get("status") == "ok" else f"**{row.get('status', '?')}**"


def online(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sweep's runs: the supersink consumed while the producers ran."""
    return [r for r in runs if r.get("mode", "online") == "online"]


def drains(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The drain runs: the supersink started on the whole workload, queued."""
    return [r for r in runs if r.get("mode") == "drain"]


def _per_event(row: dict[str, Any], key: str) -> float | None:
    value, events = row.get(key), row.get("events_loaded")
    return float(value) / events if value is not None and events else None


def targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets against this run's figures, one Markdown bullet each."""
    runs = [r for r in results["runs"] if r.get("status") == "ok"]
    lines = []
    by = {(r["transport"], r["producers"]): r for r in online(runs)}
    both = sorted(n for (t, n) in by if t == "store" and ("mq", n) in by)
    if both:  # broker traffic per event does not depend on the producers: the largest count both ran
        store, mq = by[("store", both[-1])], by[("mq", both[-1])]
        for key, what, goal in (
            ("broker_bytes", "broker bytes per event", 1000),
            ("broker_messages", "broker messages per event", 100),
        ):
            a, b = _per_event(store, key), _per_event(mq, key)
            if a and b:
                lines.append(f"- {what}: {b / a:,.0f}x fewer with the object store (target {goal:,}x)")
    ratios = [
        f"{by[('store', n)]['events_per_second'] / by[('mq', n)]['events_per_second']:,.1f}x at {n}"
        for n in both
        if by[("store", n)].get("events_per_second") and by[("mq", n)].get("events_per_second")
    ]
    if ratios:
        lines.append(
            f"- end-to-end events/s, object store over broker only, where both finished: {', '.join(ratios)} "
            "(report only: both transports are bound by the producers' process start-up on this machine)"
        )
    lines += _central_targets(results["runs"])
    small = [r for r in online(runs) if r["transport"] == "store" and r["producers"] <= LATENCY_PRODUCERS]
    latencies = [
        f"{(r.get('latency_last_job_seconds') or {}).get('p50'):.2f} s at {r['producers']}"
        for r in small
        if (r.get("latency_last_job_seconds") or {}).get("p50") is not None
    ]
    if latencies:
        worst = max((r.get("latency_last_job_seconds") or {}).get("p50") or 0.0 for r in small)
        lines.append(
            f"- last job → task committed, p50 at up to {LATENCY_PRODUCERS} producers: {', '.join(latencies)} "
            f"(target ≤ {LATENCY_P50_TARGET:g} s): {_verdict(worst <= LATENCY_P50_TARGET)}"
        )
    for r in drains(runs):
        if r["transport"] == "store" and r.get("supersink_events_per_cpu_second"):
            rate, ratio = r["supersink_events_per_cpu_second"], r.get("ceiling_ratio")
            lines.append(
                f"- supersink on a backlog, S3 chunk to committed Parquet: {rate:,} events per CPU-second "
                f"(target {SUPERSINK_TARGET:,}): {_verdict(rate >= SUPERSINK_TARGET)}; {_ratio(ratio)} of the "
                f"ceiling (target {_ratio(CEILING_TARGET)}): {_verdict(ratio is not None and ratio >= CEILING_TARGET)}"
                + (
                    f"; warmed up (the second half of the tasks): {r['supersink_steady_events_per_cpu_second']:,}, "
                    f"{_ratio(r.get('steady_ceiling_ratio'))}"
                    if r.get("supersink_steady_events_per_cpu_second")
                    else ""
                )
            )
    return lines


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _central_targets(all_runs: Sequence[dict[str, Any]]) -> list[str]:
    """Events per central CPU-second of the object-store transport, and how much cheaper it is than broker-only."""
    lines = []
    runs = [r for r in all_runs if r.get("status") == "ok" and r.get("central_cpu_seconds")]
    store = [r for r in runs if r["transport"] == "store"]
    if store:
        rates = ", ".join(f"{r['events_per_central_cpu_second']:,} ({_run_label(r)})" for r in store)
        worst = min(r["events_per_central_cpu_second"] for r in store)
        lines.append(
            f"- events per central CPU-second (broker + store server + supersink), object-store transport: {rates} "
            f"(target ≥ {CENTRAL_TARGET:,} in every run): {_verdict(worst >= CENTRAL_TARGET)}"
        )
        above = [r for r in store if r.get("events_per_central_cpu_second_above_idle")]
        if above:
            rates = ", ".join(f"{r['events_per_central_cpu_second_above_idle']:,} ({_run_label(r)})" for r in above)
            lines.append(
                f"- the same without the servers' idle upkeep (above idle; reported, the target is on the whole): "
                f"{rates}"
            )
    by = {(r["transport"], r.get("mode", "online"), r["producers"]): r for r in runs}
    pairs = []
    for (transport, mode, n), r in sorted(by.items()):
        other = by.get(("mq", mode, n))
        if transport == "store" and other is not None:
            pairs.append((other["central_cpu_seconds"] / r["central_cpu_seconds"], _run_label(r)))
    if pairs:
        text = ", ".join(f"{x:,.1f}x ({label})" for x, label in pairs)
        lines.append(
            f"- central CPU, broker only over object store, same workload: {text} "
            f"(target ≥ {CHEAPER_TARGET}x): {_verdict(min(x for x, _ in pairs) >= CHEAPER_TARGET)}"
        )
    return lines


def _run_label(row: dict[str, Any]) -> str:
    if row.get("mode") == "drain":
        return "drain"
    return f"{row['producers']} producer{'s' * (row['producers'] != 1)}"


def _central_table(all_runs: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "## What the central services pay",
        "",
        "CPU seconds of the broker, the object-store server (all its processes) and the supersink, from just before "
        "the first producer starts to the last commit (so the broker and store columns include the producers' sends "
        "and PUTs). In a drain run the supersink's figure is its own busy CPU, first message to last commit. The "
        "broker-only transport does not use the store; its server's idle CPU is counted all the same.",
        "",
        *_warmup_lines(all_runs),
        "The servers pay an upkeep whether events flow or not (a JVM's timers and garbage collection, the store's "
        "heartbeats). Each run first reads the broker's and the store server's CPU over a few "
        "seconds of idleness (10 in the full sweep); *above idle* takes that rate times the run's duration off "
        "their CPU, which leaves what "
        "the events cost. On this machine a run lasts as long as its producers' start-ups (~0.4 CPU-s each), so "
        "the upkeep weighs more here than on a central installation fed by thousands of grid nodes.",
        "",
        "| transport | run | status | events | broker CPU s | store server CPU s | supersink CPU s | central CPU s "
        "| central CPU s per 1,000 events | events per central CPU-s | idle CPU per s broker / store "
        "| central CPU s above idle | events per central CPU-s above idle | store server RSS MiB |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in all_runs:
        parts = r.get("central_cpu_seconds_by_service") or {}
        idle = r.get("idle_cpu_per_second") or {}
        lines.append(
            f"| {r['transport']} | {_run_label(r)} | {_status(r)} | {_num(r.get('events_loaded'))} "
            f"| {_num(parts.get('broker'), 2)} | {_num(parts.get('store_server'), 2)} "
            f"| {_num(parts.get('supersink'), 2)} | {_num(r.get('central_cpu_seconds'), 2)} "
            f"| {_num(r.get('central_cpu_seconds_per_1000_events'), 3)} "
            f"| {_num(r.get('events_per_central_cpu_second'))} "
            f"| {_num(idle.get('broker'), 3)} / {_num(idle.get('store'), 3)} "
            f"| {_num(r.get('central_cpu_seconds_above_idle'), 2)} "
            f"| {_num(r.get('events_per_central_cpu_second_above_idle'))} "
            f"| {_num(r.get('store_server_rss_bytes'), 0, MIB)} |"
        )
    return lines


def _warmup_lines(all_runs: Sequence[dict[str, Any]]) -> list[str]:
    """The paragraph saying how the servers were warmed up before each run (nothing when they were not)."""
    warmed = [r["warmup"] for r in all_runs if r.get("warmup")]
    if not warmed:
        return []
    seconds = [w["seconds"] for w in warmed]
    return [
        f"Before its CPU is counted, each run warms up its fresh broker and the store server as the clients of a "
        f"running installation would have: {warmed[0]['connections']:,} producer-like connections, each sending one "
        f"pointer-sized message, one consumer taking them, and as many chunk and manifest PUTs and chunk GETs "
        f"({_span(seconds)} s; benchmarks/warmup.py). A fresh JVM compiles its hot paths over "
        f"its first few hundred connections: on ActiveMQ, 128 such connections cost 1.3 CPU-s cold and ~0.45 warm.",
        "",
    ]


def _span(values: Sequence[float]) -> str:
    low, high = f"{min(values):.0f}", f"{max(values):.0f}"
    return low if low == high else f"{low}-{high}"


def markdown(results: dict[str, Any]) -> str:
    cfg, ceiling, all_runs = results["config"], results.get("ceiling", {}), results["runs"]
    runs = online(all_runs)
    mach = results.get("machine", {})
    lines = [
        "# ei-bench compare: broker-only transport vs object-store transport",
        "",
        f"{results['timestamp']} · {mach.get('cpus', '?')} CPUs ({mach.get('cpu_model', '?')}), "
        f"Python {mach.get('python', '?')}, pyarrow {mach.get('pyarrow', '?')} · broker **{cfg['broker']}**"
        f"{' at ' + cfg['broker_url'] if cfg.get('broker_url') else ' (a fresh server per run)'}, "
        f"store **{cfg['store']}**{' at ' + cfg['store_url'] if cfg.get('store_url') else ''} · "
        f"total {results.get('seconds', 0):,.0f} s",
        "",
        f"Workload per run: {cfg['tasks']} task(s) x {cfg['jobs_per_task']} jobs x {cfg['events_per_job']:,} events "
        f"= {cfg['events_per_run']:,} events ({cfg['input']}); concurrent producers "
        f"{', '.join(map(str, cfg['producers']))}."
        + (
            f" Producers run at nice {cfg['producer_nice']}: grid jobs run on worker nodes, not on the central machine;"
            " here they share its 2 cores, and at a lower priority they leave the central services (broker, store"
            " server, supersink) the CPU they would have alone."
            if cfg.get("producer_nice")
            else ""
        ),
        "",
    ]
    if ceiling.get("events_per_cpu_second"):
        lines += [
            f"Ceiling: {ceiling['what']}: **{ceiling['events_per_cpu_second']:,} events per CPU-second** "
            f"({ceiling['events']:,} events in {ceiling['cpu_seconds']:.2f} CPU-s, "
            f"{ceiling['parquet_bytes_per_event']} B/event on disk).",
            "",
        ]
    elif ceiling:
        lines += [f"Ceiling: not measured ({ceiling.get('error')}).", ""]
    if any("central_cpu_seconds" in r for r in all_runs):
        lines += [*_central_table(all_runs), ""]
    lines += [
        "## Throughput, broker and store load",
        "",
        "End-to-end events/s are reported, not targeted: every job is one `ei-producer` process, whose start-up "
        "(~0.4 CPU-s of imports and clients) outweighs its 1,000 events, so on 2 cores both transports are bound "
        "by it.",
        "",
        "| transport | producers | status | events/s (e2e) | e2e s | producer wall s p50 / p95 | broker msgs "
        "| broker MB | broker peak RSS MiB | broker CPU s | store req producers / sink | store MB producers / sink |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        measured = r.get("broker_counts_source", "producer") == "producer"
        estimated = "" if measured or not r.get("broker_messages") else "≈"
        lines.append(
            f"| {r['transport']} | {r['producers']} | {_status(r)} | {_num(r.get('events_per_second'))} "
            f"| {_num(r.get('e2e_seconds'), 1)} | {_pair(r.get('producer_wall_seconds'))} "
            f"| {estimated}{_num(r.get('broker_messages'))} | {estimated if r.get('broker_bytes') else ''}"
            f"{_mb(r.get('broker_bytes'))} | {_num(r.get('broker_peak_rss_bytes'), 0, MIB)} "
            f"| {_num(r.get('broker_cpu_seconds'), 1)} "
            f"| {_num(r.get('producer_store_requests'))} / {_num(r.get('supersink_store_requests'))} "
            f"| {_mb(r.get('producer_store_bytes'))} / {_mb(r.get('supersink_store_bytes'))} |"
        )
    lines += [
        "",
        "## Latency and supersink efficiency",
        "",
        "| transport | producers | job end → task committed s p50 / p95 | last job → committed s p50 / p95 "
        "| supersink CPU s | supersink events/CPU-s | of the ceiling | supersink peak RSS MiB | errors "
        "| load avg start / end |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in runs:
        lines.append(
            f"| {r['transport']} | {r['producers']} | {_pair(r.get('latency_seconds'))} "
            f"| {_pair(r.get('latency_last_job_seconds'))} | {_num(r.get('supersink_cpu_seconds'), 1)} "
            f"| {_num(r.get('supersink_events_per_cpu_second'))} | {_ratio(r.get('ceiling_ratio'))} "
            f"| {_num(r.get('supersink_peak_rss_bytes'), 0, MIB)} | {_errors(r)} | {_load(r)} |"
        )
    if drains(all_runs):
        lines += [
            "",
            "## The supersink on a backlog (drain runs)",
            "",
            "The whole workload is queued first (producers, then no supersink); then `ei-supersink run` starts "
            "on the backlog. Its CPU is counted by the supersink itself from its first message to its last "
            "commit (all threads; without interpreter start-up and idle shutdown).",
            "",
            "| transport | producers (queueing) | status | backlog s | drain s | events | supersink CPU s "
            "| supersink events/CPU-s | of the ceiling | second half of the tasks: events/CPU-s | of the ceiling "
            "| whole process CPU s | supersink peak RSS MiB | store requests / MB (sink) |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in drains(all_runs):
            lines.append(
                f"| {r['transport']} | {r['producers']} | {_status(r)} | {_num(r.get('backlog_seconds'), 1)} "
                f"| {_num(r.get('drain_seconds'), 1)} | {_num(r.get('events_loaded'))} "
                f"| {_num(r.get('supersink_cpu_seconds'), 2)} | {_num(r.get('supersink_events_per_cpu_second'))} "
                f"| {_ratio(r.get('ceiling_ratio'))} | {_num(r.get('supersink_steady_events_per_cpu_second'))} "
                f"| {_ratio(r.get('steady_ceiling_ratio'))} | {_num(r.get('supersink_cpu_seconds_process'), 1)} "
                f"| {_num(r.get('supersink_peak_rss_bytes'), 0, MIB)} "
                f"| {_num(r.get('supersink_store_requests'))} / {_mb(r.get('supersink_store_bytes'))} |"
            )
    goals = targets(results)
    if goals:
        lines += ["", "## Against the targets", "", *goals]
    failed = [r for r in all_runs if r.get("status") != "ok"]
    if failed:
        lines += ["", "## Runs that did not succeed", ""]
        lines += [f"- {r['run']} ({r['status']}): {' '.join(str(r.get('reason')).split())}" for r in failed]
    notes = sorted(
        {r["broker_counts_source"] for r in all_runs if r.get("broker_counts_source", "producer") != "producer"}
    )
    notes += sorted({r["producer_store_note"] for r in all_runs if r.get("producer_store_note")})
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    if results.get("plots", PLOTS) is None:
        lines += ["", "Plots: not drawn (matplotlib is not installed: `pip install -e '.[bench]'`).", ""]
    else:
        lines += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in PLOTS), ""]
    return "\n".join(lines)


def _load(row: dict[str, Any]) -> str:
    load = row.get("loadavg_1min") or {}
    return f"{_num(load.get('start'), 1)} / {_num(load.get('end'), 1)}"


def _errors(row: dict[str, Any]) -> str:
    errors = row.get("errors")
    if not errors:
        return "-" if row.get("status") == "ok" else "not run"
    parts = []
    if errors.get("producer_failures"):
        parts.append(f"{errors['producer_failures']} producer(s) failed")
    if errors.get("producers_not_run"):
        parts.append(f"{errors['producers_not_run']} not run")
    if errors.get("quarantined"):
        parts.append(f"{errors['quarantined']} quarantined")
    if errors.get("supersink_exit") not in (0, None):
        parts.append(f"supersink exit {errors['supersink_exit']}")
    return ", ".join(parts) or "0"


# ---------------------------------------------------------------- plots


def _series(runs: Sequence[dict[str, Any]], get: Callable[[dict[str, Any]], float | None]) -> dict[str, Any]:
    """Per transport: (producers, values) of the runs where ``get`` gives a value."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for r in runs:
        value = get(r)
        xs, ys = out.setdefault(r["transport"], ([], []))
        if value is not None:
            xs.append(r["producers"])
            ys.append(value)
    return out


def _axis(ax: Any, runs: Sequence[dict[str, Any]], title: str, ylabel: str) -> None:
    producers = sorted({r["producers"] for r in runs})
    ax.set_xscale("log", base=2)
    ax.set_xticks(producers, [str(p) for p in producers])
    ax.minorticks_off()
    ax.set_xlabel("concurrent producers")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)


def _lines(ax: Any, series: dict[str, Any], style: str = "-", suffix: str = "", marker: str = "o") -> None:
    for transport, (xs, ys) in series.items():
        if xs:
            ax.plot(xs, ys, style, marker=marker, color=COLOURS.get(transport), label=LABELS.get(transport, transport)
                    + suffix)  # fmt: skip


def _scaled(key: str, scale: float) -> Callable[[dict[str, Any]], float | None]:
    def get(row: dict[str, Any]) -> float | None:
        value = row.get(key)
        return None if value is None else float(value) / scale

    return get


def _failed_marks(ax: Any, runs: Sequence[dict[str, Any]]) -> None:
    """An x on the axis for each run that did not succeed."""
    labelled = False
    for r in runs:
        if r.get("status") != "ok":
            label = None if labelled else "run failed or timed out"
            ax.plot([r["producers"]], [0], "x", color=COLOURS.get(r["transport"], "k"), markersize=9, clip_on=False,
                    label=label)  # fmt: skip
            labelled = True


def plots(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = online(results["runs"])
    ceiling = results.get("ceiling", {}).get("events_per_cpu_second")
    title = (
        f"{results['config']['events_per_run']:,} events per run · {results['config']['broker']} + "
        f"{results['config']['store']} · {results['timestamp']}"
    )
    written = []

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    _lines(ax1, _series(runs, lambda r: r.get("central_cpu_seconds_per_1000_events")))
    _failed_marks(ax1, runs)
    _axis(ax1, runs, "central CPU (broker + store server + supersink) per 1,000 events", "CPU-seconds")
    _yscale(ax1, [y for _, ys in _series(runs, lambda r: r.get("central_cpu_seconds_per_1000_events")).values()
                  for y in ys])  # fmt: skip
    central = _series(runs, lambda r: r.get("events_per_central_cpu_second"))
    _lines(ax2, central)
    ax2.axhline(CENTRAL_TARGET, color="grey", linestyle="--", label=f"target {CENTRAL_TARGET:,} (object store)")
    _drain_lines(ax2, results["runs"], "events_per_central_cpu_second", "drain run")
    _axis(ax2, runs, "events per central CPU-second", "events / central CPU-s")
    written.append(_finish_pair(fig, (ax1, ax2), title, out / PLOTS[0], plt))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    _lines(ax1, _series(runs, lambda r: r.get("events_per_second")))
    _failed_marks(ax1, runs)
    _axis(ax1, runs, "end to end: first producer start → last task committed (bound by producer start-up)",
          "events / s")  # fmt: skip
    ax1.set_ylim(bottom=0)
    _lines(ax2, _series(runs, lambda r: r.get("supersink_events_per_cpu_second")))
    if ceiling:
        ax2.axhline(ceiling, color="grey", linestyle="--", label="ceiling: Parquet write from memory")
    _drain_lines(ax2, results["runs"], "supersink_events_per_cpu_second", "supersink on a backlog")
    _axis(ax2, runs, "supersink efficiency", "events per supersink CPU-second")
    written.append(_finish_pair(fig, (ax1, ax2), title, out / PLOTS[1], plt))

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.5))
    for ax, key, scale, label in (
        (axes[0], "broker_messages", 1.0, "messages sent to the broker"),
        (axes[1], "broker_bytes", MB, "MB sent to the broker"),
        (axes[2], "broker_peak_rss_bytes", MIB, "broker peak RSS, MiB"),
        (axes[3], "broker_cpu_seconds", 1.0, "broker CPU seconds"),
    ):
        series = _series(runs, _scaled(key, scale))
        _lines(ax, series)
        _axis(ax, runs, label, label)
        _yscale(ax, [y for _, ys in series.values() for y in ys])
        _legend(ax)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    written.append(_save(fig, out / PLOTS[2], plt))

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    _lines(ax, _series(runs, lambda r: (r.get("latency_seconds") or {}).get("p50")), "-", ", p50")
    _lines(ax, _series(runs, lambda r: (r.get("latency_seconds") or {}).get("p95")), "--", ", p95", "^")
    _axis(ax, runs, "a job's end → its task committed (queryable)", "seconds")
    ax.set_ylim(bottom=0)
    _legend(ax)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    written.append(_save(fig, out / PLOTS[3], plt))
    return written


def _drain_lines(ax: Any, runs: Sequence[dict[str, Any]], key: str, label: str) -> None:
    """A dotted horizontal line per drain run at its figure `key`."""
    for r in drains(runs):
        if r.get(key):
            ax.axhline(r[key], color=COLOURS.get(r["transport"]), linestyle=":", label=f"{r['transport']}: {label}")


def _finish_pair(fig: Any, axes: tuple[Any, Any], title: str, path: Path, plt: Any) -> Path:
    """The two-panel figures: the right panel logarithmic, legends, title; saved."""
    axes[1].set_yscale("log")
    for ax in axes:
        _legend(ax)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path, plt)


def _yscale(ax: Any, values: list[float]) -> None:
    """Logarithmic when the values span more than a factor of 20 (the transports differ by orders of
    magnitude), else linear from 0."""
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_yscale("log")
    else:
        ax.set_ylim(0, 1.15 * max(values) if values and max(values) > 0 else 1)


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
