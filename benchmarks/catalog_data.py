"""A catalogue for the `ei-catalog` benchmark: committed tasks written in the warehouse format directly.

The supersink would take hours to load 10^8 events on this machine, so this writes what it would
have written: `dataset=<D>/task=<T>/part-NNNNN.parquet` with the warehouse schema and the loader's
writer settings (sorted by (run, event), zstd, row groups of 131,072 rows, 8 row groups a file,
dictionaries for task, job and input_guid, statistics), then the commit marker `_SUCCESS.json`
(with a `trigger_names` list per mask column) last.

The shape follows a year of ATLAS Run 3 data:

- runs of varied size (log-normal), each with ~20 s lumi blocks and event numbers that grow with
  time (the run's L1 accepts, of which each stream takes its share);
- per run one task of each stream: `physics_Main` and `physics_BphysDelayed` (disjoint events),
  `express_express` (a sample of Main's events, as the express stream is) and the derived
  `physics_Main...DAOD_PHYS` (a selection of Main's events): datasets overlap as real ones do;
- a few runs indexed twice in `physics_Main` (a second task over part of the same input, as
  happens when a production task is resubmitted): duplicates across tasks;
- L1 masks of a 512-bit menu (TBP, TAP within TBP, TAV within TAP) with item rates from 0.05 % to
  35 %, and 8192-bit HLT masks with 320 chains among the first 2048 counters (passed physics; a few
  pass-through chains; resurrected present but empty; the Run 1 L2 masks absent, null); the marker
  names the L1 items and HLT chains (`trigger_names`);
- three provenance references per event (its AOD file, the ESD and the RAW file it came from,
  RAW files per lumi block) and the input file GUID of the AOD file a job indexed.

Every event is a deterministic function of (`--seed`, task number): rerunning writes the same events.
A task whose marker exists is kept, so an interrupted run resumes where it stopped.

    .venv/bin/python -m benchmarks.catalog_data --root /work/catalog-bench/warehouse [--events 100000000]
        [--runs 250] [--workers 2] [--seed 1]

`--rewrite` rewrites a catalogue written before the provenance strings were dictionary-encoded with the
loader's current writer options (one file at a time, each replaced by a rename; rerunning resumes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eventindex.columns import HLT_MASK_BYTES, L1_MASK_BYTES, PROVENANCE_TYPE, WAREHOUSE_SCHEMA
from eventindex.warehouse import MARKER, part_name, partition
from supersink.loader import PARQUET_OPTIONS, ROW_GROUP_ROWS, ROWS_PER_FILE

FIRST_RUN = 472_000
RUN_START = 1_715_000_000  # May 2024
LUMI_SECONDS = 20
EVENTS_PER_AOD_FILE = 10_000
#: Provenance fields written dictionary-encoded, as the loader writes them.
EVENTS_PER_ESD_FILE = 5_000
#: Share of a run's events in each stream; express and DAOD are drawn from Main's events.
STREAMS = {
    "physics_Main": 0.62,
    "physics_BphysDelayed": 0.16,
    "express_express": 0.04,
    "DAOD_PHYS": 0.18,
}
PROJECT = "data24_13p6TeV"
DATASETS = {
    "physics_Main": f"{PROJECT}.physics_Main.merge.AOD",
    "physics_BphysDelayed": f"{PROJECT}.physics_BphysDelayed.merge.AOD",
    "express_express": f"{PROJECT}.express_express.merge.AOD",
    "DAOD_PHYS": f"{PROJECT}.physics_Main.deriv.DAOD_PHYS",
}
#: One run in this many has physics_Main indexed a second time, over this share of its events.
DUPLICATED_RUN_EVERY = 10
DUPLICATED_SHARE = 0.25
L1_ITEMS = 120
HLT_CHAINS = 320
HLT_COUNTERS = 2048  # chain counters in use: the HLT bits of the menu are among the first 2048 of 8192
HLT_PASSTHROUGH = 12
DATAHEADER_CLID = "4DDBD295-EFCE-472A-9EC8-15CD35A9EB8D"
RAW_CLID = "00000000-0000-0000-0000-000000000000"
BLOCK = ROW_GROUP_ROWS  # events generated and written at a time: one row group (HLT masks are 1 kB each)
GENERATOR = "benchmarks.catalog_data"


@dataclass(frozen=True)
class Menu:
    """The trigger menu: bit positions, names and pass rates of the configured L1 items and HLT chains."""

    l1_bits: np.ndarray
    l1_rates: np.ndarray
    hlt_bits: np.ndarray
    hlt_rates: np.ndarray
    pt_bits: np.ndarray
    names: dict[str, list[str | None]]


def make_menu(seed: int) -> Menu:
    rng = np.random.default_rng([seed, 0xE1])
    l1_bits = np.sort(rng.choice(512, L1_ITEMS, replace=False))
    l1_rates = np.exp(rng.uniform(np.log(0.0005), np.log(0.35), L1_ITEMS))
    hlt_bits = np.sort(rng.choice(HLT_COUNTERS, HLT_CHAINS, replace=False))
    hlt_rates = np.exp(rng.uniform(np.log(0.0002), np.log(0.06), HLT_CHAINS))
    pt_bits = np.sort(rng.choice(hlt_bits, HLT_PASSTHROUGH, replace=False))
    l1_kinds = ["EM", "MU", "J", "TAU", "XE", "2EM", "2MU", "jJ", "eEM", "gXE"]
    l1_names: list[str | None] = [None] * 512
    for i, bit in enumerate(l1_bits):
        l1_names[int(bit)] = f"L1_{l1_kinds[i % len(l1_kinds)]}{8 + 2 * i}"
    hlt_kinds = ["mu", "e", "j", "tau", "xe", "2mu", "g", "b", "mu_e", "3j"]
    hlt_names: list[str | None] = [None] * HLT_COUNTERS
    for i, bit in enumerate(hlt_bits):
        kind = hlt_kinds[i % len(hlt_kinds)]
        hlt_names[int(bit)] = f"HLT_{kind}{4 + i}_L1{l1_kinds[i % len(l1_kinds)]}{8 + 2 * (i % L1_ITEMS)}"
    names = {"l1_tbp": l1_names, "l1_tap": l1_names, "l1_tav": l1_names, "hlt_passed_physics": hlt_names}
    return Menu(l1_bits, l1_rates, hlt_bits, hlt_rates, pt_bits, names)


@dataclass(frozen=True)
class TaskPlan:
    number: int
    dataset: str
    task: str
    stream: str
    run: int
    run_events: int  # the run's L1 accepts: event numbers are drawn from 1..run_events
    share: float  # of the run's events this task holds
    lumi_blocks: int
    first_seed: int  # of the selection (express, DAOD, duplicates) within Main's events


def plan_tasks(events: int, runs: int, seed: int) -> list[TaskPlan]:
    """Every task of the catalogue, in a fixed order; about `events` rows in all."""
    rng = np.random.default_rng([seed, 0xCA7])
    weights = rng.lognormal(0.0, 0.6, runs)
    total_share = sum(STREAMS.values()) + DUPLICATED_SHARE * STREAMS["physics_Main"] / DUPLICATED_RUN_EVERY
    per_run = np.maximum(1_000, (weights / weights.sum() * events / total_share).astype(np.int64))
    plans: list[TaskPlan] = []
    for r in range(runs):
        run = FIRST_RUN + 3 * r + int(rng.integers(0, 3))
        run_events = int(per_run[r])
        lumi_blocks = max(10, run_events // 1_500)
        for s, (stream, share) in enumerate(STREAMS.items()):
            n = len(plans)
            plans.append(TaskPlan(n, DATASETS[stream], f"{40_000_000 + 10 * r + s}", stream, run, run_events,
                                  share, lumi_blocks, seed * 1_000_003 + r))  # fmt: skip
        if r % DUPLICATED_RUN_EVERY == DUPLICATED_RUN_EVERY - 1:
            n = len(plans)
            plans.append(TaskPlan(n, DATASETS["physics_Main"], f"{40_000_000 + 10 * r + 9}", "physics_Main.repeat",
                                  run, run_events, STREAMS["physics_Main"] * DUPLICATED_SHARE, lumi_blocks,
                                  seed * 1_000_003 + r))  # fmt: skip
    return plans


def file_guid(*parts: object) -> str:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16])).upper()


def _event_numbers(plan: TaskPlan) -> np.ndarray:
    """The task's event numbers (sorted): the run's L1 accepts shared out between streams by residue,
    express, DAOD and repeated tasks selecting among Main's (residues 0-61 of 100)."""
    numbers = np.arange(1, plan.run_events * 4 + 1, 4, dtype=np.int64)  # the run's accepted events
    residue = (numbers * 2_654_435_761 + plan.run) % 100
    if plan.stream == "physics_BphysDelayed":
        return numbers[(residue >= 62) & (residue < 78)]
    main = numbers[residue < 62]
    if plan.stream == "physics_Main":
        return main
    rng = np.random.default_rng([plan.first_seed, zlib.crc32(plan.stream.encode())])
    if plan.stream == "physics_Main.repeat":  # a contiguous quarter of the run, as a resubmitted job would
        start = int(rng.integers(0, max(1, int(len(main) * (1 - DUPLICATED_SHARE)))))
        return main[start : start + int(len(main) * DUPLICATED_SHARE)]
    keep = plan.share / STREAMS["physics_Main"]
    return main[rng.random(len(main)) < keep]


