from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from eventindex.columns import EVENT_SCHEMA, HLT_MASK_BYTES, L1_MASK_BYTES
from eventindex.errors import InputError
from producer.inputs import open_input
from producer.inputs.synthetic import SyntheticInput


def _all(source: SyntheticInput, rows: int) -> pa.Table:
    return pa.concat_tables(source.batches(rows))


def test_same_seed_same_events_whatever_the_batch_size() -> None:
    a = _all(SyntheticInput(9_000, 5), 9_000)
    b = _all(SyntheticInput(9_000, 5), 777)
    assert a.schema == EVENT_SCHEMA
    assert a.equals(b)
    assert [t.num_rows for t in SyntheticInput(9_000, 5).batches(4_000)] == [4_000, 4_000, 1_000]


def test_shape_is_realistic() -> None:
    t = _all(SyntheticInput(12_000, 3), 12_000)
    events = t.column("event_number").to_numpy()
    assert np.all(np.diff(events) > 0), "event numbers increase"
    assert 2 <= len(pc.unique(t.column("lumi_block"))) <= 10, "a few lumi blocks"
    assert set(pc.binary_length(t.column("l1_tbp")).to_pylist()) == {L1_MASK_BYTES}
    assert set(pc.binary_length(t.column("hlt_passed_physics")).to_pylist()) == {HLT_MASK_BYTES}
    tbp = np.frombuffer(b"".join(t.column("l1_tbp").to_pylist()), dtype=np.uint8)
    tav = np.frombuffer(b"".join(t.column("l1_tav").to_pylist()), dtype=np.uint8)
    assert np.all(tav & ~tbp == 0), "TAV within TBP"
    assert 0 < np.unpackbits(tbp).mean() < 0.05, "sparse L1 masks"
    assert t.column("l2_passed_physics").null_count == t.num_rows
    first = t.slice(0, 1).to_pylist()[0]
    assert [p["stream"] for p in first["provenance"]] == ["StreamAOD", "StreamESD", "StreamRAW"]
    assert first["provenance"][0]["guid"] == first["input_guid"]
    assert len({p["guid"] for p in first["provenance"]}) == 3


def test_seeds_give_disjoint_events() -> None:
    a = set(_all(SyntheticInput(3_000, 1), 3_000).column("event_number").to_pylist())
    b = set(_all(SyntheticInput(3_000, 2), 3_000).column("event_number").to_pylist())
    assert not a & b


@pytest.mark.parametrize("spec", ["synthetic:", "synthetic:abc", "synthetic:1:2:3", "synthetic:-1", "nosuch:1"])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(InputError):
        open_input(spec)


def test_spec_parses() -> None:
    source = open_input("synthetic:10:4")
    assert isinstance(source, SyntheticInput)
    assert (source.events, source.seed, source.declared_events) == (10, 4, 10)
