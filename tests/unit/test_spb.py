"""ATLAS SPB files (`*.ei.spb`): the original layout read exactly, round trips, and every failure mode."""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from benchmarks.spb_writer import eievents_from_table, write_spb, write_tables
from eventindex.columns import EVENT_SCHEMA, HLT_MASK_BYTES, L1_MASK_BYTES, Body, decode_body, encode_body
from eventindex.errors import InputError
from producer.inputs import EventIndex_p1_pb2 as ei
from producer.inputs import open_input, spb, spb_events
from producer.inputs.spb import SpbFileInput, SpbInput
from producer.inputs.synthetic import SyntheticInput

ROOT = Path(__file__).resolve().parents[2]
GUID_A = "11111111-2222-3333-4444-555555555555"
GUID_B = "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"
CLID = "4DDBD295-EFCE-472A-9EC8-15CD35A9EB8D"
RAW_CLID = "00000000-0000-0000-0000-000000000000"


def read_all(source: SpbInput | SpbFileInput, max_rows: int = 1000) -> pa.Table:
    tables = list(source.batches(max_rows))
    return pa.concat_tables(tables) if tables else EVENT_SCHEMA.empty_table()


# ---------------------------------------------------------------- protobuf and SPB bytes by hand


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def fv(field: int, value: int) -> bytes:  # varint field (wire type 0)
    return varint(field << 3) + varint(value)


def fs(field: int, value: str | bytes) -> bytes:  # length-delimited field (wire type 2)
    data = value.encode() if isinstance(value, str) else value
    return varint(field << 3 | 2) + varint(len(data)) + data


def ff(field: int, value: float) -> bytes:  # float field (wire type 5)
    return varint(field << 3 | 5) + struct.pack("<f", value)


def record(rtype: int, payload: bytes, word: int | None = None) -> bytes:
    return struct.pack("<II", rtype << 8 | 1 if word is None else word, len(payload)) + payload


def spb_bytes(*records: bytes, magic: int = 0x6E56C8C7, version: int = 1) -> bytes:
    return struct.pack("<II", magic, version) + b"".join(records)


def write_gz(path: Path, content: bytes) -> Path:
    with gzip.open(path, "wb") as out:
        out.write(content)
    return path


def header_pb(task: str = "12345.G", job: str = "6789012.1") -> bytes:
    return (
        fv(1, 1_700_000_000_123)
        + fs(2, task)
        + fs(3, job)
        + fs(4, "data18_13TeV.00350000.physics_Main.merge.AOD")
        + fv(5, 1)
        + fv(6, 1)
    )


def begin_pb(guid: str = GUID_A) -> bytes:
    return fv(1, 1_700_000_000_200) + fs(2, "f1234_m2020") + fs(3, "physics_Main") + fs(4, "data18_13TeV") + fs(5, guid)


def end_pb(nentries: int) -> bytes:
    return fv(1, 1_700_000_000_900) + fv(2, nentries)


def trailer_pb(nentries: int, nfiles: int) -> bytes:
    return fv(1, 1_700_000_001_000) + fv(2, nentries) + fv(3, nfiles)


MENU_PB = fv(1, 2786) + fv(2, 23) + fv(3, 17) + fs(4, "0:L1_EM3;2:L1_EM7") + fs(7, "1:HLT_e26_lhtight;3:HLT_mu26")
AOD_TOKEN = (
    f"[DB={GUID_A}][CNT=POOLContainer(DataHeader)][CLID={CLID}][TECH=00000202][OID=0000000000000004-000000000000002A]"
)
RAW_TOKEN = f"[DB={GUID_B}][CNT=00000000][CLID={RAW_CLID}][TECH=00001000][OID=0000000000000000-0000000004C4B400]"
BIG_OID_TOKEN = RAW_TOKEN.replace("[OID=0000000000000000-", "[OID=8000000000000000-")
# L1: TBP bits 0 and 2, TAP bit 0, TAV bit 0 of 512 each -> "!", run 1 "B", "!", run 509 "H9", "!", run 511 "H/", ...
L1_TEXT = "!B!H9!H/!H/"
# EF (the HLT): physics bit 1 of 8192 (then a run of 8190 = "B/+"), through all zero, resurrected absent.
EF_TEXT = "B!B/+;CAA;"


