"""The questions, written once for every engine: event picking, trigger counts and overlaps, dataset
overlaps, duplicates. Each prunes with the index, has the engine read the remaining committed files,
and returns an :class:`Answer` whose rows are sorted, so that both engines give the same bytes.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalog.bits import BitSpec, NameResolver, Rows, Slice
from catalog.engines import DATA_VIEW
from catalog.errors import CatalogIndexError, QueryError
from catalog.index import FileEntry, IndexView
from catalog.kernels import BitQuery, Tally
from catalog.keys import pack
from catalog.selection import (
    Range,
    files_sharing_keys,
    files_with_keys,
    files_with_rows,
    match_datasets,
    refuse_damaged,
)
from catalog.session import Session
from eventindex.columns import PROVENANCE_TYPE
from eventindex.errors import EventIndexError
from eventindex.warehouse import MAX_CONTROL_BYTES, partition

#: Conditions on the requested runs and events are pushed into the scan up to this many values.
PUSHDOWN_VALUES = 1_000
#: Bits of a dataset membership mask (a BIGINT).
MAX_DATASETS = 62


@dataclass
class Answer:
    """An answer: its rows for table and CSV output, and its JSON document (built when asked for)."""

    table: pa.Table
    document: Callable[[], dict[str, Any]]


def _nullable(typ: pa.DataType) -> pa.DataType:
    """The type with every nested field nullable (engines differ in the nullability they report)."""
    if pa.types.is_list(typ):
        return pa.list_(_nullable(typ.value_type))
    if pa.types.is_struct(typ):
        return pa.struct([pa.field(f.name, _nullable(f.type)) for f in typ])
    return typ


REFERENCE = _nullable(PROVENANCE_TYPE.value_type)
COPY_FIELDS = [
    pa.field("run_number", pa.int64()),
    pa.field("event_number", pa.int64()),
    pa.field("dataset", pa.string()),
    pa.field("task", pa.string()),
    pa.field("job", pa.string()),
    pa.field("attempt", pa.int32()),
    pa.field("input_guid", pa.string()),
    pa.field("lumi_block", pa.int64()),
]
LOOKUP_SCHEMA = pa.schema(
    [
        *COPY_FIELDS,
        pa.field("bcid", pa.int64()),
        pa.field("timestamp", pa.int64()),
        pa.field("timestamp_ns_offset", pa.int64()),
        pa.field("file", pa.string()),
        pa.field("provenance", pa.list_(REFERENCE)),
    ]
)
DUPLICATE_SCHEMA = pa.schema([*COPY_FIELDS, pa.field("file", pa.string()), pa.field("loaded", pa.bool_())])
_ORDER = ["run_number", "event_number", "dataset", "task", "job", "attempt", "file", "input_guid", "loaded"]


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """An engine's result in the answer's schema: columns in order and types, `file` as the part file's name."""
    columns = []
    for field in schema:
        column = table.column(field.name)
        if field.name == "file":
            column = pc.replace_substring_regex(column.cast(pa.string()), r"^.*/", "")
        columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _sorted(table: pa.Table) -> pa.Table:
    keys = [(name, "ascending", "at_end") for name in _ORDER if name in table.schema.names]
    return table.sort_by(keys).combine_chunks()


def _values(numbers: np.ndarray) -> str:
    return ", ".join(str(int(v)) for v in numbers)


# ---------------------------------------------------------------- event picking


def lookup(session: Session, requests: pa.Table, dataset_globs: Sequence[str]) -> Answer:
    """Every committed row of each requested (run, event), and the requests found nowhere."""
    view = session.view(dataset_globs)
    datasets = match_datasets(view, dataset_globs)
    runs = requests.column("run_number").to_numpy()
    events = requests.column("event_number").to_numpy()
    files = files_with_keys(view, datasets, _keys(requests))
    found = pa.Table.from_pylist([], schema=LOOKUP_SCHEMA)
    if files:
        engine = session.engine
        engine.use_data(files)
        engine.register("ei_requests", requests)
        where = []
        distinct_runs = np.unique(runs)
        if len(distinct_runs) <= PUSHDOWN_VALUES:
            where.append(f"d.run_number IN ({_values(distinct_runs)})")
        if len(events) <= PUSHDOWN_VALUES:
            where.append(f"d.event_number IN ({_values(np.unique(events))})")
        table = engine.pick([f.name for f in LOOKUP_SCHEMA], where, requests.num_rows)
        found = _sorted(_conform(table, LOOKUP_SCHEMA))
    missing = _missing(requests, found)
    return Answer(_lookup_rows(found, missing), lambda: _lookup_document(requests, found, missing))


