"""Late data after a partial load: status names it, an amendment loads it once, readers see every event once."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from eventindex.columns import EVENT_SCHEMA
from eventindex.transport import open_consumer
from supersink.amend import NothingToAmendError, amend
from supersink.ledger import Ledger, TaskState
from supersink.service import Supersink
from supersink.warehouse import Warehouse
from tests.helpers import SORT, Pipeline, synthetic


def _sink(pipe: Pipeline, deadline: float | None = None) -> Supersink:
    return Supersink(
        Ledger(pipe.root / "ledger.db"),
        pipe.store,
        Warehouse.from_url((pipe.root / "wh").as_uri()),
        task_deadline=deadline,
    )


def _run(pipe: Pipeline, deadline: float | None = None) -> None:
    sink = _sink(pipe, deadline)
    with open_consumer(pipe.broker) as consumer:
        sink.run(consumer, threading.Event(), until_idle=0.3)
    sink.ledger.close()


def _force(pipe: Pipeline) -> None:
    sink = _sink(pipe)
    sink.force_load("task1")
    sink.ledger.close()


def _amend(pipe: Pipeline) -> dict[str, Any]:
    sink = _sink(pipe)
    try:
        return amend(
            sink.ledger, sink.warehouse, task="task1", store=pipe.store, assembly=sink.intake.assembly, owner=sink.owner
        )
    finally:
        sink.ledger.close()


def _reader_view(pipe: Pipeline) -> pa.Table:
    """What a reader pointed at the warehouse root with Hive partitioning sees, sorted."""
    dataset = pads.dataset(str(pipe.root / "wh"), format="parquet", partitioning="hive")
    return dataset.to_table().sort_by(SORT)


def _events(table: pa.Table) -> pa.Table:
    return table.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA)


def test_partial_load_then_late_job_then_amend_loads_every_event_once(pipe: Pipeline) -> None:
    pipe.expect(3)
    pipe.produce("j1", 1)
    pipe.produce("j2", 2)
    _run(pipe)
    _force(pipe)
    assert pipe.status()["state"] == "loaded-partial"
    pipe.produce("j3", 3)
    _run(pipe)
    st = pipe.status()
    assert st["state"] == "loaded-partial"
    assert st["late_jobs"] == [{"job": "j3", "attempt": 1, "events": 3_000}]
    amendment = _amend(pipe)
    assert amendment["amendment"] == 1 and amendment["rows"] == 3_000 and amendment["partial"] is False
    st = pipe.status()
    assert (st["state"], st["events_loaded"], st["late_jobs"]) == ("loaded", 9_000, [])
    expected = synthetic(1, 2, 3)
    seen = _reader_view(pipe)
    assert seen.column("task").unique().to_pylist() == ["task1"]
    assert seen.column("dataset").unique().to_pylist() == ["ds"]
    assert _events(seen).equals(expected), "a reader of the partition tree sees every event once"
    with pytest.raises(NothingToAmendError):
        _amend(pipe)


def test_two_amendments_in_a_row_and_a_late_copy_of_loaded_events_is_not_loaded_again(pipe: Pipeline) -> None:
    pipe.expect(4)
    pipe.produce("j1", 1)
    _run(pipe)
    _force(pipe)
    pipe.produce("j2", 2)
    _run(pipe)
    first = _amend(pipe)
    assert (first["amendment"], first["partial"]) == (1, True)
    pipe.produce("j3", 1)  # the same input as j1: its events are in the warehouse already
    pipe.produce("j4", 4)
    _run(pipe)
    second = _amend(pipe)
    assert (second["amendment"], second["partial"], second["rows"]) == (2, False, 3_000)
    assert second["duplicates"]["count"] == 3_000
    listed = (pipe.task_dir() / "_DUPLICATES-a0002.json").read_text()
    assert '"loaded_earlier": true' in listed and '"job": "j3"' in listed
    assert _events(_reader_view(pipe)).equals(synthetic(1, 2, 4))
    st = pipe.status()
    assert (st["state"], st["events_loaded"]) == ("loaded", 9_000)


def test_a_crash_after_the_amendment_commit_is_adopted_not_loaded_twice(pipe: Pipeline) -> None:
    pipe.expect(2)
    pipe.produce("j1", 1)
    _run(pipe)
    _force(pipe)
    pipe.produce("j2", 2)
    _run(pipe)
    _amend(pipe)
    # As if the ledger had not been told: put back the partial commit's view.
    ledger = Ledger(pipe.root / "ledger.db")
    row = ledger.task("task1")
    assert row is not None and row.marker is not None
    marker = dict(row.marker)
    marker["attempts"] = {"j1": 1}
    marker["rows"], marker["partial"] = 3_000, True
    del marker["amendments"]
    with ledger.transaction():
        ledger.mark_loaded(
            "task1", events=3_000, location=str(pipe.task_dir()), marker=marker, state=TaskState.LOADED_PARTIAL
        )
    ledger.close()
    with pytest.raises(NothingToAmendError):
        _amend(pipe)
    st = pipe.status()
    assert (st["state"], st["events_loaded"]) == ("loaded", 6_000)
    assert _events(_reader_view(pipe)).equals(synthetic(1, 2))


def test_a_deadline_failed_task_that_completes_later_loads_whole(pipe: Pipeline) -> None:
    pipe.expect(2)
    pipe.produce("j1", 1)
    _run(pipe, deadline=0.0)
    assert pipe.status()["state"] == "failed"
    pipe.produce("j2", 2)
    _run(pipe, deadline=0.0)
    st = pipe.status()
    assert (st["state"], st["events_loaded"], st["partial"]) == ("loaded", 6_000, False)
    assert _events(_reader_view(pipe)).equals(synthetic(1, 2))