def event_pb(
    run: int = 350000,
    event: int = 1234567890123,
    *,
    l1: str = L1_TEXT,
    ef: str = EF_TEXT,
    tokens: tuple[tuple[str, str], ...] = (("StreamAOD", AOD_TOKEN), ("StreamRAW", RAW_TOKEN)),
    l1id: int | None = 0x1000007,
    required: bool = True,
    optional: bool = True,
) -> bytes:
    body = fv(1, run) + (fv(2, event) if required else b"") + fv(3, 812) + fv(4, 1_528_000_000) + fv(5, 123_456_789)
    body += fv(6, 1234) + (fv(7, l1id) if l1id is not None else b"") + fv(8, 0) + fv(9, 1) + fv(10, 0)
    body += (fs(11, l1) if l1 else b"") + (fs(13, ef) if ef else b"")
    if optional:  # SMK, HLTPSK, L1PSK, mcEventWeight, mcChannelNumber
        body += fv(14, 2786) + fv(15, 17) + fv(16, 23) + ff(17, 0.5) + fv(18, 0)
    for name, token in tokens:
        body += fs(20, fs(1, name) + fs(2, token))
    return body


def good_records() -> list[bytes]:
    """Header(1) BeginGUID(2) TriggerMenu(3) EIEvent(4) EIEvent(5) EndGUID(6) Trailer(7)."""
    return [
        record(1, header_pb()),
        record(3, begin_pb()),
        record(5, MENU_PB),
        record(6, event_pb(event=1)),
        record(6, event_pb(event=2, l1id=None, l1="", ef="")),
        record(4, end_pb(2)),
        record(2, trailer_pb(2, 1)),
    ]


# ---------------------------------------------------------------- the original layout, byte for byte


def test_hand_built_file_in_the_original_layout(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "job.ei.spb", spb_bytes(*good_records()))
    source = open_input(str(path))
    assert isinstance(source, SpbInput)
    assert source.name == str(path)
    assert source.guid == GUID_A
    assert source.header.taskID == "12345.G" and source.header.jobID == "6789012.1"
    assert source.declared_events == 2
    table = read_all(source)
    assert table.schema == EVENT_SCHEMA
    rows = table.to_pylist()
    first, second = rows
    assert first["run_number"] == 350000 and first["event_number"] == 1
    assert (first["lumi_block"], first["timestamp"], first["timestamp_ns_offset"], first["bcid"]) == (
        812,
        1_528_000_000,
        123_456_789,
        1234,
    )
    assert first["extended_level1_id"] == 0x1000007 and second["extended_level1_id"] is None
    assert (first["is_simulation"], first["is_calibration"], first["is_testbeam"]) == (False, True, False)
    assert (first["smk"], first["hlt_psk"], first["l1_psk"], first["mc_event_weight"]) == (2786, 17, 23, 0.5)
    assert first["l1_tbp"] == bytes([0b101]) + bytes(L1_MASK_BYTES - 1)
    assert first["l1_tap"] == first["l1_tav"] == bytes([1]) + bytes(L1_MASK_BYTES - 1)
    assert first["l2_passed_physics"] is None and first["l2_passed_through"] is None
    assert first["hlt_passed_physics"] == bytes([0b10]) + bytes(HLT_MASK_BYTES - 1)
    assert first["hlt_passed_through"] == bytes(HLT_MASK_BYTES)
    assert first["hlt_resurrected"] is None
    for name in ("l1_tbp", "l1_tap", "l1_tav", "hlt_passed_physics", "hlt_passed_through"):
        assert second[name] is None
    assert first["provenance"] == [
        {
            "stream": "StreamAOD",
            "guid": GUID_A,
            "container": "POOLContainer(DataHeader)",
            "clid": CLID,
            "tech": 0x202,
            "oid1": 4,
            "oid2": 42,
        },
        {
            "stream": "StreamRAW",
            "guid": GUID_B,
            "container": "00000000",
            "clid": RAW_CLID,
            "tech": 0x1000,
            "oid1": 0,
            "oid2": 80_000_000,
        },
    ]
    assert first["input_guid"] == second["input_guid"] == GUID_A
    layout = source.layout()
    assert [block.guid for block in layout.blocks] == [GUID_A]
    block = layout.blocks[0]
    assert block.events == block.declared_events == 2 and block.first_record == 2
    assert block.begin.AMITag == "f1234_m2020" and block.trigger_menu is not None
    assert block.trigger_menu.HLTMenu == "1:HLT_e26_lhtight;3:HLT_mu26" and not block.trigger_menu.HasField("L2Menu")
    assert layout.trailer.nfiles == 1 and layout.events == 2


