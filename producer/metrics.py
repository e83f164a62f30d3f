"""`ei-producer --metrics-file FILE`: a job's final figures in the Prometheus text format, for a node
exporter's textfile collector. Written atomically (a temporary file renamed over FILE) once the job ran,
whatever its outcome (not for --dry-run or a refused command line): the exit code always, the figures when
the job got as far as having them. The file is readable by all (0644) whatever the job's umask: the node
exporter reading it runs as another user.
No label names the task or the job: one file per node (or per slot) keeps the series bounded."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from pathlib import Path

PREFIX = "ei_producer_last_job"

#: The figures, and what each means.
FIGURES = {
    "events": "Events the job indexed",
    "chunks": "Chunk objects (or broker messages with --mode mq) the job wrote",
    "bytes": "Bytes of those chunks",
    "seconds": "Wall-clock seconds from the first event read to the manifest stored (the inputs already open)",
    "broker_messages": "Messages sent to the broker",
    "broker_bytes": "Bytes sent to the broker",
    "store_retries": "Store writes retried after a failure",
    "spooled": "Pointers spooled because no broker was reachable",
}


def write_metrics(path: Path, exit_code: int, figures: Mapping[str, float]) -> None:
    # Imported here: prometheus_client costs ~0.05 s of every producer start, and most runs write no metrics.
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    Gauge(f"{PREFIX}_exit_code", "Exit code of the last ei-producer run", registry=registry).set(exit_code)
    Gauge(f"{PREFIX}_end_timestamp_seconds", "When the last ei-producer run ended", registry=registry).set(time.time())
    for name, value in figures.items():
        Gauge(f"{PREFIX}_{name}", FIGURES[name], registry=registry).set(value)
    _replace(path, generate_latest(registry))


def _replace(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path` (a name the textfile collector skips: it reads
    `*.prom` only), mode 0644, and rename it over `path`; OSError when that fails, nothing left behind."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with open(fd, "wb") as file:
            os.fchmod(fd, 0o644)  # a job umask of 077 would leave it 0600, unreadable to the exporter
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