def _keys(table: pa.Table) -> np.ndarray:
    return pack(table.column("run_number").to_numpy(), table.column("event_number").to_numpy())


def _missing(requests: pa.Table, found: pa.Table) -> pa.Table:
    """The requests (sorted, distinct) that no row answers."""
    return requests.filter(pa.array(~np.isin(_keys(requests), _keys(found))))


def _lookup_rows(found: pa.Table, missing: pa.Table) -> pa.Table:
    """One row per provenance reference of each copy found (one row for a copy without any), then one
    row per request found nowhere."""
    refs = found.column("provenance").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(refs), 0).to_numpy()
    take = np.repeat(np.arange(found.num_rows), np.maximum(lengths, 1))
    flat = pc.list_flatten(refs)
    ref_index = np.full(len(take), -1, dtype=np.int64)
    has_refs = np.repeat(lengths > 0, np.maximum(lengths, 1))
    ref_index[has_refs] = np.arange(len(flat))
    ref_rows = flat.take(pa.array(ref_index, mask=~has_refs)).flatten()  # null where a copy has no reference
    base = found.drop_columns(["provenance"]).take(pa.array(take))
    columns = {"status": pa.array(["found"] * len(take), pa.string())}
    columns.update({name: base.column(name) for name in base.schema.names})
    columns.update({f.name: values for f, values in zip(REFERENCE, ref_rows, strict=True)})
    rows = pa.table(columns)
    if missing.num_rows:
        absent = {"status": pa.array(["not found"] * missing.num_rows, pa.string())}
        absent.update({name: missing.column(name) for name in ("run_number", "event_number")})
        rows = pa.concat_tables([rows, pa.table(absent)], promote_options="default")
    return rows


def _lookup_document(requests: pa.Table, found: pa.Table, missing: pa.Table) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    for row in found.to_pylist():
        key = {"run_number": row.pop("run_number"), "event_number": row.pop("event_number")}
        if not events or {k: events[-1][k] for k in key} != key:
            events.append({**key, "copies": []})
        events[-1]["copies"].append(row)
    return {
        "requested": requests.num_rows,
        "found": len(events),
        "copies": found.num_rows,
        "not_found": missing.to_pylist(),
        "events": events,
    }


# ---------------------------------------------------------------- trigger counts and overlaps


_SAFE_LITERAL = re.compile(r"[A-Za-z0-9._:+/=-]*")


def _string(value: str) -> str:
    """A string from a marker as an SQL literal both engines read alike (no quotes or escapes to interpret)."""
    if _SAFE_LITERAL.fullmatch(value) is None:
        raise CatalogIndexError(f"input file GUID {value[:60]!r} in a commit marker: not a GUID")
    return f"'{value}'"


def _conditions(runs: Range | None, lumi: Range | None, rows: Rows | None) -> str:
    where = []
    if runs is not None:
        where.append(f"run_number BETWEEN {runs.low} AND {runs.high}")
    if lumi is not None:
        where.append(f"lumi_block BETWEEN {lumi.low} AND {lumi.high}")
    if rows is not None:
        where.append(f"input_guid {'NOT IN' if rows.negate else 'IN'} ({', '.join(map(_string, rows.guids))})")
    return f" WHERE {' AND '.join(where)}" if where else ""


