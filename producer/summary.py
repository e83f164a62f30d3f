"""Per-input-file validation: events, unique (run, event) pairs, per-run ranges, declared counts,
and (run, event) pairs that two input files of one job share."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from eventindex.columns import event_keys
from eventindex.schema import eventindex_pb2 as pb
from producer.inputs.base import InputSource

_KEY = np.dtype([("run", "<i8"), ("event", "<i8")])


class FileSummaryBuilder:
    """Accumulates the keys of one input file's events; `finish()` gives its manifest entry."""

    def __init__(self, source: InputSource, start_time_ms: int) -> None:
        self.source = source
        self.start_time_ms = start_time_ms
        self._keys: list[np.ndarray] = []
        self.events = 0
        #: The file's distinct (run, event) pairs, sorted, once finished.
        self.unique = np.empty(0, dtype=_KEY)

    def add(self, table: pa.Table) -> None:
        runs, events = event_keys(table)
        keys = np.empty(len(runs), dtype=_KEY)
        keys["run"] = runs
        keys["event"] = events
        self._keys.append(keys)
        self.events += len(runs)

    def finish(self, end_time_ms: int) -> pb.InputFileSummary:
        keys = np.concatenate(self._keys) if self._keys else np.empty(0, dtype=_KEY)
        self._keys = []
        unique = self.unique = np.unique(keys)
        declared = self.source.declared_events
        summary = pb.InputFileSummary(
            guid=self.source.guid,
            name=self.source.name,
            events=self.events,
            unique_events=len(unique),
            declared_events=-1 if declared is None else declared,
            start_time_ms=self.start_time_ms,
            end_time_ms=end_time_ms,
            notes=list(self.source.notes),
        )
        for column, names in self.source.trigger_names.items():
            summary.trigger_names.add(column=column, names=list(names))
        if len(unique):
            runs, starts, counts = np.unique(unique["run"], return_index=True, return_counts=True)
            for run, start, count in zip(runs, starts, counts, strict=True):
                summary.runs.add(
                    run_number=int(run),
                    first_event=int(unique["event"][start]),
                    last_event=int(unique["event"][start + count - 1]),
                    events=int(np.count_nonzero(keys["run"] == run)),
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
    """The input files of one job attempt, summarised in order: what is inconsistent in each file,
    and the (run, event) pairs it shares with a file read before (an event indexed twice)."""

    def __init__(self) -> None:
        self._read: list[tuple[str, np.ndarray]] = []  # (file name, its sorted distinct keys)

    def finish(self, builder: FileSummaryBuilder, end_time_ms: int) -> tuple[pb.InputFileSummary, list[str]]:
        """The file's manifest entry and its problems."""
        summary = builder.finish(end_time_ms)
        found = problems(summary)
        for name, keys in self._read:
            shared = np.intersect1d(keys, builder.unique, assume_unique=True)
            if len(shared):
                run, event = (int(value) for value in shared[0])
                found.append(
                    f"{name} and {summary.name} hold {len(shared)} of the same (run, event) pairs, "
                    f"the first (run {run}, event {event})"
                )
        self._read.append((summary.name, builder.unique))
        return summary, found
