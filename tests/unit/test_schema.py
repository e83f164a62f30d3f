"""The committed generated code must be what scripts/gen-proto writes from proto/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def test_atlas_records_keep_the_original_field_numbers() -> None:
    from producer.inputs import EventIndex_p1_pb2 as ei

    def fields(message: Any) -> dict[str, tuple[int, int, bool]]:
        return {f.name: (f.number, f.type, f.is_required) for f in message.DESCRIPTOR.fields}

    FD = ei.EIEvent_p1.DESCRIPTOR.fields_by_name["runNumber"]
    u32, u64, i64, boolean, string, flt, msg = (
        FD.TYPE_UINT32,
        FD.TYPE_UINT64,
        FD.TYPE_INT64,
        FD.TYPE_BOOL,
        FD.TYPE_STRING,
        FD.TYPE_FLOAT,
        FD.TYPE_MESSAGE,
    )
    assert ei.DESCRIPTOR.package == "EventIndex"
    assert fields(ei.Header_p1) == {
        "startProcTime": (1, u64, True),
        "taskID": (2, string, True),
        "jobID": (3, string, True),
        "inputDsName": (4, string, True),
        "provenanceRef": (5, boolean, True),
        "triggerInfo": (6, boolean, True),
    }
    assert fields(ei.Trailer_p1) == {
        "endProcTime": (1, u64, True),
        "nentries": (2, u32, True),
        "nfiles": (3, u32, True),
    }
    assert fields(ei.BeginGUID_p1) == {
        "startProcTime": (1, i64, True),
        "AMITag": (2, string, True),
        "trigStream": (3, string, True),
        "projName": (4, string, True),
        "guid": (5, string, True),
    }
    assert fields(ei.EndGUID_p1) == {"endProcTime": (1, u64, True), "nentries": (2, u32, True)}
    assert fields(ei.TriggerMenu_p1) == {
        "SMK": (1, u32, True),
        "L1PSK": (2, u32, True),
        "HLTPSK": (3, u32, True),
        "L1Menu": (4, string, True),
        "L2Menu": (5, string, False),
        "EFMenu": (6, string, False),
        "HLTMenu": (7, string, False),
    }
    assert fields(ei.EIEvent_p1) == {
        "runNumber": (1, u32, True),
        "eventNumber": (2, u64, True),
        "lumiBlock": (3, u32, True),
        "timeStamp": (4, u32, True),
        "timeStampNSOffset": (5, u32, True),
        "bcid": (6, u32, True),
        "extendedLevel1ID": (7, u32, False),
        "isSimulation": (8, boolean, True),
        "isCalibration": (9, boolean, True),
        "isTestBeam": (10, boolean, True),
        "L1PassedTrigMask": (11, string, False),
        "L2PassedTrigMask": (12, string, False),
        "EFPassedTrigMask": (13, string, False),
        "SMK": (14, u32, False),
        "HLTPSK": (15, u32, False),
        "L1PSK": (16, u32, False),
        "mcEventWeight": (17, flt, False),
        "mcChannelNumber": (18, u32, False),
        "eitoken": (20, msg, False),
    }
    assert fields(ei.EIEvent_p1.EItoken_p1) == {"name": (1, string, True), "token": (2, string, True)}


def test_event_message_carries_every_eievent_field() -> None:
    from eventindex.schema import eventindex_pb2 as pb

    names = set(pb.Event.DESCRIPTOR.fields_by_name)
    # EIEvent_p1 fields (docs/spb-format.md), by their v1 names.
    for name in (
        "run_number",
        "event_number",
        "lumi_block",
        "timestamp",
        "timestamp_ns_offset",
        "bcid",
        "extended_level1_id",
        "is_simulation",
        "is_calibration",
        "is_testbeam",
        "l1_tbp",
        "l1_tap",
        "l1_tav",
        "l2_passed_physics",
        "hlt_passed_physics",
        "smk",
        "hlt_psk",
        "l1_psk",
        "mc_event_weight",
        "mc_channel_number",
        "provenance",
    ):
        assert name in names
    prov = set(pb.Provenance.DESCRIPTOR.fields_by_name)
    assert prov == {"stream", "guid", "container", "clid", "tech", "oid1", "oid2", "absent"}
