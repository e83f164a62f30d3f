"""The real ROOT files through the whole pipeline on the embedded default: producer -> file:// store and
sqlite:// queue -> supersink -> Parquet; the warehouse holds exactly the events uproot reads from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventindex.columns import EVENT_SCHEMA
from eventindex.transport import open_publisher
from producer.inputs import open_input
from producer.job import JobRunner, JobSpec
from tests.helpers import SORT, Pipeline
from tests.real_files import FILES, expected_table


@pytest.mark.parametrize("key", sorted(FILES))
def test_the_warehouse_holds_exactly_the_files_events(tmp_path: Path, key: str) -> None:
    real = FILES[key]
    pipe = Pipeline(tmp_path)
    spec = JobSpec(task="task1", job="j1", attempt=1, dataset="ds", chunk_events=32)
    with open_publisher(pipe.broker) as publisher:
        result = JobRunner(spec, pipe.store, publisher).run([open_input(str(real.path), real.branch_map)])
    assert result.events == real.events and result.chunks == -(-real.events // 32)
    pipe.expect(1, real.events)
    pipe.run_supersink()
    assert pipe.status()["state"] == "loaded"
    loaded = pipe.loaded().select(EVENT_SCHEMA.names)
    wanted = expected_table(real).sort_by(SORT)
    assert loaded.num_rows == real.events
    assert loaded.schema.equals(EVENT_SCHEMA)
    for name in EVENT_SCHEMA.names:
        got = loaded.column(name).combine_chunks()
        assert got.equals(wanted.column(name).combine_chunks()), name