def _binary(matrix: np.ndarray) -> pa.Array:
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(matrix)])


def _set(matrix: np.ndarray, rows: np.ndarray, bit: int) -> None:
    matrix[rows, bit >> 3] |= np.uint8(1 << (bit & 7))


def _masks(rng: np.random.Generator, n: int, menu: Menu) -> dict[str, pa.Array]:
    tbp = np.zeros((n, L1_MASK_BYTES), np.uint8)
    tap = np.zeros_like(tbp)
    tav = np.zeros_like(tbp)
    draws = rng.random((n, L1_ITEMS), dtype=np.float32)
    for i, bit in enumerate(menu.l1_bits.tolist()):
        rate = menu.l1_rates[i]
        before = draws[:, i] < rate
        after = draws[:, i] < rate * 0.9  # prescaled
        accepted = draws[:, i] < rate * 0.85  # not vetoed (dead time)
        _set(tbp, before, bit)
        _set(tap, after, bit)
        _set(tav, accepted, bit)
    physics = np.zeros((n, HLT_MASK_BYTES), np.uint8)
    draws = rng.random((n, HLT_CHAINS), dtype=np.float32)
    for i, bit in enumerate(menu.hlt_bits.tolist()):
        _set(physics, draws[:, i] < menu.hlt_rates[i], bit)
    through = np.zeros((n, HLT_MASK_BYTES), np.uint8)
    for bit in menu.pt_bits.tolist():
        _set(through, rng.random(n, dtype=np.float32) < 0.002, bit)
    resurrected = np.zeros((n, HLT_MASK_BYTES), np.uint8)
    return {
        "l1_tbp": _binary(tbp),
        "l1_tap": _binary(tap),
        "l1_tav": _binary(tav),
        "hlt_passed_physics": _binary(physics),
        "hlt_passed_through": _binary(through),
        "hlt_resurrected": _binary(resurrected),
    }


