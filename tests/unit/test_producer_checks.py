"""Producer-side refusals: (run, event) pairs shared by two input files of a job, event numbers the
warehouse cannot hold, a directory given as an input, a branch map that cannot be read."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from eventindex.errors import InputError
from producer.inputs import open_input
from producer.job import JobSpec, check_inputs
from producer.summary import FileSummaryBuilder, JobInputs


def jsonl(path: Path, pairs: list[tuple[int, int]]) -> Path:
    path.write_text("".join(json.dumps({"run_number": run, "event_number": event}) + "\n" for run, event in pairs))
    return path


def spec(allow_mismatch: bool = False) -> JobSpec:
    return JobSpec(task="t", job="j", attempt=1, dataset="d", chunk_events=2, allow_mismatch=allow_mismatch)


def test_pairs_shared_by_two_files_of_a_job_are_refused_naming_both(tmp_path: Path) -> None:
    a = jsonl(tmp_path / "a.jsonl", [(1, 1), (1, 2), (1, 3), (2, 7)])
    b = jsonl(tmp_path / "b.jsonl", [(1, 4), (2, 7), (1, 3)])
    c = jsonl(tmp_path / "c.jsonl", [(3, 1)])
    with pytest.raises(InputError) as info:
        check_inputs(spec(), [open_input(str(c)), open_input(str(a)), open_input(str(b))])
    text = str(info.value)
    assert f"{a} and {b} hold 2 of the same (run, event) pairs, the first (run 1, event 3)" in text
    assert "--allow-mismatch" in text and str(c) not in text
    result = check_inputs(spec(allow_mismatch=True), [open_input(str(a)), open_input(str(b))])
    assert result.events == 7 and len(result.problems) == 1 and str(b) in result.problems[0]


def test_files_without_shared_pairs_pass(tmp_path: Path) -> None:
    a = jsonl(tmp_path / "a.jsonl", [(1, 1), (2, 1)])
    b = jsonl(tmp_path / "b.jsonl", [(1, 2), (3, 1)])  # the same event number in another run is another event
    assert check_inputs(spec(), [open_input(str(a)), open_input(str(b))]).problems == ()


def test_job_inputs_name_every_two_files_that_share_pairs(tmp_path: Path) -> None:
    inputs = JobInputs()
    files = (("a", [(1, 1), (5, 5)]), ("b", [(1, 2), (1, 2)]), ("c", [(1, 2), (1, 1), (9, 9)]), ("d", [(1, 3)]))
    for name, pairs in files:
        builder = FileSummaryBuilder(open_input(str(jsonl(tmp_path / f"{name}.jsonl", pairs))), 0)
        builder.add(pa.table({"run_number": [r for r, _ in pairs], "event_number": [e for _, e in pairs]}))
        assert inputs.finish(builder, 1)[1] == (
            [f"{tmp_path / 'b.jsonl'}: 1 duplicate (run, event) pairs"] if name == "b" else []
        )
    same = "hold 1 of the same (run, event) pairs, the first"
    assert inputs.shared() == [
        f"{tmp_path / 'a.jsonl'} and {tmp_path / 'c.jsonl'} {same} (run 1, event 1)",
        f"{tmp_path / 'b.jsonl'} and {tmp_path / 'c.jsonl'} {same} (run 1, event 2)",
    ]


def test_summaries_of_unsorted_files_with_repeats() -> None:
    builder = FileSummaryBuilder(open_input("synthetic:1"), 0)
    builder.add(pa.table({"run_number": [7, 3, 7, 3, 7], "event_number": [9, 4, 2, 4, 9]}))
    summary = builder.finish(1)
    assert (summary.events, summary.unique_events) == (5, 3)
    assert [(r.run_number, r.first_event, r.last_event, r.events) for r in summary.runs] == [(3, 4, 4, 2), (7, 2, 9, 3)]
    assert [v.tolist() for v in builder.unique] == [[3, 7, 7], [4, 2, 9]]
