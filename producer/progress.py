"""The progress line a producer run draws on a terminal's stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from producer.job import Progress

#: The progress line is redrawn at most this often (seconds).
PROGRESS_INTERVAL = 0.2


def progress_printer(total: int | None = None) -> Callable[[Progress], None]:
    """The progress line; with the inputs' declared event count `total`, also the total and the percentage."""
    last = 0.0

    def show(progress: Progress) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PROGRESS_INTERVAL:
            return
        last = now
        mb_s = progress.bytes / 1e6 / max(progress.seconds, 1e-9)
        done = (
            f"{progress.events:,} of {total:,} events ({100 * progress.events / total:.1f}%)"
            if total
            else (f"{progress.events:,} events")
        )
        sys.stderr.write(f"\r  {done}  {progress.chunks} chunks  {mb_s:.1f} MB/s ")
        sys.stderr.flush()

    return show


def end_progress_line(show: Callable[[Progress], None] | None) -> None:
    """After a run that drew the progress line: end it, so what follows starts on a line of its own."""
    if show is not None:
        sys.stderr.write("\n")