def _dict_strings(index: np.ndarray, values: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), pa.array(values)).cast(pa.string())


def _provenance(plan: TaskPlan, positions: np.ndarray, lumi: np.ndarray) -> pa.Array:
    """[AOD, ESD, RAW] references per event: `positions` index the task's events."""
    n = len(positions)
    aod = positions // EVENTS_PER_AOD_FILE
    esd = positions // EVENTS_PER_ESD_FILE
    aod_ids, aod_idx = np.unique(aod, return_inverse=True)
    esd_ids, esd_idx = np.unique(esd, return_inverse=True)
    raw_ids, raw_idx = np.unique(lumi, return_inverse=True)
    guids = [file_guid(plan.task, "AOD", int(i)) for i in aod_ids]
    guids += [file_guid(plan.run, plan.stream, "ESD", int(i)) for i in esd_ids]
    guids += [file_guid(plan.run, plan.stream, "RAW", int(i)) for i in raw_ids]
    guid_idx = np.empty(3 * n, np.int32)
    guid_idx[0::3] = aod_idx
    guid_idx[1::3] = len(aod_ids) + esd_idx
    guid_idx[2::3] = len(aod_ids) + len(esd_ids) + raw_idx
    kinds = np.tile(np.array([0, 1, 2], np.int32), n)
    oid1 = np.tile(np.array([4, 5, 0], np.int64), n)
    oid2 = np.empty(3 * n, np.int64)
    oid2[0::3] = positions % EVENTS_PER_AOD_FILE
    oid2[1::3] = positions % EVENTS_PER_ESD_FILE
    oid2[2::3] = (positions % 2_000) * 1_600_000
    structs = pa.StructArray.from_arrays(
        [
            _dict_strings(kinds, ["StreamAOD", "StreamESD", "StreamRAW"]),
            _dict_strings(guid_idx, guids),
            _dict_strings(np.minimum(kinds, 1), ["POOLContainer(DataHeader)", "00000000"]),
            _dict_strings(np.minimum(kinds, 1), [DATAHEADER_CLID, RAW_CLID]),
            pa.array(np.tile(np.array([0x202, 0x202, 0x1000], np.int64), n)),
            pa.array(oid1),
            pa.array(oid2),
        ],
        fields=list(PROVENANCE_TYPE.value_type),
    )  # fmt: skip
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 3 * n + 1, 3, dtype=np.int32)), structs)