def test_optional_fields_a_record_lacks_are_null(tmp_path: Path) -> None:
    records = good_records()
    records[3] = record(6, event_pb(event=1, optional=False, l1id=None))
    table = read_all(SpbInput(write_gz(tmp_path / "opt.ei.spb", spb_bytes(*records))))
    first, second = table.to_pylist()
    for name in ("smk", "hlt_psk", "l1_psk", "mc_event_weight", "mc_channel_number", "extended_level1_id"):
        assert first[name] is None, name  # never a stand-in 0
    assert (second["smk"], second["mc_event_weight"], second["mc_channel_number"]) == (2786, 0.5, 0)
    assert (first["lumi_block"], first["is_simulation"], first["is_calibration"]) == (812, False, True)


@pytest.mark.parametrize("collected", [True, False])
def test_events_without_tokens_have_null_provenance_when_none_was_collected(tmp_path: Path, collected: bool) -> None:
    records = good_records()
    records[0] = record(1, header_pb()[:-4] + fv(5, int(collected)) + fv(6, 1))
    records[4] = record(6, event_pb(event=2, tokens=()))
    table = read_all(SpbInput(write_gz(tmp_path / "prov.ei.spb", spb_bytes(*records))))
    first, second = table.column("provenance").to_pylist()
    assert len(first) == 2  # tokens are provenance whatever the Header says
    assert second == ([] if collected else None)


def test_writer_produces_the_hand_built_bytes(tmp_path: Path) -> None:
    content = spb_bytes(*good_records())
    header = ei.Header_p1.FromString(header_pb())
    files = [
        (
            ei.BeginGUID_p1.FromString(begin_pb()),
            ei.TriggerMenu_p1.FromString(MENU_PB),
            [
                ei.EIEvent_p1.FromString(event_pb(event=1)),
                ei.EIEvent_p1.FromString(event_pb(event=2, l1id=None, l1="", ef="")),
            ],
            ei.EndGUID_p1.FromString(end_pb(2)),
        )
    ]
    path = tmp_path / "w.ei.spb"
    write_spb(path, header, files, ei.Trailer_p1.FromString(trailer_pb(2, 1)))
    assert gzip.decompress(path.read_bytes()) == content


def test_spb_prefix_and_suffixes_open_the_reader(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "odd-name.bin", spb_bytes(*good_records()))
    assert isinstance(open_input(f"spb:{path}"), SpbInput)
    assert isinstance(open_input(str(write_gz(tmp_path / "x.spb", spb_bytes(*good_records())))), SpbInput)


def test_reads_across_buffer_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_gz(tmp_path / "job.ei.spb", spb_bytes(*good_records()))
    expected = read_all(SpbInput(path))
    monkeypatch.setattr(spb, "READ_BLOCK", 3)
    assert read_all(SpbInput(path), 1).equals(expected)


