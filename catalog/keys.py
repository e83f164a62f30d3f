"""Event keys: (run, event) pairs as users give them, and packed so that byte order is key order."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa

from catalog.errors import QueryError
from eventindex.columns import INTEGER_LIMITS

RUN_MAX = INTEGER_LIMITS["run_number"]
EVENT_MAX = INTEGER_LIMITS["event_number"]
#: The packed key of a row group without statistics: it may hold any key.
LOWEST = np.array([b"\x00" * 12], dtype="S12")[0]
HIGHEST = np.array([b"\xff" * 12], dtype="S12")[0]
REQUEST_SCHEMA = pa.schema([pa.field("run_number", pa.int64(), False), pa.field("event_number", pa.int64(), False)])

_PAIR = re.compile(r"\s*([0-9]+)\s*[:,\s]\s*([0-9]+)\s*")  # ASCII digits only: no other script's digits


def pack(runs: np.ndarray, events: np.ndarray) -> np.ndarray:
    """(run, event) pairs as 12-byte strings whose order and equality are those of the pairs."""
    packed = np.empty(len(runs), dtype=[("run", ">u4"), ("event", ">u8")])
    packed["run"] = runs
    packed["event"] = events
    return packed.view("S12").reshape(-1)


def parse_pair(text: str, where: str) -> tuple[int, int]:
    """`RUN:EVENT` (or `RUN EVENT`, `RUN,EVENT`) -> (run, event); QueryError naming `where` if malformed."""
    match = _PAIR.fullmatch(text)
    if match is None:
        raise QueryError(f"{where}: {text.strip()[:80]!r} is not RUN:EVENT (two non-negative integers)")
    run, event = int(match.group(1)), int(match.group(2))
    if run > RUN_MAX:
        raise QueryError(f"{where}: run {run} is out of range (at most {RUN_MAX})")
    if event > EVENT_MAX:
        raise QueryError(f"{where}: event {event} is out of range (at most {EVENT_MAX})")
    return run, event


def read_events_file(path: str) -> list[tuple[int, int]]:
    """An event list: one RUN:EVENT per line ('-' reads stdin); blank lines and `#` comments are skipped, and
    so is a byte-order mark at the start (editors on Windows write one)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_bytes().decode("utf-8")  # offsets in bytes
    except UnicodeDecodeError as exc:
        raise QueryError(f"events file {path}: not a text file (byte {exc.start} is not UTF-8)") from exc
    except OSError as exc:
        raise QueryError(f"events file {path}: cannot read it ({exc.strerror or exc})") from exc
    pairs = []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        content = line.split("#", 1)[0]
        if content.strip():
            pairs.append(parse_pair(content, f"{path} line {number}"))
    return pairs


def request_table(pairs: Iterable[tuple[int, int]]) -> pa.Table:
    """The distinct requested keys, sorted."""
    array = np.array(list(pairs), dtype=np.int64).reshape(-1, 2)
    if len(array):
        array = np.unique(array, axis=0)  # sorted by run, then event
    return pa.table([pa.array(array[:, 0]), pa.array(array[:, 1])], schema=REQUEST_SCHEMA)
