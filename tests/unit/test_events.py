"""Per-event records of the broker-only transport: nulls travel as `absent` field numbers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from eventindex.columns import EVENT_SCHEMA, MASK_COLUMNS
from eventindex.errors import CorruptObjectError
from eventindex.events import events_to_table, table_to_events
from eventindex.schema import eventindex_pb2 as pb
from tests.unit.test_codec import _with_nulls


def test_nulls_of_every_column_round_trip(events: pa.Table) -> None:
    table = _with_nulls(events.slice(0, 300), 2)
    messages = list(table_to_events(table))
    assert events_to_table(messages).to_pylist() == table.to_pylist()
    # On the wire: a null scalar is its default plus its field number in `absent`.
    numbers = {f.name: f.number for f in pb.Event.DESCRIPTOR.fields}
    masks = {name for name, _ in MASK_COLUMNS}  # optional fields of their own: unset when null
    for message, values in zip(messages, table.to_pylist(), strict=True):
        nulls = {numbers[name] for name, value in values.items() if value is None and name not in masks}
        assert set(message.absent) == nulls
        assert all(message.HasField(name) == (values[name] is not None) for name in masks)


def test_messages_without_absent_lists_have_every_value() -> None:
    """Producers that predate `absent` send zeros and false as values: they stay values."""
    event = pb.Event(run_number=1, event_number=2, input_guid="G", lumi_block=0, is_simulation=False)
    event.provenance.add(stream="StreamAOD", guid="F", tech=0, oid1=0, oid2=0)
    table = events_to_table([event])
    row = table.to_pylist()[0]
    assert row["lumi_block"] == 0 and row["is_simulation"] is False and row["mc_event_weight"] == 0.0
    assert row["extended_level1_id"] == 0 and row["l1_tbp"] is None
    assert row["provenance"] == [
        {"stream": "StreamAOD", "guid": "F", "container": "", "clid": "", "tech": 0, "oid1": 0, "oid2": 0}
    ]
    assert table.schema.equals(EVENT_SCHEMA)


@pytest.mark.parametrize(
    ("event", "words"),
    [
        (pb.Event(run_number=1, event_number=2**63, input_guid="G"), "does not fit the schema"),
        (pb.Event(run_number=1, event_number=2**64 - 1, input_guid="G"), "does not fit the schema"),
        (pb.Event(run_number=1, event_number=2, input_guid="G", absent=[2]), "an event without event_number"),
        (
            pb.Event(run_number=1, event_number=2, input_guid="G", provenance=[pb.Provenance(oid2=2**63)]),
            "does not fit the schema",
        ),
        (
            pb.Event(run_number=1, event_number=2, input_guid="G", provenance=[pb.Provenance(guid="F", absent=[1])]),
            "a provenance reference without stream",
        ),
    ],
)
def test_events_no_producer_sends_are_corrupt(event: pb.Event, words: str) -> None:
    with pytest.raises(CorruptObjectError, match=words):
        events_to_table([pb.Event(run_number=1, event_number=1, input_guid="G"), event])
