"""A long load's progress in the log: events read of the task's total, the rate, the part file being written.

The loader calls its `on_progress` callback after each group of chunks with the events read so far;
`LoadProgress` turns that into one line at most every `interval` seconds (and none for a load that
is over before the first interval).
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: At most this long between two progress lines of one load (seconds).
PROGRESS_SECONDS = 3.0


class LoadProgress:
    """The loader's `on_progress` callback for one task."""

    def __init__(
        self,
        task: str,
        *,
        total_events: int,
        rows_per_file: int,
        say: Callable[[str], None],
        interval: float = PROGRESS_SECONDS,
    ) -> None:
        self.task = task
        self.total = total_events
        self.rows_per_file = rows_per_file
        self.say = say
        self.interval = interval
        self.started = time.monotonic()
        self._last = self.started
        self.lines = 0

    def __call__(self, events_read: int) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        self.lines += 1
        elapsed = now - self.started
        share = f" ({100 * events_read / self.total:.1f}%)" if self.total else ""
        # the part file the next rows go to: exact unless duplicate (run, event) pairs were dropped
        part = events_read // self.rows_per_file
        self.say(
            f"task {self.task}: loading, {events_read:,} of {self.total:,} events read{share}, "
            f"{events_read / max(elapsed, 1e-9):,.0f} events/s, {part} part file(s) of {self.rows_per_file:,} rows "
            f"written, {elapsed:.0f}s"
        )
