"""`synthetic:EVENTS[:SEED]`: realistic, deterministic EventIndex-like events.

The shape follows real ATLAS data events: strictly increasing event numbers in one run, a few
lumi blocks, random bunch crossings, an extended L1 ID missing from 1 % of the events, sparse
512-bit L1 masks (TAV within TAP within TBP), sparse 8192-bit HLT masks (Run 2/3 style: the L2
masks are absent), and three provenance references (the event's own AOD file, then its ESD and
RAW files) with per-file GUIDs. As in real data, the flags are false and there is no MC channel
or MC weight (null).

The same (EVENTS, SEED) gives the same events whatever batch size is asked for: values are
drawn in fixed blocks, each from its own seeded generator. Different seeds give disjoint
(run, event) sets (the seed selects a 2**32-wide event-number range), so jobs of one task
that use different seeds never collide.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from functools import cache

import numpy as np
import pyarrow as pa

from eventindex.columns import EVENT_SCHEMA, HLT_MASK_BYTES, L1_MASK_BYTES, PROVENANCE_TYPE
from eventindex.errors import InputError
from producer.inputs.base import InputSource

BLOCK = 4096
MAX_EVENTS = 1_000_000_000
BASE_RUN = 456_000
BASE_TIME = 1_700_000_000
EVENTS_PER_LUMIBLOCK = 2_500
EVENTS_PER_ESD_FILE = 5_000
EVENTS_PER_RAW_FILE = 2_000
DATAHEADER = "POOLContainer(DataHeader)"
DATAHEADER_CLID = "4DDBD295-EFCE-472A-9EC8-15CD35A9EB8D"
RAW_CLID = "00000000-0000-0000-0000-000000000000"
TECH_ROOT = 0x00000202
TECH_BYTESTREAM = 0x00001000

L1_POOL = np.arange(0, 512, 7)[:60]  # 60 configured L1 items
HLT_POOL = np.arange(3, 8192, 37)[:220]  # 220 configured HLT chains
HLT_PT_POOL = HLT_POOL[::11]


@cache
def file_guid(seed: int, stream: str, index: int) -> str:
    digest = hashlib.sha256(f"synthetic:{seed}:{stream}:{index}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16])).upper()


def _pack(hits: np.ndarray, pool: np.ndarray, width: int) -> np.ndarray:
    """(n, len(pool)) booleans -> an (n, width) uint8 bitmap (bit i is bit i % 8 of byte i // 8)."""
    bits = np.zeros((hits.shape[0], width * 8), dtype=bool)
    bits[:, pool] = hits
    return np.packbits(bits, axis=1, bitorder="little")


def _binary(matrix: np.ndarray) -> pa.Array:
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(matrix.tobytes())])


def _strings(values: list[str]) -> pa.Array:
    return pa.array(values, pa.string())


def _dict_strings(index: np.ndarray, values: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), pa.array(values)).cast(pa.string())


