"""Per-event records: Arrow events <-> `Event` protobuf messages.

The broker-only transport (the first ATLAS design) sends events one record at a time, so this
conversion is event by event, and slow by nature; the object-store transport never uses it.

A null scalar is sent as the field's default with its field number in the message's `absent`
list (a reference's null fields likewise in the reference's own list); a message without that
list, as producers that predate it send, has every scalar present.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from eventindex.columns import EVENT_SCHEMA, MASK_COLUMNS, SCALAR_COLUMNS
from eventindex.errors import CorruptObjectError
from eventindex.schema import eventindex_pb2 as pb

_EVENT = {f.name: f.number for f in pb.Event.DESCRIPTOR.fields}
_REF = {f.name: f.number for f in pb.Provenance.DESCRIPTOR.fields}
_SCALARS = [spec.name for spec in SCALAR_COLUMNS]
_REQUIRED = [spec.name for spec in SCALAR_COLUMNS if not spec.nullable]
_MASKS = [name for name, _ in MASK_COLUMNS]
_PROVENANCE = [field.name for field in EVENT_SCHEMA.field("provenance").type.value_type]


def _reference(ref: dict[str, Any]) -> pb.Provenance:
    message = pb.Provenance(**{name: value for name, value in ref.items() if value is not None})
    message.absent.extend(_REF[name] for name, value in ref.items() if value is None)
    return message


def table_to_events(table: pa.Table) -> Iterator[pb.Event]:
    """Arrow events (EVENT_SCHEMA) -> Event messages, in row order."""
    for row in table.select(EVENT_SCHEMA.names).to_pylist():
        event = pb.Event(input_guid=row["input_guid"])
        for name in _SCALARS:
            value = row[name]
            if value is None:
                event.absent.append(_EVENT[name])
            else:
                setattr(event, name, value)
        for name in _MASKS:
            if row[name] is not None:
                setattr(event, name, row[name])
        refs = row["provenance"]
        if refs is None:
            event.absent.append(_EVENT["provenance"])
        else:
            event.provenance.extend(_reference(ref) for ref in refs)
        yield event


def events_to_table(events: Iterable[pb.Event]) -> pa.Table:
    """Event messages -> Arrow events (EVENT_SCHEMA); CorruptObjectError for values no producer sends."""
    columns: dict[str, list[Any]] = {name: [] for name in EVENT_SCHEMA.names}
    for event in events:
        absent = set(event.absent)
        for name in _SCALARS:
            columns[name].append(None if _EVENT[name] in absent else getattr(event, name))
        for name in _MASKS:
            columns[name].append(getattr(event, name) if event.HasField(name) else None)
        if _EVENT["provenance"] in absent:
            columns["provenance"].append(None)
        else:
            refs = []
            for ref in event.provenance:
                missing = set(ref.absent)
                refs.append({f: None if _REF[f] in missing else getattr(ref, f) for f in _PROVENANCE})
            columns["provenance"].append(refs)
        columns["input_guid"].append(event.input_guid)
    for name in _REQUIRED:
        if None in columns[name]:
            raise CorruptObjectError(f"an event without {name}")
    try:
        table = pa.Table.from_pydict(columns, schema=EVENT_SCHEMA)
    except (pa.ArrowException, OverflowError) as exc:  # an event number or OID of 2^63 or more
        raise CorruptObjectError(f"an event does not fit the schema: {' '.join(str(exc).split())}") from None
    refs = table.column("provenance").combine_chunks().flatten()
    for name in ("stream", "guid"):
        if refs.field(name).null_count:
            raise CorruptObjectError(f"a provenance reference without {name}")
    return table