def count(
    session: Session,
    dataset_globs: Sequence[str],
    specs: Sequence[BitSpec],
    runs: Range | None,
    lumi: Range | None,
    overlap: bool,
    scan: bool = False,
) -> Answer:
    """Rows with each bit set and (overlap) with both bits of each pair set, in one pass over the rows.

    Counts without overlaps add the index's stored counts of the files whose row groups the run and
    lumi-block ranges take whole (:func:`_stored_tally`) and scan the other files; `scan` scans them all.
    A bit asked for more than once (`l1_tav:7,l1_tav:07`) is counted once, under the first label given."""
    distinct: dict[tuple[str, int | None, str | None], BitSpec] = {}
    for spec in specs:
        distinct.setdefault((spec.mask, spec.number, spec.name), spec)
    specs = list(distinct.values())
    view = session.view(dataset_globs)
    datasets = match_datasets(view, dataset_globs)
    resolver = NameResolver(view.names)
    resolver.check_known(specs, [f for f in view.files if f.task.dataset in set(datasets)])
    # One scan per set of bit positions (menus differ between tasks, or between their input files).
    groups: dict[Slice, list[FileEntry]] = defaultdict(list)
    for entry in files_with_rows(view, datasets, runs, lumi):
        for piece in resolver.slices(specs, entry):
            groups[piece].append(entry)
    tally = Tally.empty(BitQuery(tuple(None for _ in specs), overlap))
    for (positions, rows), files in sorted(groups.items(), key=lambda item: repr(item[0])):
        query = BitQuery(positions, overlap)
        if not query.columns:  # no bit is in these rows' menus: only the rows are counted
            query = BitQuery(positions, False)
        if not overlap and rows is None and not scan:
            stored, files = _stored_tally(view, files, query, runs, lumi)
            tally.events += stored.events
            tally.counts += stored.counts
            if not files:
                continue
        session.engine.use_data(files)
        columns = ", ".join(query.columns) if query.columns else "run_number"
        part = session.engine.tally(f"SELECT {columns} FROM {DATA_VIEW}{_conditions(runs, lumi, rows)}", query)
        tally.events += part.events
        tally.counts += part.counts
        if tally.pairs is not None and part.pairs is not None:
            tally.pairs += part.pairs
    used = []
    for i, spec in enumerate(specs):
        found = {bit[1] for (positions, _) in groups if (bit := positions[i]) is not None}
        used.append([spec.number] if spec.number is not None else sorted(found))
    return _count_answer(specs, used, tally)


def _stored_tally(
    view: IndexView, files: Sequence[FileEntry], query: BitQuery, runs: Range | None, lumi: Range | None
) -> tuple[Tally, list[FileEntry]]:
    """The tally of the files whose every row group that may hold rows of the ranges lies wholly inside them
    (by the footer statistics: run and lumi-block ranges, no row without a lumi block) and has stored bit
    counts, from the index; and the other files, which are to be scanned. Those files' counts of the query's
    mask columns that the index lacks yet are filled first (their masks read once, the counts stored)."""
    number = {id(entry): i for i, entry in enumerate(view.files)}
    wanted = np.zeros(len(view.files), dtype=bool)
    wanted[[number[id(entry)] for entry in files]] = True
    groups = wanted[view.rg_file] & (view.rg_rows > 0)
    inside = np.ones(len(view.rg_file), dtype=bool)
    if runs is not None:
        groups &= (view.rg_max_run >= runs.low) & (view.rg_min_run <= runs.high)
        inside &= (view.rg_min_run >= runs.low) & (view.rg_max_run <= runs.high)
    if lumi is not None:
        groups &= (view.rg_max_lumi >= lumi.low) & (view.rg_min_lumi <= lumi.high)
        inside &= (view.rg_min_lumi >= lumi.low) & (view.rg_max_lumi <= lumi.high) & (view.rg_lumi_nulls == 0)
    whole = np.ones(len(view.files), dtype=bool)
    whole[view.rg_file[groups & ~inside]] = False
    candidates = [entry for entry in files if whole[number[id(entry)]]]
    view.fill_counts(query.columns, candidates)
    counts = np.zeros((len(view.rg_file), len(query.bits)), dtype=np.int64)
    for mask in query.columns:
        slots = [i for i, bit in enumerate(query.bits) if bit is not None and bit[0] == mask]
        numbers = [bit[1] for i in slots if (bit := query.bits[i]) is not None]
        present, stored = view.stored_counts(mask, numbers, candidates)
        inside &= present
        counts[:, slots] = stored
    # A file is counted from the index when none of its row groups that may hold wanted rows is cut.
    cut = np.zeros(len(view.files), dtype=bool)
    cut[view.rg_file[groups & ~inside]] = True
    use = groups & ~cut[view.rg_file]
    # The counts are those of the files indexed: each must still be that file (not rewritten under its name).
    view.check_unchanged([view.files[i] for i in np.unique(view.rg_file[use])])
    tally = Tally(int(view.rg_rows[use].sum()), counts[use].sum(axis=0), None)
    return tally, [entry for entry in files if cut[number[id(entry)]]]


