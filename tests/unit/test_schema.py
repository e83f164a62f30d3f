"""The committed generated code must be what scripts/gen-proto writes from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", "proto/eventindex/v1", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", "proto/eventindex/v1/eventindex.proto"],
        cwd=ROOT, check=True,
    )
    for name in ("eventindex_pb2.py", "eventindex_pb2.pyi"):
        committed = (ROOT / "eventindex" / "schema" / name).read_text()
        assert (tmp_path / name).read_text() == committed, f"{name} is stale: run scripts/gen-proto"


def test_event_message_carries_every_eievent_field() -> None:
    from eventindex.schema import eventindex_pb2 as pb

    names = set(pb.Event.DESCRIPTOR.fields_by_name)
    # EIEvent_p1 fields (REFERENCE.md section 1), by their v1 names.
    for name in ("run_number", "event_number", "lumi_block", "timestamp", "timestamp_ns_offset", "bcid",
                 "extended_level1_id", "is_simulation", "is_calibration", "is_testbeam", "l1_tbp", "l1_tap",
                 "l1_tav", "l2_passed_physics", "hlt_passed_physics", "smk", "hlt_psk", "l1_psk",
                 "mc_event_weight", "mc_channel_number", "provenance"):
        assert name in names
    prov = set(pb.Provenance.DESCRIPTOR.fields_by_name)
    assert prov == {"stream", "guid", "container", "clid", "tech", "oid1", "oid2"}