def test_regular_records_are_decoded_column_by_column(
    tmp_path: Path, events: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "regular.ei.spb"
    write_tables(path, [(GUID_A, [events.slice(0, 300)])])

    def refuse(*args: object) -> None:
        raise AssertionError("the record-by-record path was taken")

    monkeypatch.setattr(spb_events, "_slow", refuse)
    assert (
        read_all(SpbInput(path), 128)
        .drop_columns(["input_guid"])
        .equals(events.slice(0, 300).drop_columns(["input_guid"]))
    )


def test_unusual_records_are_decoded_record_by_record_alike(tmp_path: Path) -> None:
    """Fields out of order, an unknown field, a field given twice: valid protobuf that the column-wise
    path leaves to the protobuf runtime; the events are those of the plain records."""
    plain = good_records()
    odd = list(plain)
    second = event_pb(event=2, l1id=None, l1="", ef="")
    odd[3] = record(6, fv(19, 77) + event_pb(event=1))  # an unknown field first
    run = fv(1, 350000)
    assert second.startswith(run)
    odd[4] = record(6, fv(4, 1) + second[len(run) :] + run)  # timeStamp twice, runNumber last
    expected = read_all(SpbInput(write_gz(tmp_path / "plain.ei.spb", spb_bytes(*plain))))
    table = read_all(SpbInput(write_gz(tmp_path / "odd.ei.spb", spb_bytes(*odd))))
    assert table.column("timestamp").to_pylist() == [1_528_000_000, 1_528_000_000]  # the last one wins
    assert table.equals(expected)


# ---------------------------------------------------------------- round trips through our writer


def test_synthetic_events_round_trip(tmp_path: Path, events: pa.Table) -> None:
    guid = events.column("input_guid")[0].as_py()
    path = tmp_path / "synthetic.ei.spb"
    write_tables(path, [(guid, [events.slice(0, 700), events.slice(700)])])
    source = SpbInput(path)
    assert source.guid == guid and source.declared_events == events.num_rows
    for max_rows in (1, 333, 2000, 5000):
        tables = list(source.batches(max_rows))
        assert all(t.num_rows <= max_rows for t in tables)
        if max_rows > 1:
            assert read_all(source, max_rows).equals(events)
    # and through the chunk codec, as the producer ships them
    assert decode_body(Body(encode_body(read_all(source)))).equals(events)


def varied_events() -> pa.Table:
    """Synthetic events with every column exercised: L2 masks, nulls, flags, MC numbers, no tokens."""
    base = pa.concat_tables(SyntheticInput(40, 3).batches(40))
    n = base.num_rows
    rng = np.random.default_rng(9)
    cols = {name: base.column(name).combine_chunks() for name in base.column_names}
    some = pa.array(rng.random(n) < 0.5)
    cols["l2_passed_physics"] = cols["hlt_passed_physics"]
    cols["l2_passed_through"] = pc.if_else(some, cols["hlt_passed_through"], pa.nulls(n, pa.binary()))
    cols["l2_resurrected"] = cols["hlt_resurrected"]
    cols["hlt_resurrected"] = pc.if_else(some, pa.nulls(n, pa.binary()), cols["hlt_resurrected"])
    no_trigger = pa.array(np.arange(n) % 7 == 0)
    for name in (
        "l1_tbp",
        "l1_tap",
        "l1_tav",
        "l2_passed_physics",
        "l2_passed_through",
        "l2_resurrected",
        "hlt_passed_physics",
        "hlt_passed_through",
        "hlt_resurrected",
    ):
        cols[name] = pc.if_else(no_trigger, pa.nulls(n, pa.binary()), cols[name])
    cols["is_simulation"] = pa.array(rng.random(n) < 0.5)
    cols["is_calibration"] = pa.array(rng.random(n) < 0.5)
    cols["is_testbeam"] = pa.array(rng.random(n) < 0.5)
    unset = rng.random(n) < 0.3  # optional EIEvent fields left out: null
    cols["mc_channel_number"] = pa.array(rng.integers(0, 2**32, n), mask=unset)
    cols["mc_event_weight"] = pa.array(rng.normal(size=n).astype(np.float32), mask=~unset)
    for name in ("smk", "hlt_psk", "l1_psk"):
        cols[name] = pc.if_else(pa.array(rng.random(n) < 0.2), pa.nulls(n, pa.int64()), cols[name])
    cols["event_number"] = pa.array(np.arange(n) + (2**63 - 100))  # up to the largest the warehouse holds
    cols["run_number"] = pa.array(np.full(n, 2**32 - 1))
    prov = cols["provenance"].to_pylist()
    prov[3] = []
    prov[4] = prov[4][:1]
    prov[5] = [{**ref, "clid": "not-a-guid", "container": "", "tech": 2**32 - 1, "oid1": 2**63 - 1} for ref in prov[5]]
    cols["provenance"] = pa.array(prov, base.schema.field("provenance").type)
    return pa.Table.from_arrays([cols[name] for name in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)


def test_every_column_round_trips(tmp_path: Path) -> None:
    events = varied_events()
    path = tmp_path / "varied.ei.spb"
    write_tables(path, [(events.column("input_guid")[0].as_py(), [events])])
    table = read_all(SpbInput(path), 7)
    assert table.equals(events)
    for name in EVENT_SCHEMA.names:
        assert table.column(name).equals(events.column(name)), name


def test_several_input_files_in_one_spb_file(tmp_path: Path) -> None:
    a = pa.concat_tables(SyntheticInput(30, 1).batches(30))
    b = EVENT_SCHEMA.empty_table()
    c = pa.concat_tables(SyntheticInput(25, 3).batches(25))
    path = tmp_path / "three.ei.spb"
    write_tables(path, [(GUID_A, [a]), (GUID_B.lower(), [b]), (CLID, [c])])
    source = SpbInput(path)
    assert source.guid == GUID_A and source.declared_events == 55
    table = read_all(source, 20)
    assert table.num_rows == 55
    assert table.column("input_guid").to_pylist() == [GUID_A] * 30 + [CLID] * 25
    assert table.drop_columns(["input_guid"]).equals(pa.concat_tables([a, c]).drop_columns(["input_guid"]))
    files = source.files()
    assert [(f.guid, f.declared_events, f.name) for f in files] == [
        (GUID_A, 30, f"{path}#1"),
        (GUID_B, 0, f"{path}#2"),
        (CLID, 25, f"{path}#3"),
    ]
    assert [read_all(f, 7).num_rows for f in files] == [30, 0, 25]
    assert read_all(files[2]).column("input_guid").to_pylist() == [CLID] * 25
    assert [block.events for block in source.layout().blocks] == [30, 0, 25]


def test_eievents_from_table_writes_the_producers_strings(events: pa.Table) -> None:
    first = next(eievents_from_table(events.slice(0, 1)))
    assert first.L2PassedTrigMask == ";;"
    assert first.EFPassedTrigMask.count(";") == 2 and first.EFPassedTrigMask.endswith(";CAA")
    assert ";" not in first.L1PassedTrigMask
    assert [t.name for t in first.eitoken] == ["StreamAOD", "StreamESD", "StreamRAW"]
    assert first.eitoken[2].token.startswith("[DB=") and "[TECH=00001000]" in first.eitoken[2].token


def test_unchecked_counts_are_still_reported(tmp_path: Path) -> None:
    records = good_records()
    records[5] = record(4, end_pb(5))
    records[6] = record(2, trailer_pb(9, 3))
    path = write_gz(tmp_path / "counts.ei.spb", spb_bytes(*records))
    with pytest.raises(InputError, match="declares 5 events"):
        read_all(SpbInput(path))
    source = SpbInput(path, check_counts=False)
    assert read_all(source).num_rows == 2
    assert source.declared_events == 9
    assert source.files()[0].declared_events == 5


# ---------------------------------------------------------------- every failure: one line, the file, the record


def replace(index: int, new: bytes) -> Callable[[list[bytes]], list[bytes]]:
    def change(records: list[bytes]) -> list[bytes]:
        return [*records[:index], new, *records[index + 1 :]]

    return change


def insert(index: int, new: bytes) -> Callable[[list[bytes]], list[bytes]]:
    return lambda records: [*records[:index], new, *records[index:]]


def drop(*indexes: int) -> Callable[[list[bytes]], list[bytes]]:
    return lambda records: [r for i, r in enumerate(records) if i not in indexes]


def swap(i: int, j: int) -> Callable[[list[bytes]], list[bytes]]:
    def change(records: list[bytes]) -> list[bytes]:
        records = list(records)
        records[i], records[j] = records[j], records[i]
        return records

    return change


BAD_RECORDS = {
    "unknown record type": (insert(4, record(7, b"")), 5, "unknown record word 0x00000701"),
    "high bits in the record word": (replace(3, record(6, event_pb(), word=0x10000601)), 4, "unknown record word"),
    "message version 2": (replace(3, record(6, event_pb(), word=0x602)), 4, "unsupported message version 2"),
    "oversized record": (replace(3, struct.pack("<II", 0x601, 0xFFFFFFF0)), 4, "exceeds the limit"),
    "truncated record": (lambda r: [*r[:4], r[4][:-10]], 5, "bytes declared"),
    "truncated record header": (lambda r: [*r, b"\x01\x06\x00"], 8, "truncated record header: 3 of 8 bytes"),
    "no Trailer": (drop(6), 7, "the file ends after record 6 without a Trailer"),
    "file ends inside a block": (drop(5, 6), 6, "inside the block opened by record 2"),
    "EndGUID count": (replace(5, record(4, end_pb(3))), 6, "declares 3 events, the block of GUID"),
    "Trailer event count": (replace(6, record(2, trailer_pb(3, 1))), 7, "declares 3 events, the file holds 2"),
    "Trailer file count": (replace(6, record(2, trailer_pb(2, 2))), 7, "declares 2 input files, the file holds 1"),
    "EIEvent before BeginGUID": (insert(1, record(6, event_pb())), 2, "EIEvent before any BeginGUID"),
    "EIEvent between blocks": (insert(6, record(6, event_pb())), 7, "outside a BeginGUID..EndGUID block"),
    "TriggerMenu after events": (swap(2, 3), 4, "must follow its BeginGUID directly"),
    "second Header": (insert(6, record(1, header_pb())), 7, "a second Header"),
    "BeginGUID inside a block": (insert(4, record(3, begin_pb(GUID_B))), 5, "inside the block opened by record 2"),
    "EndGUID without BeginGUID": (insert(6, record(4, end_pb(0))), 7, "EndGUID without a BeginGUID"),
    "Trailer inside a block": (insert(4, record(2, trailer_pb(1, 1))), 5, "Trailer inside the block"),
    "record after the Trailer": (lambda r: [*r, record(6, event_pb())], 8, "record after the Trailer"),
    "undecodable event": (replace(3, record(6, b"\xff\xff\xff")), 4, "undecodable protobuf"),
    "event lacks a required field": (replace(3, record(6, event_pb(required=False))), 4, "missing required fields"),
    "bad token": (
        replace(4, record(6, event_pb(tokens=(("StreamAOD", AOD_TOKEN), ("StreamRAW", "[DB=nope]"))))),
        5,
        "eitoken 1: token '[DB=nope]'",
    ),
    "bad RLE": (replace(3, record(6, event_pb(l1="!B!H9!H/!H?"))), 4, "invalid character '?'"),
    "event number of 2^63": (
        replace(4, record(6, event_pb(event=2**63))),
        5,
        "event_number 9223372036854775808 is 2^63 or more",
    ),
    # a 32-bit field whose varint holds more: the protobuf runtime would keep run 5
    "run number of 2^32 + 5": (replace(4, record(6, event_pb(run=2**32 + 5))), 5, "runNumber 4294967301 does not fit"),
    # the same next to an unknown field (decoded record by record by the protobuf runtime)
    "run number of 2^32 + 5, unusual record": (
        replace(4, record(6, event_pb(run=2**32 + 5) + fv(99, 1))),
        5,
        "runNumber 4294967301 does not fit",
    ),
    "token OID of 2^63": (
        replace(3, record(6, event_pb(tokens=(("StreamAOD", AOD_TOKEN), ("StreamRAW", BIG_OID_TOKEN))))),
        4,
        "eitoken 1: provenance.oid1 9223372036854775808 is 2^63 or more",
    ),
    "bad HLT levels": (replace(4, record(6, event_pb(ef="CAA;CAA"))), 5, "2 ';'-separated parts"),
    "bad BeginGUID guid": (replace(1, record(3, begin_pb("not-a-guid"))), 2, "'not-a-guid' is not 8-4-4-4-12"),
    "header lacks a required field": (replace(0, record(1, fv(1, 5))), 1, "missing required fields"),
    "token not UTF-8": (
        replace(
            4, record(6, event_pb(tokens=()) + fs(20, fs(1, "StreamAOD") + fs(2, AOD_TOKEN.encode()[:-2] + b"\xe7]")))
        ),
        5,
        "(EIEvent) at byte 692: not UTF-8 text: eitoken[0].token",
    ),
    "stream name not UTF-8": (
        replace(
            3, record(6, event_pb(tokens=(("StreamAOD", AOD_TOKEN),)) + fs(20, fs(1, b"Str\xffeam") + fs(2, RAW_TOKEN)))
        ),
        4,
        "not UTF-8 text: eitoken[1].name",
    ),
    "empty stream name": (
        replace(4, record(6, event_pb(tokens=(("StreamAOD", AOD_TOKEN), (" ", RAW_TOKEN))))),
        5,
        "eitoken 1: the name (the stream) is an empty or blank string",
    ),
    "mask not UTF-8": (
        replace(3, record(6, event_pb(ef="") + fs(13, b"B\xe7"))),
        4,
        "not UTF-8 text: EFPassedTrigMask",
    ),
    "BeginGUID guid not UTF-8": (replace(1, record(3, begin_pb() + fs(5, b"\xe7" * 36))), 2, "not UTF-8 text: guid"),
    "Header task not UTF-8": (replace(0, record(1, header_pb() + fs(2, b"\xe7"))), 1, "not UTF-8 text: taskID"),
    "BeginGUID first": (drop(0), 1, "the first record must be the Header"),
    "no input file": (lambda r: [r[0], record(2, trailer_pb(0, 0))], 2, "the file holds no input file"),
    "Header only": (lambda r: r[:1], 2, "the file ends before its first BeginGUID"),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_bad_records(tmp_path: Path, case: str) -> None:
    change, number, reason = BAD_RECORDS[case]
    path = write_gz(tmp_path / "bad.ei.spb", spb_bytes(*change(good_records())))
    with pytest.raises(InputError) as info:
        read_all(SpbInput(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"input {path}: record {number} ("), message
    assert reason in message, message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (spb_bytes(*good_records(), magic=0x12345678), "bad magic 0x12345678, expected 0x6E56C8C7"),
        (spb_bytes(*good_records(), version=2), "unsupported SPB version 2"),
        (b"\xc7\xc8\x56", "truncated: 3 of 8 bytes"),
        (b"", "truncated: 0 of 8 bytes"),
    ],
)
def test_bad_file_header(tmp_path: Path, content: bytes, reason: str) -> None:
    path = write_gz(tmp_path / "bad.ei.spb", content)
    with pytest.raises(InputError) as info:
        SpbInput(path)
    assert str(info.value).startswith(f"input {path}: record 0 (file header) at byte 0: ")
    assert reason in str(info.value)


def test_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "plain.ei.spb"
    path.write_bytes(spb_bytes(*good_records()))
    with pytest.raises(InputError, match=r"record 0 \(file header\).*unreadable gzip stream"):
        SpbInput(path)


@pytest.mark.parametrize("keep", [0.1, 0.3, 0.5, 0.7, 0.9, -9, -4, -1])
def test_truncated_gzip(tmp_path: Path, events: pa.Table, keep: float) -> None:
    path = tmp_path / "full.ei.spb"
    write_tables(path, [(GUID_A, [events])], compresslevel=1)
    data = path.read_bytes()
    cut = tmp_path / "cut.ei.spb"
    cut.write_bytes(data[: int(len(data) * keep) if keep > 0 else int(keep)])
    with pytest.raises(InputError) as info:
        read_all(SpbInput(cut))
    message = str(info.value)
    assert message.startswith(f"input {cut}: record ") and "\n" not in message
    assert "truncated gzip stream" in message or "unreadable gzip stream" in message
    # The record named is the one the data ends in (or the record header after the last whole one),
    # not the one being read when the gzip reader gave up a block earlier.
    there = len(zlib.decompressobj(31).decompress(cut.read_bytes()))
    starts, whole = _record_starts(gzip.decompress(data))
    starts.append(whole)  # where a record after the last would start
    number = sum(1 for start in starts if start <= there)
    kind = "record header" if there in starts else r"\w+"
    expected = rf"record {number} \({kind}\) at byte {starts[number - 1]}: "
    assert re.search(expected + r"truncated gzip stream .*: the data ends at byte " + str(there) + "$", message)


def _record_starts(data: bytes) -> tuple[list[int], int]:
    """Where each record of an uncompressed SPB file starts (record 1 first), and where the last ends."""
    starts, pos = [], 8
    while pos < len(data):
        starts.append(pos)
        pos += 8 + struct.unpack_from("<I", data, pos + 4)[0]
    return starts, pos


def test_truncated_gzip_small_file_names_the_record(tmp_path: Path, events: pa.Table) -> None:
    """A file smaller than one read block cut in half: the error was at "record 0 (file header)"."""
    path = tmp_path / "full.ei.spb"
    write_tables(path, [(GUID_A, [events])], compresslevel=1)
    cut = tmp_path / "cut.ei.spb"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=r"record [1-9]\d* \(EIEvent\) at byte [1-9]\d*: truncated gzip"):
        read_all(SpbInput(cut))


def test_corrupt_gzip(tmp_path: Path, events: pa.Table) -> None:
    path = tmp_path / "full.ei.spb"
    write_tables(path, [(GUID_A, [events])], compresslevel=1)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"^input .*: record \d+ .*(gzip|truncated|undecodable|unknown|invalid|token)"):
        read_all(SpbInput(path))


