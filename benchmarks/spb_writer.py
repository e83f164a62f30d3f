"""Write SPB files (`*.ei.spb`) in the ATLAS producer's layout, for tests and benchmarks.

The layout is the one `producer/inputs/spb.py` documents: gzip(magic, version 1, then `[uint32 type << 8 | 1]
[uint32 length][protobuf]` records: Header, per input file BeginGUID, [TriggerMenu], EIEvent x N,
EndGUID, then Trailer). `eievents_from_table` turns our Arrow events back into `EIEvent_p1`
records (run-length coded masks, token strings), so that synthetic events -> SPB -> SpbInput
gives the same table.
"""

from __future__ import annotations

import gzip
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from eventindex.columns import EVENT_SCHEMA
from producer.inputs import EventIndex_p1_pb2 as ei
from producer.inputs.pool_token import format_token
from producer.inputs.spb import (
    BEGIN_GUID,
    EI_EVENT,
    END_GUID,
    HEADER,
    MAGIC,
    MSG_VERSION,
    TRAILER,
    TRIGGER_MENU,
    VERSION,
)
from producer.inputs.spb_events import OPTIONAL_NUMBERS, REQUIRED_NUMBERS
from producer.inputs.trigger import encode_hlt, encode_l1

#: Write this many bytes to the gzip stream at a time.
FLUSH_BYTES = 1 << 20

#: One input file of an SPB file: BeginGUID, optional TriggerMenu, events, EndGUID (None: the true count).
SpbFile = tuple[ei.BeginGUID_p1, ei.TriggerMenu_p1 | None, Iterable[ei.EIEvent_p1], ei.EndGUID_p1 | None]


def now_ms() -> int:
    return int(time.time() * 1000)


def pack_record(rtype: int, payload: bytes, msg_version: int = MSG_VERSION) -> bytes:
    """One framed record: `[LE uint32 type << 8 | msg_version][LE uint32 length][payload]`."""
    return struct.pack("<II", rtype << 8 | msg_version, len(payload)) + payload


def write_spb(
    path: Path,
    header: ei.Header_p1,
    files: Sequence[SpbFile],
    trailer: ei.Trailer_p1 | None = None,
    *,
    compresslevel: int = 9,
) -> None:
    """Write an SPB file. An EndGUID or Trailer given as None gets the true counts and the time now.

    Events are written as they come (an iterable may be a generator): memory stays bounded.
    """
    pending: list[bytes] = []
    size = 0
    with gzip.open(path, "wb", compresslevel=compresslevel) as out:

        def put(
            rtype: int,
            message: ei.Header_p1 | ei.Trailer_p1 | ei.BeginGUID_p1 | ei.EndGUID_p1 | ei.TriggerMenu_p1 | ei.EIEvent_p1,
        ) -> None:
            nonlocal size
            record = pack_record(rtype, message.SerializeToString())
            pending.append(record)
            size += len(record)
            if size >= FLUSH_BYTES:
                out.write(b"".join(pending))
                pending.clear()
                size = 0

        pending.append(struct.pack("<II", MAGIC, VERSION))
        put(HEADER, header)
        total = 0
        for begin, menu, events, end in files:
            put(BEGIN_GUID, begin)
            if menu is not None:
                put(TRIGGER_MENU, menu)
            count = 0
            for event in events:
                put(EI_EVENT, event)
                count += 1
            total += count
            put(END_GUID, end if end is not None else ei.EndGUID_p1(endProcTime=now_ms(), nentries=count))
        if trailer is None:
            trailer = ei.Trailer_p1(endProcTime=now_ms(), nentries=total, nfiles=len(files))
        put(TRAILER, trailer)
        out.write(b"".join(pending))


def eievents_from_table(table: pa.Table) -> Iterator[ei.EIEvent_p1]:
    """Arrow events (EVENT_SCHEMA) -> EIEvent_p1 records, as the ATLAS producer would write them.

    A null optional number (extended L1 ID, keys, MC channel and weight) is an unset field; the
    required ones (run, event, lumi block, times, BCID, flags) may not be null (ValueError). Masks:
    none at all -> the three mask fields unset (no trigger info); otherwise L1 is one string (TBP,
    TAP and TAV must be all present or all null) and L2/EF are `a;b;c` with "" for a null vector
    (`;;` when the level is absent, as Run 2/3 files have it). The HLT columns go to the EF field.
    Provenance -> eitoken, stream = name (a null list: no tokens; a token needs every field).
    """
    table = table.select(EVENT_SCHEMA.names)
    columns = {name: table.column(name).to_pylist() for name in EVENT_SCHEMA.names}
    for i in range(table.num_rows):
        row = {name: values[i] for name, values in columns.items()}
        missing = [column for column, _, _ in REQUIRED_NUMBERS if row[column] is None]
        if missing:
            raise ValueError(f"row {i}: an SPB event needs {', '.join(missing)}")
        event = ei.EIEvent_p1(**{field: row[column] for column, field, _ in REQUIRED_NUMBERS})
        for column, field, _ in OPTIONAL_NUMBERS:
            if row[column] is not None:
                setattr(event, field, row[column])
        l1 = [row[name] for name in ("l1_tbp", "l1_tap", "l1_tav")]
        l2 = [row[name] for name in ("l2_passed_physics", "l2_passed_through", "l2_resurrected")]
        hlt = [row[name] for name in ("hlt_passed_physics", "hlt_passed_through", "hlt_resurrected")]
        if any(mask is not None for mask in l1 + l2 + hlt):
            event.L1PassedTrigMask = encode_l1(*l1)
            event.L2PassedTrigMask = encode_hlt(*l2)
            event.EFPassedTrigMask = encode_hlt(*hlt)
        for ref in row["provenance"] or ():
            if None in ref.values():
                raise ValueError(f"row {i}: an SPB token needs every field of its reference: {ref}")
            event.eitoken.add(
                name=ref["stream"],
                token=format_token(ref["guid"], ref["container"], ref["clid"], ref["tech"], ref["oid1"], ref["oid2"]),
            )
        yield event


def write_tables(
    path: Path,
    inputs: Sequence[tuple[str, Iterable[pa.Table]]],
    *,
    task_id: str = "1.G",
    job_id: str = "1.0",
    dataset: str = "data00.00000000.physics_Main.merge.AOD.f000_m000",
    menu: ei.TriggerMenu_p1 | None = None,
    compresslevel: int = 9,
) -> None:
    """Write an SPB file of input files given as (GUID, Arrow event tables); counts are the true ones."""
    start = now_ms()
    header = ei.Header_p1(
        startProcTime=start, taskID=task_id, jobID=job_id, inputDsName=dataset, provenanceRef=True, triggerInfo=True
    )

    def events(tables: Iterable[pa.Table]) -> Iterator[ei.EIEvent_p1]:
        for table in tables:
            yield from eievents_from_table(table)

    files: list[SpbFile] = [
        (
            ei.BeginGUID_p1(
                startProcTime=start, AMITag="f000_m000", trigStream="physics_Main", projName="data00", guid=guid
            ),
            menu,
            events(tables),
            None,
        )
        for guid, tables in inputs
    ]
    write_spb(path, header, files, compresslevel=compresslevel)