def task_block(plan: TaskPlan, events: np.ndarray, start: int, menu: Menu) -> pa.Table:
    """Rows [start, start + len(events)) of the task, in the warehouse schema."""
    n = len(events)
    rng = np.random.default_rng([plan.number, start, 0xB10C])
    positions = np.arange(start, start + n, dtype=np.int64)
    accepted_per_lumi = plan.run_events * 4 / plan.lumi_blocks
    lumi = 1 + (events // accepted_per_lumi).astype(np.int64)
    seconds = (events / (plan.run_events * 4) * plan.lumi_blocks * LUMI_SECONDS).astype(np.int64)
    timestamp = RUN_START + (plan.run - FIRST_RUN) * 7_200 + seconds
    aod_file = positions // EVENTS_PER_AOD_FILE
    jobs = [f"job.{int(j):05d}" for j in np.unique(aod_file)]
    job_idx = aod_file - aod_file[0]
    l1id_valid = rng.random(n) >= 0.01
    columns: dict[str, pa.Array] = {
        "run_number": pa.array(np.full(n, plan.run, np.int64)),
        "event_number": pa.array(events),
        "lumi_block": pa.array(lumi),
        "bcid": pa.array(rng.integers(1, 3565, n)),
        "timestamp": pa.array(timestamp),
        "timestamp_ns_offset": pa.array(rng.integers(0, 1_000_000_000, n)),
        "extended_level1_id": pa.array(rng.integers(0, 2**32, n), mask=~l1id_valid),
        "is_simulation": pa.array(np.zeros(n, bool)),
        "is_calibration": pa.array(np.zeros(n, bool)),
        "is_testbeam": pa.array(np.zeros(n, bool)),
        "mc_channel_number": pa.nulls(n, pa.int64()),
        "mc_event_weight": pa.nulls(n, pa.float32()),
        "smk": pa.array(np.full(n, 3_251, np.int64)),
        "hlt_psk": pa.array(np.full(n, 812, np.int64)),
        "l1_psk": pa.array(np.full(n, 9_417, np.int64)),
        "l2_passed_physics": pa.nulls(n, pa.binary()),
        "l2_passed_through": pa.nulls(n, pa.binary()),
        "l2_resurrected": pa.nulls(n, pa.binary()),
        **_masks(rng, n, menu),
        "provenance": _provenance(plan, positions, lumi),
        "input_guid": _dict_strings(job_idx, [file_guid(plan.task, "AOD", int(i)) for i in np.unique(aod_file)]),
        "task": pa.array([plan.task] * n, pa.string()),
        "job": _dict_strings(job_idx, jobs),
        "attempt": pa.array(np.ones(n, np.int32)),
    }
    return pa.Table.from_arrays([columns[f.name] for f in WAREHOUSE_SCHEMA], schema=WAREHOUSE_SCHEMA)


def write_task(root: Path, plan: TaskPlan, menu: Menu) -> dict[str, Any]:
    """Write one task's parts, then its marker; a task whose marker exists is kept as it is."""
    directory = root / partition(plan.dataset, plan.task)
    marker_path = directory / MARKER
    if marker_path.exists():
        marker: dict[str, Any] = json.loads(marker_path.read_text())
        return marker
    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    events = _event_numbers(plan)
    files: list[dict[str, Any]] = []
    for first in range(0, len(events), ROWS_PER_FILE):
        name = part_name(len(files))
        rows = events[first : first + ROWS_PER_FILE]
        with pq.ParquetWriter(directory / name, WAREHOUSE_SCHEMA, **PARQUET_OPTIONS) as writer:
            for start in range(0, len(rows), BLOCK):
                block = rows[start : start + BLOCK]
                writer.write_table(task_block(plan, block, first + start, menu), row_group_size=ROW_GROUP_ROWS)
        files.append({"name": name, "rows": len(rows)})
    jobs = (len(events) + EVENTS_PER_AOD_FILE - 1) // EVENTS_PER_AOD_FILE
    marker = {
        "task": plan.task,
        "dataset": plan.dataset,
        "files": files,
        "rows": len(events),
        "events_in_chunks": len(events),
        "duplicates": {"count": 0, "events": 0, "examples": []},
        "attempts": {f"job.{j:05d}": 1 for j in range(jobs)},
        "superseded": [],
        "partial": False,
        "missing": [],
        "sorted_by": ["run_number", "event_number"],
        "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_seconds": round(time.monotonic() - started, 3),
        "loaded_by": GENERATOR,
        "format": "eventindex.v1",
        "trigger_names": menu.names,
    }
    tmp = directory / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(marker))
    os.replace(tmp, marker_path)
    return marker


