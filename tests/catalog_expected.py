"""What the catalogue must answer on the test warehouse, computed directly from the events themselves
(tests.catalog_warehouse: the producer's synthetic inputs), with pyarrow and plain Python."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from tests.catalog_warehouse import CatalogCase

COPY_KEYS = (
    "dataset", "task", "job", "attempt", "input_guid", "lumi_block", "bcid", "timestamp", "timestamp_ns_offset",
)  # fmt: skip


def _rows(case: CatalogCase, datasets: Sequence[str]) -> list[dict[str, Any]]:
    table = case.events()
    return [r for r in table.to_pylist() if r["dataset"] in datasets]


def lookup(case: CatalogCase, keys: Sequence[tuple[int, int]], datasets: Sequence[str]) -> dict[str, Any]:
    """{(run, event): [copies sorted by dataset, task, job]} and the keys found nowhere."""
    wanted = set(keys)
    found: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for row in _rows(case, datasets):
        key = (row["run_number"], row["event_number"])
        if key in wanted:
            copy = {k: row[k] for k in COPY_KEYS}
            copy["provenance"] = row["provenance"]
            found[key].append(copy)
    for copies in found.values():
        copies.sort(key=lambda c: (c["dataset"], c["task"], c["job"], c["attempt"]))
    return {"found": dict(found), "missing": sorted(wanted - set(found))}


def bit_set(mask: bytes | None, bit: int) -> bool:
    """Bit i is bit i % 8 of byte i // 8, from the bytes."""
    return mask is not None and len(mask) > bit // 8 and bool(mask[bit // 8] >> (bit % 8) & 1)


def count(
    case: CatalogCase,
    datasets: Sequence[str],
    bits: Sequence[tuple[str, Any]],
    runs: tuple[int, int] | None = None,
    lumi: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Rows in range, rows per bit and per pair of bits; a bit given by name is looked up in the names of
    each row's task and input file (None: that menu lacks it)."""
    scanned = 0
    counts = np.zeros(len(bits), np.int64)
    pairs = np.zeros((len(bits), len(bits)), np.int64)
    for row in _rows(case, datasets):
        if runs and not runs[0] <= row["run_number"] <= runs[1]:
            continue
        if lumi and (row["lumi_block"] is None or not lumi[0] <= row["lumi_block"] <= lumi[1]):
            continue
        scanned += 1
        hits = []
        for mask, bit in bits:
            if isinstance(bit, str):
                names = case.trigger_names.get((row["dataset"], row["task"], row["input_guid"]), [])
                bit = names.index(bit) if bit in names else None
            hits.append(bit is not None and bit_set(row[mask], bit))
        vector = np.array(hits, np.int64)
        counts += vector
        pairs += np.outer(vector, vector)
    return {"scanned": scanned, "counts": counts.tolist(), "pairs": pairs.tolist()}


def dataset_overlap(case: CatalogCase, datasets: Sequence[str]) -> list[list[int]]:
    keys: dict[str, set[tuple[int, int]]] = {d: set() for d in datasets}
    for row in _rows(case, datasets):
        keys[row["dataset"]].add((row["run_number"], row["event_number"]))
    return [[len(keys[a] & keys[b]) for b in datasets] for a in datasets]


def duplicates(case: CatalogCase, datasets: Sequence[str]) -> dict[tuple[int, int], list[tuple[Any, ...]]]:
    """{(run, event): sorted copies (dataset, task, job, attempt, input_guid, lumi_block, loaded)} of keys held
    twice or more."""
    copies: dict[tuple[int, int], list[tuple[Any, ...]]] = defaultdict(list)
    for row in _rows(case, datasets):
        key = (row["run_number"], row["event_number"])
        copies[key].append((row["dataset"], row["task"], row["job"], row["attempt"], row["input_guid"],
                            row["lumi_block"], True))  # fmt: skip
    for dropped in case.dropped():
        if dropped["dataset"] in datasets:
            key = (dropped["run_number"], dropped["event_number"])
            copies[key].append((dropped["dataset"], dropped["task"], dropped["job"], dropped["attempt"],
                                dropped["input_guid"], dropped["lumi_block"], False))  # fmt: skip
    return {key: sorted(c) for key, c in copies.items() if len(c) > 1}


def sample_keys(case: CatalogCase, seed: int, n: int) -> list[tuple[int, int]]:
    """n distinct keys of committed rows, drawn at random."""
    table = case.events()
    rng = np.random.default_rng(seed)
    picked = rng.choice(table.num_rows, size=min(n, table.num_rows), replace=False)
    runs = table.column("run_number").take(pa.array(picked)).to_pylist()
    events = table.column("event_number").take(pa.array(picked)).to_pylist()
    return list(zip(runs, events, strict=True))
