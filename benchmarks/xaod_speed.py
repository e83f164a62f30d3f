#!/usr/bin/env python3
"""ROOT reader speed: ATLAS xAOD layouts read into chunks, in events per CPU-second.

1. A 10,000-event xAOD-layout file written here with uproot as a Run-3 DAOD holds it (ZSTD, like
   the real Run-3 files of tests/data/root): the `CollectionTree` TTree with `EventInfoAuxDyn.*`
   (the MC weights vector included) and the `xTrigDecisionAux.*` trigger vectors, a
   `POOLCollectionTree` of tokens, `##Params` and `##Links`. The trigger words and weight vectors
   are those of the real Run-3 file, drawn at random per event (the weights varied by up to 5 %, so
   that they compress like real ones). Measured: `RootInput` -> `encode_chunk` (read, decode, build
   the Arrow events, encode compressed chunks), best of `--repeat` passes, with the reading and the
   encoding apart. Target: >= 100,000.
2. The 100-event ATLAS PHYSLITE RNTuple of tests/data/root: the same, in process; and a whole
   `ei-producer` process on it (file:// store, sqlite:// queue), its CPU time (user + system)
   including Python's start and imports, as the environment runs it and with every module's
   bytecode cached (as an installed package has it). Target: < 1 s.

    .venv/bin/python benchmarks/xaod_speed.py [--events 10000] [--chunk-events 10000] [--repeat 3]
                                              [--compression zstd|zlib|lz4|lzma]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import awkward as ak  # type: ignore[import-untyped]
import numpy as np
import uproot  # type: ignore[import-untyped]

from benchmarks.processes import tool
from eventindex.codec import encode_chunk
from producer.inputs.root import RootInput

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "root"
RUN3 = REAL / "uproot-issue-951.root"
RNTUPLE = REAL / "uproot-physlite-rntuple_v1-0-0-0.root"
FID = "5F0C1A2B-3C4D-4E5F-8A9B-0C1D2E3F4A5B"
TRIGGER = ("tbp", "tap", "tav", "efPassedPhysics", "efPassedThrough", "efResurrected")
EMPTY = ("lvl2PassedPhysics", "lvl2PassedThrough", "lvl2Resurrected")
COMPRESSION = {"zlib": uproot.ZLIB(1), "lz4": uproot.LZ4(1), "zstd": uproot.ZSTD(1), "lzma": uproot.LZMA(1)}


def write_xaod(path: Path, events: int, compression: str) -> None:
    """An xAOD-layout file of `events` events, trigger words and weights drawn from the real Run-3 file."""
    with uproot.open(RUN3) as real:
        tree = real["CollectionTree"]
        words = {name: tree[f"xTrigDecisionAux.{name}"].array(library="ak") for name in TRIGGER}
        weights = tree["EventInfoAuxDyn.mcEventWeights"].array(library="ak")
    rng = np.random.default_rng(5)
    pick = rng.integers(0, len(weights), events)
    numbers = np.arange(events, dtype=np.uint64) + 3_849_000
    empty = ak.unflatten(np.zeros(0, np.uint32), np.zeros(events, np.int64))  # Run 3: no L2, vectors left empty
    # Each event's weights varied by up to 5 %: as incompressible as real ones, not 50 vectors repeated.
    drawn = weights[pick]
    flat = ak.to_numpy(ak.flatten(drawn)) * rng.uniform(0.95, 1.05, int(ak.sum(ak.num(drawn))))
    noisy = ak.unflatten(flat.astype(np.float32), ak.num(drawn))
    info = {
        "EventInfoAuxDyn.runNumber": np.full(events, 410_000, np.uint32),
        "EventInfoAuxDyn.eventNumber": numbers,
        "EventInfoAuxDyn.lumiBlock": (np.arange(events) // 500 + 1).astype(np.uint32),
        "EventInfoAuxDyn.bcid": rng.integers(1, 3564, events).astype(np.uint32),
        "EventInfoAuxDyn.timeStamp": (1_625_000_000 + np.arange(events) // 100).astype(np.uint32),
        "EventInfoAuxDyn.timeStampNSOffset": rng.integers(0, 10**9, events).astype(np.uint32),
        "EventInfoAuxDyn.eventTypeBitmask": np.ones(events, np.uint32),
        "EventInfoAuxDyn.mcChannelNumber": np.full(events, 601_229, np.uint32),
        "EventInfoAuxDyn.mcEventWeights": noisy,
        "xTrigDecisionAux.smk": np.full(events, 3_863_438_068, np.uint32),
        **{f"xTrigDecisionAux.{name}": words[name][pick] for name in TRIGGER},
        **{f"xTrigDecisionAux.{name}": empty for name in EMPTY},
    }
    tokens = np.array(
        [
            f"[DB={FID}][CNT=POOLContainer(DataHeader)][CLID=4DDBD295-EFCE-472A-9EC8-15CD35A9EB8D]"
            f"[TECH=00000203][OID=00003B9400000062-{i:016X}]"
            for i in range(events)
        ],
        dtype=object,
    )
    collection = {"Token": tokens, "RunNumber": info["EventInfoAuxDyn.runNumber"], "EventNumber": numbers}
    link = "[DB=00000000-0000-0000-0000-000000000000][CNT=MetaData(StreamDAOD_PHYSLITE)][CLID=x][TECH=00000203]"
    with uproot.recreate(path, compression=COMPRESSION[compression]) as file:
        file.mktree("CollectionTree", info)
        file.mktree("POOLCollectionTree", collection)
        file.mktree("##Params", {"db_string": np.array([f"[NAME=FID][VALUE={FID}]"])})
        file.mktree("##Links", {"db_string": np.array([link])})


def read_to_chunks(path: Path, chunk_events: int, repeat: int) -> dict[str, float]:
    """Best events per CPU-second of open -> batches (Arrow events) -> encode_chunk, with the two parts."""
    best: dict[str, float] = {}
    events, size = 0, 0
    for _ in range(repeat):
        cpu = time.process_time()
        source = RootInput(path, None)
        tables = list(source.batches(chunk_events))
        read = time.process_time() - cpu
        objects = [encode_chunk(table) for table in tables]
        total = time.process_time() - cpu
        assert source.notes == [], source.notes
        events = sum(o.count for o in objects)
        size = sum(o.size for o in objects)
        for key, seconds in (("cpu_seconds", total), ("read_cpu_seconds", read), ("encode_cpu_seconds", total - read)):
            best[key] = min(best.get(key, seconds), seconds)
    return {
        "events": events,
        "events_per_cpu_second": round(events / best["cpu_seconds"]),
        **{key: round(seconds, 3) for key, seconds in best.items()},
        "read_events_per_cpu_second": round(events / best["read_cpu_seconds"]),
        "chunk_bytes_per_event": round(size / events, 1),
    }


def producer_process(path: Path, work: Path, job: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """A whole `ei-producer` run (the console script, as a job runs it) on `path` to a file:// store and a
    sqlite:// queue: (CPU seconds, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run(
        [tool("ei-producer"), "--task", "bench", "--job", job, "--attempt", "1",
         "--dataset", "bench", "--input", str(path), "--store", (work / "store").as_uri(),
         "--broker", f"sqlite://{work / 'queue.db'}", "--quiet"],
        check=True, cwd=ROOT, capture_output=True, env=env,
    )  # fmt: skip
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def producer_processes(path: Path, work: Path) -> dict[str, float]:
    """The process as this environment runs it, and with every module's bytecode cached, as an installed
    package has it (a first, unmeasured run writes the cache): with PYTHONDONTWRITEBYTECODE set, the
    first compiles the repository's modules (~0.07 CPU-s) every time."""
    cpu, wall = producer_process(path, work, "j1")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    producer_process(path, work, "j2", env)
    cached, _ = producer_process(path, work, "j3", env)
    return {
        "process_cpu_seconds": round(cpu, 3),
        "process_wall_seconds": round(wall, 3),
        "process_cpu_seconds_bytecode_cached": round(cached, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--chunk-events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compression", choices=sorted(COMPRESSION), default="zstd")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ei-xaod-speed-") as tmp:
        work = Path(tmp)
        path = work / "xaod.root"
        print(f"writing a {args.events:,}-event xAOD-layout file ({args.compression}) ...", file=sys.stderr)
        write_xaod(path, args.events, args.compression)
        xaod = read_to_chunks(path, args.chunk_events, args.repeat)
        xaod["file_bytes_per_event"] = round(path.stat().st_size / args.events, 1)
        print(
            f"xAOD TTree -> chunks: {xaod['events_per_cpu_second']:,} events per CPU-second "
            f"(reading alone {xaod['read_events_per_cpu_second']:,})",
            file=sys.stderr,
        )
        rntuple = read_to_chunks(RNTUPLE, args.chunk_events, args.repeat)
        rntuple.update(producer_processes(RNTUPLE, work))
        print(
            f"PHYSLITE RNTuple (100 events) -> chunks: {rntuple['cpu_seconds']} CPU-s in process, "
            f"{rntuple['process_cpu_seconds']} CPU-s for the whole ei-producer process "
            f"({rntuple['process_cpu_seconds_bytecode_cached']} with its bytecode cached)",
            file=sys.stderr,
        )
    print(json.dumps({"xaod_ttree": xaod, "physlite_rntuple": rntuple, "compression": args.compression}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
