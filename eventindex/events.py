"""Per-event records: Arrow events <-> `Event` protobuf messages.

The broker-only transport (the first ATLAS design) sends events one record at a time, so this
conversion is event by event, and slow by nature; the object-store transport never uses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from eventindex.columns import EVENT_SCHEMA, MASK_COLUMNS
from eventindex.schema import eventindex_pb2 as pb

_SCALARS = [
    "run_number", "event_number", "lumi_block", "bcid", "timestamp", "timestamp_ns_offset", "is_simulation",
    "is_calibration", "is_testbeam", "mc_channel_number", "mc_event_weight", "smk", "hlt_psk", "l1_psk", "input_guid",
]  # fmt: skip
_MASKS = [name for name, _ in MASK_COLUMNS]
_PROVENANCE = ["stream", "guid", "container", "clid", "tech", "oid1", "oid2"]


def table_to_events(table: pa.Table) -> Iterator[pb.Event]:
    """Arrow events (EVENT_SCHEMA) -> Event messages, in row order."""
    for row in table.select(EVENT_SCHEMA.names).to_pylist():
        event = pb.Event(**{name: row[name] for name in _SCALARS})
        if row["extended_level1_id"] is not None:
            event.extended_level1_id = row["extended_level1_id"]
        for name in _MASKS:
            if row[name] is not None:
                setattr(event, name, row[name])
        for ref in row["provenance"] or []:
            event.provenance.add(**ref)
        yield event


def events_to_table(events: Iterable[pb.Event]) -> pa.Table:
    """Event messages -> Arrow events (EVENT_SCHEMA)."""
    columns: dict[str, list[Any]] = {name: [] for name in EVENT_SCHEMA.names}
    for event in events:
        for name in _SCALARS:
            columns[name].append(getattr(event, name))
        columns["extended_level1_id"].append(event.extended_level1_id if event.HasField("extended_level1_id") else None)
        for name in _MASKS:
            columns[name].append(getattr(event, name) if event.HasField(name) else None)
        columns["provenance"].append([{f: getattr(ref, f) for f in _PROVENANCE} for ref in event.provenance])
    return pa.Table.from_pydict(columns, schema=EVENT_SCHEMA)
