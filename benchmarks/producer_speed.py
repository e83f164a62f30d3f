#!/usr/bin/env python3
"""Producer speed: events/s per core (CPU-second) of the producer's two halves.

1. events -> chunk bytes: parsed events (Arrow tables already in memory) encoded into
   compressed, checksummed chunk objects (columnar protobuf body, zstd, header). This is the
   producer's own overhead per event, the figure the issue's 300,000 events/s target is about.
2. SPB file -> uploaded chunks: a whole job on an ATLAS-layout `*.ei.spb` file (read, decode
   trigger masks and tokens, encode, upload to a real SeaweedFS started here on loopback, and
   announce each chunk on the embedded queue), wall and CPU time of the one of `--repeat` jobs
   (attempts 1, 2, ...) that took the least CPU.

    .venv/bin/python -m benchmarks.producer_speed [--events 200000] [--chunk-events 10000]
                                                  [--spb-events 50000] [--repeat 3]

(from the repository root: SeaweedFS is started by `testservers`, which is not installed)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from benchmarks.spb_writer import write_tables
from eventindex.codec import encode_chunk
from eventindex.store import open_store
from eventindex.transport import open_publisher
from producer.inputs.spb import SpbInput
from producer.inputs.synthetic import SyntheticInput
from producer.job import JobRunner, JobSpec
from testservers import SeaweedFS


def encode_rate(tables: list[pa.Table], repeat: int) -> tuple[float, float]:
    """Best (events per CPU-second, bytes per event) over `repeat` passes."""
    events = sum(t.num_rows for t in tables)
    best = 0.0
    size = 0
    for _ in range(repeat):
        cpu = time.process_time()
        size = sum(encode_chunk(t).size for t in tables)
        best = max(best, events / (time.process_time() - cpu))
    return best, size / events


def spb_job(work: Path, events: int, chunk_events: int, repeat: int) -> dict[str, float]:
    """The job `repeat` times (attempts 1, 2, ...): the figures of the one that took the least CPU."""
    path = work / "job.ei.spb"
    source = SyntheticInput(events, 11)
    write_tables(path, [(source.guid, source.batches(10_000))], compresslevel=6)
    with SeaweedFS(work / "seaweedfs") as seaweed:
        seaweed.create_bucket("bench")
        os.environ.update(seaweed.client_env())
        store = open_store(f"s3://bench/chunks?endpoint={seaweed.endpoint}")
        runs = []
        with open_publisher(f"sqlite://{work / 'queue.db'}") as publisher:
            for attempt in range(1, repeat + 1):
                spec = JobSpec(task="bench", job="job1", attempt=attempt, dataset="bench", chunk_events=chunk_events)
                wall, cpu = time.perf_counter(), time.process_time()
                result = JobRunner(spec, store, publisher).run([SpbInput(path)])
                runs.append((time.process_time() - cpu, time.perf_counter() - wall))
        store.close()
    cpu, wall = min(runs)
    return {
        "events": result.events,
        "chunks": result.chunks,
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "events_per_second": round(result.events / wall),
        "events_per_cpu_second": round(result.events / cpu),
        "spb_bytes_per_event": round(path.stat().st_size / events, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--chunk-events", type=int, default=10_000)
    parser.add_argument("--spb-events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"generating {args.events:,} synthetic events ...", file=sys.stderr)
    tables = list(SyntheticInput(args.events, 7).batches(args.chunk_events))
    rate, per_event = encode_rate(tables, args.repeat)
    print(f"events -> chunk bytes: {rate:,.0f} events per CPU-second, {per_event:.1f} B/event", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="ei-producer-speed-") as tmp:
        print(f"SPB job of {args.spb_events:,} events to SeaweedFS ...", file=sys.stderr)
        job = spb_job(Path(tmp), args.spb_events, args.chunk_events, args.repeat)
    print(f"SPB file -> uploaded chunks: {job['events_per_cpu_second']:,} events per CPU-second", file=sys.stderr)
    print(json.dumps({
        "encode_events_per_cpu_second": round(rate),
        "chunk_bytes_per_event": round(per_event, 1),
        "spb_job": job,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
