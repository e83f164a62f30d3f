"""Per-input-file validation: events, unique (run, event) pairs, per-run ranges, declared counts,
and (run, event) pairs that two input files of one job share."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from eventindex.columns import event_keys
from eventindex.schema import eventindex_pb2 as pb
from producer.inputs.base import InputSource


def _distinct(runs: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (run, event) pairs, sorted by run then event."""
    if len(runs) > 1:
        later = runs[1:] > runs[:-1]
        if not np.all(later | ((runs[1:] == runs[:-1]) & (events[1:] > events[:-1]))):
            order = np.lexsort((events, runs))
            runs, events = runs[order], events[order]
            keep = np.ones(len(runs), dtype=bool)
            np.not_equal(runs[1:], runs[:-1], out=keep[1:])
            keep[1:] |= events[1:] != events[:-1]
            runs, events = runs[keep], events[keep]
    return runs, events


class FileSummaryBuilder:
    """Accumulates the keys of one input file's events; `finish()` gives its manifest entry."""

    def __init__(self, source: InputSource, start_time_ms: int) -> None:
        self.source = source
        self.start_time_ms = start_time_ms
        self._runs: list[np.ndarray] = []
        self._events: list[np.ndarray] = []
        self.events = 0
        #: The file's distinct (run, event) pairs, sorted (runs, events), once finished.
        self.unique: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.int64), np.empty(0, np.int64))

    def add(self, table: pa.Table) -> None:
        runs, events = event_keys(table)
        self._runs.append(runs)
        self._events.append(events)
        self.events += len(runs)

    def finish(self, end_time_ms: int) -> pb.InputFileSummary:
        runs = np.concatenate(self._runs) if self._runs else np.empty(0, np.int64)
        events = np.concatenate(self._events) if self._events else np.empty(0, np.int64)
        self._runs, self._events = [], []
        self.unique = unique_runs, unique_events = _distinct(runs, events)
        declared = self.source.declared_events
        summary = pb.InputFileSummary(
            guid=self.source.guid,
            name=self.source.name,
            events=self.events,
            unique_events=len(unique_runs),
            declared_events=-1 if declared is None else declared,
            start_time_ms=self.start_time_ms,
            end_time_ms=end_time_ms,
            notes=list(self.source.notes),
        )
        for column, names in self.source.trigger_names.items():
            summary.trigger_names.add(column=column, names=list(names))
        if len(unique_runs):
            numbers, starts, counts = np.unique(unique_runs, return_index=True, return_counts=True)
            per_run = dict(zip(*np.unique(runs, return_counts=True), strict=True))
            for run, start, count in zip(numbers, starts, counts, strict=True):
                summary.runs.add(
                    run_number=int(run),
                    first_event=int(unique_events[start]),
                    last_event=int(unique_events[start + count - 1]),
                    events=int(per_run[run]),
                )
        return summary


def problems(summary: pb.InputFileSummary) -> list[str]:
    """What is inconsistent in a file: declared vs read counts, duplicate (run, event) pairs."""
    found = []
    if summary.declared_events >= 0 and summary.declared_events != summary.events:
        found.append(f"{summary.name}: the file declares {summary.declared_events} events, {summary.events} were read")
    if summary.unique_events != summary.events:
        found.append(f"{summary.name}: {summary.events - summary.unique_events} duplicate (run, event) pairs")
    return found


class JobInputs:
    """The input files of one job attempt: what is inconsistent in each file (`finish`, as each is
    read), and the (run, event) pairs that two of them share (`shared`, once all are read)."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._keys: list[tuple[np.ndarray, np.ndarray]] = []  # each file's distinct keys

    def finish(self, builder: FileSummaryBuilder, end_time_ms: int) -> tuple[pb.InputFileSummary, list[str]]:
        """The file's manifest entry and its own problems."""
        summary = builder.finish(end_time_ms)
        self._names.append(summary.name)
        self._keys.append(builder.unique)
        return summary, problems(summary)

    def shared(self) -> list[str]:
        """One line per two files that hold some of the same (run, event) pairs, with how many and the first."""
        if len(self._keys) < 2:
            return []
        runs = np.concatenate([runs for runs, _ in self._keys])
        events = np.concatenate([events for _, events in self._keys])
        owner = np.repeat(np.arange(len(self._keys)), [len(runs) for runs, _ in self._keys])
        order = np.lexsort((owner, events, runs))
        runs, events, owner = runs[order], events[order], owner[order]
        # Pairs are distinct within a file: equal neighbours come from two files.
        same = np.flatnonzero((runs[1:] == runs[:-1]) & (events[1:] == events[:-1]))
        if not len(same):
            return []
        files = owner[same] * len(self._keys) + owner[same + 1]
        pairs, first, counts = np.unique(files, return_index=True, return_counts=True)
        found = []
        for pair, at, count in zip(pairs.tolist(), first.tolist(), counts.tolist(), strict=True):
            a, b = divmod(pair, len(self._keys))
            where = same[at]
            found.append(
                f"{self._names[a]} and {self._names[b]} hold {count} of the same (run, event) pairs, "
                f"the first (run {int(runs[where])}, event {int(events[where])})"
            )
        return found
