"""The generated protobuf code is what protoc writes from proto/ today (protoc run as a process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_schema import ROOT


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "proto/eventindex/v1",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            "proto/eventindex/v1/eventindex.proto",
        ],
        cwd=ROOT,
        check=True,
    )
    for name in ("eventindex_pb2.py", "eventindex_pb2.pyi"):
        committed = (ROOT / "eventindex" / "schema" / name).read_text()
        assert (tmp_path / name).read_text() == committed, f"{name} is stale: run scripts/gen-proto"


def test_generated_atlas_code_is_fresh(tmp_path: Path) -> None:
    """producer/inputs/EventIndex_p1_pb2.py(i) is what scripts/gen-proto writes from proto/atlas."""
    pytest.importorskip("grpc_tools")
    command = [sys.executable, "-m", "grpc_tools.protoc", "-I", "proto/atlas"]
    command += [f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", "proto/atlas/EventIndex_p1.proto"]
    subprocess.run(command, cwd=ROOT, check=True)
    for name in ("EventIndex_p1_pb2.py", "EventIndex_p1_pb2.pyi"):
        committed = (ROOT / "producer" / "inputs" / name).read_text()
        assert (tmp_path / name).read_text() == committed, f"{name} is stale: run scripts/gen-proto"