def _count_answer(specs: Sequence[BitSpec], used: list[list[int]], tally: Tally) -> Answer:
    labels = [spec.label for spec in specs]
    columns: dict[str, pa.Array] = {
        "bit": pa.array(labels, pa.string()),
        "mask": pa.array([s.mask for s in specs], pa.string()),
        "position": pa.array([",".join(map(str, positions)) for positions in used], pa.string()),
        "events": pa.array(tally.counts, pa.int64()),
        "scanned": pa.array([tally.events] * len(specs), pa.int64()),
    }
    if tally.pairs is not None:
        for j, label in enumerate(labels):  # distinct: one spec per bit, and every label holds a ':'
            columns[label] = pa.array(tally.pairs[:, j], pa.int64())

    def document() -> dict[str, Any]:
        bits = [
            {"bit": s.label, "mask": s.mask, "positions": used[i], "events": int(tally.counts[i])}
            for i, s in enumerate(specs)
        ]
        result: dict[str, Any] = {"scanned": tally.events, "bits": bits}
        if tally.pairs is not None:
            result["overlap"] = {"bits": labels, "events": tally.pairs.tolist()}
        return result

    return Answer(pa.table(columns), document)


# ---------------------------------------------------------------- dataset overlap


def dataset_overlap(session: Session, names: Sequence[str]) -> Answer:
    """Distinct (run, event) in each dataset and in both datasets of each pair, in one aggregation."""
    view = session.view(names)
    known = {*view.datasets(), *(damaged.dataset for damaged in view.damaged)}
    for name in names:
        if name not in known:
            raise QueryError(f"dataset {name!r}: no committed task in a dataset of that name")
    datasets = list(dict.fromkeys(names))
    refuse_damaged(view.damaged, datasets)
    if len(datasets) > MAX_DATASETS:
        raise QueryError(f"--datasets: at most {MAX_DATASETS} datasets at a time")
    k = len(datasets)
    pairs = np.zeros((k, k), dtype=np.int64)
    files = files_with_rows(view, datasets, None, None)
    if files:
        session.engine.use_data(files)
        cases = " ".join(f"WHEN '{d}' THEN {1 << i}" for i, d in enumerate(datasets))  # names are [A-Za-z0-9._-]
        table = session.engine.query(
            f"SELECT membership, count(*) AS events FROM (SELECT bit_or(CASE dataset {cases} ELSE 0 END) AS membership "
            f"FROM {DATA_VIEW} GROUP BY run_number, event_number) AS keys GROUP BY membership"
        )
        members = np.array([[(m >> i) & 1 for i in range(k)] for m in table.column("membership").to_pylist()],
                           dtype=np.int64).reshape(-1, k)  # fmt: skip
        weights = np.array(table.column("events").to_pylist(), dtype=np.int64)
        pairs = (members * weights[:, None]).T @ members
    columns: dict[str, pa.Array] = {
        "dataset": pa.array(datasets, pa.string()),
        "events": pa.array(np.diag(pairs), pa.int64()),
    }
    for j, name in enumerate(datasets):
        columns[name] = pa.array(pairs[:, j], pa.int64())

    def document() -> dict[str, Any]:
        both = [
            {"a": datasets[i], "b": datasets[j], "events": int(pairs[i, j])} for i in range(k) for j in range(i + 1, k)
        ]
        return {"datasets": datasets, "events": {d: int(pairs[i, i]) for i, d in enumerate(datasets)}, "pairs": both}

    return Answer(pa.table(columns), document)


# ---------------------------------------------------------------- duplicates