def _write(args: tuple[str, TaskPlan, int]) -> int:
    root, plan, seed = args
    return int(write_task(Path(root), plan, make_menu(seed))["rows"])


def generate(root: Path, events: int, runs: int, seed: int, workers: int) -> dict[str, Any]:
    plans = plan_tasks(events, runs, seed)
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    done_rows = 0
    with mp.get_context("spawn").Pool(workers) as pool:
        for done, rows in enumerate(pool.imap_unordered(_write, [(str(root), p, seed) for p in plans]), 1):
            done_rows += rows
            elapsed = time.monotonic() - started
            print(f"\r{done}/{len(plans)} tasks, {done_rows:,} events, {elapsed:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    size = sum(f.stat().st_size for f in root.rglob("*.parquet"))
    return {"tasks": len(plans), "events": done_rows, "bytes": size, "seconds": round(time.monotonic() - started, 1)}


def _dictionary_encoded(meta: pq.FileMetaData) -> bool:
    """Whether a part file's provenance strings are written as dictionaries (as the loader writes them now)."""
    columns = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    guid = columns["provenance.list.element.guid"]
    return all("RLE_DICTIONARY" in meta.row_group(g).column(guid).encodings for g in range(meta.num_row_groups))


def rewrite(root: Path) -> dict[str, Any]:
    """Rewrite every part file written before the loader's dictionary encoding of the provenance strings with
    the current writer options: the same rows in the same row groups (the index's footer ranges stay true),
    each file replaced whole by a rename. A file already written so is left alone, so a rerun resumes."""
    started, cpu = time.monotonic(), time.process_time()
    paths = sorted(root.rglob("part-*.parquet"))
    done = 0
    for number, path in enumerate(paths, 1):
        source = pq.ParquetFile(path)
        if _dictionary_encoded(source.metadata):
            continue
        tmp = path.with_name(f".{path.name}.rewrite")
        with pq.ParquetWriter(tmp, source.schema_arrow, **PARQUET_OPTIONS) as writer:
            for group in range(source.num_row_groups):
                table = source.read_row_group(group)
                writer.write_table(table, row_group_size=table.num_rows)
        written = pq.read_metadata(tmp)
        before = [source.metadata.row_group(g).num_rows for g in range(source.num_row_groups)]
        after = [written.row_group(g).num_rows for g in range(written.num_row_groups)]
        if before != after or not written.schema.equals(source.metadata.schema):
            raise SystemExit(f"rewriting {path}: the rewritten file differs in row groups or schema")
        os.replace(tmp, path)
        done += 1
        print(f"\r{number}/{len(paths)} files, {done} rewritten, {time.monotonic() - started:.0f} s", end="",
              file=sys.stderr)  # fmt: skip
    print(file=sys.stderr)
    return {"files": len(paths), "rewritten": done, "seconds": round(time.monotonic() - started, 1),
            "cpu_seconds": round(time.process_time() - cpu, 1),
            "bytes": sum(p.stat().st_size for p in root.rglob("*.parquet"))}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the warehouse directory to write")
    parser.add_argument("--events", type=int, default=100_000_000)
    parser.add_argument("--runs", type=int, default=250)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rewrite", action="store_true", help="rewrite an existing catalogue's files with the current writer options"
    )
    args = parser.parse_args()
    if args.rewrite:
        print(json.dumps(rewrite(args.root.resolve())))
        return 0
    print(json.dumps(generate(args.root.resolve(), args.events, args.runs, args.seed, args.workers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