def generate_block(seed: int, block: int, n: int) -> pa.Table:
    """Events [block*BLOCK, block*BLOCK + n) of the synthetic file with this seed."""
    rng = np.random.default_rng([seed, block])
    index = np.arange(block * BLOCK, block * BLOCK + n, dtype=np.int64)
    run = np.full(n, BASE_RUN + seed // 1000, dtype=np.int64)
    event = (seed << 32) + 1 + index * 3 + rng.integers(0, 3, n)  # below 2**63: SEED < 2**31
    lumi = 1 + (seed % 50) * 40 + index // EVENTS_PER_LUMIBLOCK
    timestamp = BASE_TIME + (seed % 10_000) * 3600 + index // 100
    l1id_valid = rng.random(n) >= 0.01
    tbp = rng.random((n, len(L1_POOL))) < 0.12
    tap = tbp & (rng.random(tbp.shape) < 0.9)
    tav = tap & (rng.random(tbp.shape) < 0.8)
    esd_index = index // EVENTS_PER_ESD_FILE
    raw_index = index // EVENTS_PER_RAW_FILE
    esd_names = sorted({int(i) for i in esd_index})
    raw_names = sorted({int(i) for i in raw_index})
    # Provenance, flattened: per event [AOD, ESD, RAW].
    stream_idx = np.tile(np.array([0, 1, 2], dtype=np.int32), n)
    guid_values = [file_guid(seed, "AOD", 0)]
    guid_values += [file_guid(seed, "ESD", i) for i in esd_names]
    guid_values += [file_guid(seed, "RAW", i) for i in raw_names]
    guid_idx = np.empty(3 * n, dtype=np.int32)
    guid_idx[0::3] = 0
    guid_idx[1::3] = 1 + np.searchsorted(np.array(esd_names), esd_index)
    guid_idx[2::3] = 1 + len(esd_names) + np.searchsorted(np.array(raw_names), raw_index)
    container_idx = np.tile(np.array([0, 0, 1], dtype=np.int32), n)
    clid_idx = container_idx
    tech = np.tile(np.array([TECH_ROOT, TECH_ROOT, TECH_BYTESTREAM], dtype=np.int64), n)
    oid1 = np.zeros(3 * n, dtype=np.int64)
    oid1[0::3] = 4
    oid1[1::3] = 5
    oid2 = np.empty(3 * n, dtype=np.int64)
    oid2[0::3] = index
    oid2[1::3] = index % EVENTS_PER_ESD_FILE
    oid2[2::3] = (index % EVENTS_PER_RAW_FILE) * 1_600_000 + rng.integers(0, 1000, n)
    structs = pa.StructArray.from_arrays(
        [
            _dict_strings(stream_idx, ["StreamAOD", "StreamESD", "StreamRAW"]),
            _dict_strings(guid_idx, guid_values),
            _dict_strings(container_idx, [DATAHEADER, "00000000"]),
            _dict_strings(clid_idx, [DATAHEADER_CLID, RAW_CLID]),
            pa.array(tech),
            pa.array(oid1),
            pa.array(oid2),
        ],
        fields=list(PROVENANCE_TYPE.value_type),
    )
    provenance = pa.ListArray.from_arrays(pa.array(np.arange(0, 3 * n + 1, 3, dtype=np.int32)), structs)
    false = np.zeros(n, dtype=bool)
    columns: dict[str, pa.Array] = {
        "run_number": pa.array(run),
        "event_number": pa.array(event),
        "lumi_block": pa.array(lumi),
        "bcid": pa.array(rng.integers(1, 3565, n)),
        "timestamp": pa.array(timestamp),
        "timestamp_ns_offset": pa.array(rng.integers(0, 1_000_000_000, n)),
        "extended_level1_id": pa.array(rng.integers(0, 2**32, n), mask=~l1id_valid),
        "is_simulation": pa.array(false),
        "is_calibration": pa.array(false),
        "is_testbeam": pa.array(false),
        "mc_channel_number": pa.nulls(n, pa.int64()),
        "mc_event_weight": pa.nulls(n, pa.float32()),
        "smk": pa.array(np.full(n, 2786, dtype=np.int64)),
        "hlt_psk": pa.array(np.full(n, 17, dtype=np.int64)),
        "l1_psk": pa.array(np.full(n, 23, dtype=np.int64)),
        "l1_tbp": _binary(_pack(tbp, L1_POOL, L1_MASK_BYTES)),
        "l1_tap": _binary(_pack(tap, L1_POOL, L1_MASK_BYTES)),
        "l1_tav": _binary(_pack(tav, L1_POOL, L1_MASK_BYTES)),
        "l2_passed_physics": pa.nulls(n, pa.binary()),
        "l2_passed_through": pa.nulls(n, pa.binary()),
        "l2_resurrected": pa.nulls(n, pa.binary()),
        "hlt_passed_physics": _binary(_pack(rng.random((n, len(HLT_POOL))) < 0.02, HLT_POOL, HLT_MASK_BYTES)),
        "hlt_passed_through": _binary(_pack(rng.random((n, len(HLT_PT_POOL))) < 0.01, HLT_PT_POOL, HLT_MASK_BYTES)),
        "hlt_resurrected": _binary(np.zeros((n, HLT_MASK_BYTES), dtype=np.uint8)),
        "provenance": provenance,
        "input_guid": _strings([guid_values[0]] * n),
    }
    return pa.Table.from_arrays([columns[name] for name in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)


class SyntheticInput(InputSource):
    def __init__(self, events: int, seed: int = 0) -> None:
        if not 0 <= events <= MAX_EVENTS:
            raise InputError(f"synthetic input: EVENTS must be in 0..{MAX_EVENTS}, got {events}")
        if not 0 <= seed < 2**31:
            raise InputError(f"synthetic input: SEED must be in 0..{2**31 - 1}, got {seed}")
        self.events = events
        self.seed = seed
        self.name = f"synthetic:{events}:{seed}"
        self.guid = file_guid(seed, "AOD", 0)

    @classmethod
    def from_spec(cls, rest: str) -> SyntheticInput:
        parts = rest.split(":")
        try:
            if len(parts) > 2 or not parts[0]:
                raise ValueError
            return cls(int(parts[0]), int(parts[1]) if len(parts) == 2 else 0)
        except ValueError:
            raise InputError(f"input 'synthetic:{rest}': expected synthetic:EVENTS[:SEED] with integers") from None

    @property
    def declared_events(self) -> int:
        return self.events

    def batches(self, max_rows: int) -> Iterator[pa.Table]:
        pending: list[pa.Table] = []
        pending_rows = 0
        for block in range((self.events + BLOCK - 1) // BLOCK):
            n = min(BLOCK, self.events - block * BLOCK)
            pending.append(generate_block(self.seed, block, n))
            pending_rows += n
            while pending_rows >= max_rows:
                table = pa.concat_tables(pending)
                yield table.slice(0, max_rows)
                rest = table.slice(max_rows)
                pending, pending_rows = [rest], rest.num_rows
        if pending_rows:
            yield pa.concat_tables(pending)