def _recorded(session: Session, files: Sequence[FileEntry]) -> list[dict[str, Any]]:
    """The copies the loader dropped (side files named by the markers), as rows of DUPLICATE_SCHEMA."""
    rows = []
    seen: set[tuple[str, str, str]] = set()
    for entry in files:
        task = entry.task
        for generation in task.generations:
            key = (task.dataset, task.task, generation.duplicates_in or "")
            if generation.duplicates_in is None or key in seen:
                continue
            seen.add(key)
            name = f"{partition(task.dataset, task.task)}/{generation.duplicates_in}"
            try:
                listing = json.loads(session.reader.control.get(name, MAX_CONTROL_BYTES))
                for item in listing["duplicates"]:
                    for copy in item["copies"]:
                        if copy.get("loaded"):
                            continue  # the loaded copy is a row of the data
                        rows.append(
                            {"run_number": int(item["run_number"]), "event_number": int(item["event_number"]),
                             "dataset": task.dataset, "task": task.task, "job": str(copy["job"]),
                             "attempt": int(copy["attempt"]), "input_guid": str(copy["input_guid"]),
                             "lumi_block": _lumi(copy.get("lumi_block")), "file": None, "loaded": False}
                        )  # fmt: skip
            except (EventIndexError, ValueError, KeyError, TypeError) as exc:
                raise CatalogIndexError(f"cannot read the duplicates listed in {name}: {exc}") from exc
    return rows


def _lumi(value: object) -> int | None:
    """A dropped copy's lumi block as the side file lists it: null when the event had none, and in a listing
    written before the loader recorded it."""
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise ValueError(f"lumi_block {value!r} is not a non-negative integer")
    return value


def duplicates(session: Session, dataset_globs: Sequence[str]) -> Answer:
    """Every (run, event) held more than once in the datasets: each committed row holding it, and each
    copy the loader dropped at load (listed in the task's duplicates side file)."""
    view = session.view(dataset_globs)
    datasets = match_datasets(view, dataset_globs)
    in_datasets = [f for f in view.files if f.task.dataset in set(datasets)]
    dropped = pa.Table.from_pylist(_recorded(session, in_datasets), schema=DUPLICATE_SCHEMA)
    recorded = dropped.select(["run_number", "event_number"]).group_by(["run_number", "event_number"]).aggregate([])
    recorded = recorded.sort_by([("run_number", "ascending"), ("event_number", "ascending")])
    keys = pack(recorded.column("run_number").to_numpy(), recorded.column("event_number").to_numpy())
    files = files_sharing_keys(view, datasets, keys)
    loaded = pa.Table.from_pylist([], schema=DUPLICATE_SCHEMA)
    if files:
        engine = session.engine
        engine.use_data(files)
        engine.register(
            "ei_recorded", recorded.cast(pa.schema([("run_number", pa.int64()), ("event_number", pa.int64())]))
        )
        columns = ", ".join(f"d.{f.name}" for f in DUPLICATE_SCHEMA if f.name != "loaded")
        table = engine.query(
            f"WITH k AS (SELECT run_number, event_number FROM {DATA_VIEW} GROUP BY run_number, event_number "
            "HAVING count(*) > 1 UNION SELECT run_number, event_number FROM ei_recorded) "
            f"SELECT {columns}, true AS loaded FROM {DATA_VIEW} d JOIN k "
            "ON d.run_number = k.run_number AND d.event_number = k.event_number"
        )
        loaded = _conform(table, DUPLICATE_SCHEMA)
    copies = pa.concat_tables([loaded, dropped])
    per_key = copies.group_by(["run_number", "event_number"]).aggregate([("loaded", "count")])
    held_twice = per_key.filter(pc.greater(per_key.column("loaded_count"), 1))
    held_twice = pa.table(
        {
            "run_number": held_twice.column("run_number"),
            "event_number": held_twice.column("event_number"),
            "copies": held_twice.column("loaded_count"),
        }
    )
    copies = _sorted(copies.join(held_twice, ["run_number", "event_number"], join_type="inner"))
    copies = copies.select(["run_number", "event_number", "copies", *DUPLICATE_SCHEMA.names[2:]])
    return Answer(copies, lambda: _duplicates_document(copies))


def _duplicates_document(copies: pa.Table) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    for row in copies.to_pylist():
        key = {"run_number": row.pop("run_number"), "event_number": row.pop("event_number")}
        row.pop("copies")
        if not events or {k: events[-1][k] for k in key} != key:
            events.append({**key, "copies": []})
        events[-1]["copies"].append(row)
    return {"events": len(events), "copies": copies.num_rows, "duplicates": events}
