"""A job out of file descriptors is told so, whatever the format of the input it was opening: the job's
limits (exit 2, naming `ulimit -n`), never "a bad input" (exit 3, which a workflow system takes as a
verdict on the file). Only the ROOT reader knew; SPB, JSON lines and Parquet said "cannot open" or
"not a readable Parquet file"."""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.spb_writer import write_tables
from eventindex.errors import ConfigError, InputError
from producer.inputs import jsonl, open_input, parquet, spb
from producer.inputs.base import InputSource
from producer.inputs.common import descriptors_exhausted, unreadable
from producer.inputs.synthetic import SyntheticInput

GUID = "11111111-2222-3333-4444-555555555555"
READERS = (spb, jsonl, parquet)  # imported here: open_input imports them when first asked, which takes a descriptor


@contextlib.contextmanager
def no_descriptor_left() -> Iterator[None]:
    """The soft limit of open files set to the lowest free descriptor: the next open fails with EMFILE."""
    free = os.open(os.devnull, os.O_RDONLY)
    os.close(free)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _events() -> pa.Table:
    return pa.concat_tables(SyntheticInput(50, 3).batches(50))


def _spb(path: Path) -> str:
    write_tables(path / "in.ei.spb", [(GUID, [_events()])])
    return str(path / "in.ei.spb")


def _jsonl(path: Path) -> str:
    (path / "in.jsonl").write_text("".join(f'{{"run_number": 1, "event_number": {n}}}\n' for n in range(5)))
    return str(path / "in.jsonl")


def _parquet(path: Path) -> str:
    pq.write_table(pa.table({"run_number": [1, 1], "event_number": [1, 2]}), path / "in.parquet")
    return str(path / "in.parquet")


def _read(source: InputSource) -> None:
    for _ in source.batches(1000):
        pass


@pytest.mark.parametrize("make", [_spb, _jsonl, _parquet], ids=["spb", "jsonl", "parquet"])
@pytest.mark.parametrize("when", ["opening", "reading"])
def test_an_input_opened_without_a_descriptor_left_is_the_jobs_limit_not_a_bad_file(
    tmp_path: Path, make: Callable[[Path], str], when: str
) -> None:
    spec = make(tmp_path)
    source = open_input(spec) if when == "reading" else None
    with no_descriptor_left(), pytest.raises(ConfigError) as info:
        _read(source or open_input(spec))
    message = str(info.value)
    assert message.startswith(f"{spec}: ") or message.startswith(f"input {spec}: "), message
    assert "Too many open files" in message and "ulimit -n" in message and "\n" not in message, message
    _read(open_input(spec))  # with descriptors again, the same file reads: it never was the file's fault


def test_only_running_out_of_descriptors_is_the_jobs_limit() -> None:
    assert descriptors_exhausted(OSError(24, os.strerror(24)))
    assert descriptors_exhausted(OSError(23, os.strerror(23)))  # ENFILE: the system's table is full
    # pyarrow's error carries the reason in its text only
    assert descriptors_exhausted(OSError("Failed to open local file 'x'. Detail: [errno 24] Too many open files"))
    assert not descriptors_exhausted(OSError(5, "Input/output error"))
    assert not descriptors_exhausted(ValueError("Too many open files"))
    assert isinstance(unreadable("f", OSError(5, "Input/output error"), "cannot open: I/O error"), InputError)
    enfile = unreadable("f", OSError(23, os.strerror(23)), "")
    assert isinstance(enfile, ConfigError) and str(enfile).startswith("f: Too many open files in system: ")