def two_block_records(second_event: bytes) -> list[bytes]:
    """Header(1) BeginGUID(2) EIEvent(3) EndGUID(4) BeginGUID(5) EIEvent(6) EndGUID(7) Trailer(8)."""
    return [
        record(1, header_pb()),
        record(3, begin_pb(GUID_A)),
        record(6, event_pb(event=1)),
        record(4, end_pb(1)),
        record(3, begin_pb(GUID_B)),
        record(6, second_event),
        record(4, end_pb(1)),
        record(2, trailer_pb(2, 2)),
    ]


def test_files_checks_the_whole_structure_first(tmp_path: Path) -> None:
    records = two_block_records(event_pb(event=2))
    records[6] = record(4, end_pb(4))
    path = write_gz(tmp_path / "two.ei.spb", spb_bytes(*records))
    source = SpbInput(path)
    with pytest.raises(InputError, match=r"record 7 \(EndGUID\) .*declares 4 events"):
        source.files()
    with pytest.raises(InputError, match=r"record 7 \(EndGUID\)"):
        source.declared_events  # noqa: B018 (the property scans the file)


def test_one_input_file_reads_only_its_block(tmp_path: Path) -> None:
    bad_token = event_pb(event=2, tokens=(("StreamAOD", AOD_TOKEN.replace("[TECH=00000202]", "[TECH=XYZ]")),))
    path = write_gz(tmp_path / "two.ei.spb", spb_bytes(*two_block_records(bad_token)))
    first, second = SpbInput(path).files()
    assert read_all(first).column("event_number").to_pylist() == [1]
    assert read_all(first).column("input_guid").to_pylist() == [GUID_A]
    with pytest.raises(InputError, match=r"record 6 \(EIEvent\) .*eitoken 0: token TECH='XYZ'"):
        read_all(second)
    with pytest.raises(InputError, match=r"record 6 \(EIEvent\)"):
        read_all(SpbInput(path))


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        (-8, "unreadable gzip stream: CRC check failed"),  # the member's CRC32
        (-4, "unreadable gzip stream: Incorrect length of data produced"),  # its length
        (None, "unreadable gzip stream"),  # a deflate block of the reserved type
    ],
)
def test_gzip_checks_are_one_line_errors(tmp_path: Path, events: pa.Table, where: int | None, reason: str) -> None:
    """The gzip reader (ISA-L's) checks the CRC and the length of each member; a broken deflate stream is
    its own error type: every one ends as an InputError of one line naming the record."""
    path = tmp_path / "full.ei.spb"
    write_tables(path, [(GUID_A, [events])], compresslevel=1)
    data = bytearray(path.read_bytes())
    if where is None:
        data = bytearray(gzip.compress(b"", mtime=0)[:10] + b"\x07" + bytes(32))  # BFINAL 1, BTYPE 11
    else:
        data[where] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as info:
        read_all(SpbInput(path))
    message = str(info.value)
    assert message.startswith(f"input {path}: record ") and "\n" not in message
    assert reason in message
