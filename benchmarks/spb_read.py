#!/usr/bin/env python3
"""SPB reader benchmark: events/s of `SpbInput.batches()` on an ATLAS-layout `*.ei.spb` file.

Setup (not measured): synthetic events (`SyntheticInput(events, seed)`: 512-bit L1 masks,
8192-bit HLT masks, three provenance tokens per event) are written with
`benchmarks.spb_writer` in the original producer's layout, split into `--files` input
files (BeginGUID..EndGUID blocks). Measured: reading the whole file back into Arrow tables of
`--max-rows` events (gunzip, record framing, protobuf decoding, run-length decoding of the
masks, token parsing, all the checks), wall clock and CPU time of the one of `--repeat` runs
that took the least CPU time.

    .venv/bin/python benchmarks/spb_read.py [--events 200000] [--max-rows 10000] [--repeat 3]
                                            [--file PATH] [--keep]

`--file PATH` reuses (or creates, with --keep) that file instead of a temporary one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from benchmarks.spb_writer import write_tables
from producer.inputs.spb import SpbInput
from producer.inputs.synthetic import SyntheticInput


def build(path: Path, events: int, files: int, seed: int) -> None:
    source = SyntheticInput(events, seed)
    per_file = -(-events // files)
    tables = source.batches(per_file)

    def one(table: pa.Table) -> Iterator[pa.Table]:
        for start in range(0, table.num_rows, 10_000):
            yield table.slice(start, 10_000)

    inputs = []
    for index, table in enumerate(tables):
        guid = source.guid if index == 0 else f"{index:08X}-0000-4000-8000-{seed:012X}"
        inputs.append((guid, one(table)))
    write_tables(path, inputs, compresslevel=6)


def measure(path: Path, max_rows: int) -> tuple[int, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    events = 0
    for table in SpbInput(path).batches(max_rows):
        events += table.num_rows
    return events, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=1, help="input files (BeginGUID blocks) in the SPB file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-rows", type=int, default=10_000, help="events per Arrow batch (the chunk size)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--file", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file or Path(tmp) / "bench.ei.spb"
        if not path.exists():
            started = time.perf_counter()
            build(path, args.events, args.files, args.seed)
            print(
                f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {args.events:,} events) "
                f"in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
        runs = [measure(path, args.max_rows) for _ in range(args.repeat)]
        events, wall, cpu = min(runs, key=lambda run: run[2])  # the least CPU: the figure is per CPU-second
        size = path.stat().st_size
        print(
            f"SpbInput: {events:,} events in {wall:.2f} s wall ({cpu:.2f} s CPU): "
            f"{events / wall:,.0f} events/s wall, {events / cpu:,.0f} events/s per CPU second, "
            f"{size / wall / 1e6:.1f} MB/s compressed"
        )
        if args.keep and args.file is None:
            kept = Path.cwd() / "bench.ei.spb"
            path.replace(kept)
            print(f"kept {kept}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
