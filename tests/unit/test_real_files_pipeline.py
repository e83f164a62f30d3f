"""The real ROOT files through the whole pipeline on the embedded default: producer -> file:// store and
sqlite:// queue -> supersink -> Parquet; the warehouse holds exactly the events uproot reads from them,
and the manifest tells how each file was read (trigger names, a fallback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventindex.codec import decode_manifest
from eventindex.columns import EVENT_SCHEMA
from eventindex.names import manifest_key
from eventindex.schema import eventindex_pb2 as pb
from eventindex.transport import open_publisher
from producer.inputs import open_input
from producer.job import JobRunner, JobSpec
from tests.helpers import SORT, Pipeline
from tests.real_files import FILES, RealFile, bit_names, expected_table


def produce(pipe: Pipeline, real: RealFile, branch_map: Path | None) -> pb.InputFileSummary:
    """One job of the file, 32 events per chunk; the manifest's summary of the file."""
    spec = JobSpec(task="task1", job="j1", attempt=1, dataset="ds", chunk_events=32)
    with open_publisher(pipe.broker) as publisher:
        result = JobRunner(spec, pipe.store, publisher).run([open_input(str(real.path), branch_map)])
    assert result.events == real.events and result.chunks == -(-real.events // 32)
    manifest = decode_manifest(pipe.store.get(manifest_key("task1", "j1", 1)))
    (summary,) = manifest.inputs
    assert summary.events == summary.unique_events == real.events
    return summary


@pytest.mark.parametrize("key", sorted(FILES))
def test_the_warehouse_holds_exactly_the_files_events(tmp_path: Path, key: str) -> None:
    real = FILES[key]
    pipe = Pipeline(tmp_path)
    summary = produce(pipe, real, real.branch_map)
    assert list(summary.notes) == []
    names = {t.column: list(t.names) for t in summary.trigger_names}
    assert names == {column: bit_names(real, column) for column in real.bits}
    pipe.expect(1, real.events)
    pipe.run_supersink()
    assert pipe.status()["state"] == "loaded"
    marker = json.loads((pipe.task_dir() / "_SUCCESS.json").read_text())
    assert marker.get("trigger_names", {}) == names, "the commit marker passes the bit names on to readers"
    loaded = pipe.loaded().select(EVENT_SCHEMA.names)
    wanted = expected_table(real).sort_by(SORT)
    assert loaded.num_rows == real.events
    assert loaded.schema.equals(EVENT_SCHEMA)
    for name in EVENT_SCHEMA.names:
        got = loaded.column(name).combine_chunks()
        assert got.equals(wanted.column(name).combine_chunks()), name


def test_the_manifest_says_when_the_collection_was_read_instead(tmp_path: Path) -> None:
    real = FILES["physlite-rntuple"]
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({"branches": {"run_number": ["EventInfoAuxDyn:none", "RunNumber"]}}))
    pipe = Pipeline(tmp_path / "pipe")
    summary = produce(pipe, real, mapped)
    (note,) = summary.notes
    assert "tree EventData has no run_number" in note and "POOL collection tree EventTag" in note
    pipe.expect(1, real.events)
    pipe.run_supersink()
    marker = json.loads((pipe.task_dir() / "_SUCCESS.json").read_text())
    assert marker["input_notes"] == [{"guid": summary.guid, "notes": [note]}]
