"""`*.ei.spb` inputs through `ei-producer` as a process: exit codes and per-file manifest summaries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.spb_writer import write_tables
from tests.helpers import store_dir
from tests.unit.test_spb import ROOT, end_pb, good_records, record, spb_bytes, write_gz


def test_producer_exits_with_the_input_code_and_one_line(tmp_path: Path) -> None:
    records = good_records()
    records[5] = record(4, end_pb(7))
    path = write_gz(tmp_path / "bad.ei.spb", spb_bytes(*records))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "producer.cli",
            "--task",
            "t1",
            "--job",
            "j1",
            "--attempt",
            "1",
            "--dataset",
            "ds",
            "--store",
            store_dir(tmp_path / "store"),
            "--broker",
            f"sqlite://{tmp_path / 'q.db'}",
            "--input",
            str(path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "record 6 (EndGUID)" in lines[0], proc.stderr


def test_each_input_file_of_an_spb_file_gets_its_own_manifest_summary(tmp_path: Path) -> None:
    from eventindex.codec import decode_manifest
    from producer.inputs.synthetic import SyntheticInput

    first, second = SyntheticInput(300, 1), SyntheticInput(200, 2)
    path = tmp_path / "job.ei.spb"
    write_tables(path, [(first.guid, first.batches(300)), (second.guid, second.batches(200))])
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "producer.cli", "--task", "t", "--job", "j", "--attempt", "1", "--dataset", "d",
         "--input", str(path), "--store", store_dir(tmp_path / "store"), "--broker", f"sqlite://{tmp_path}/q.db"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)}, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = decode_manifest((tmp_path / "store" / "t" / "j" / "1" / "manifest.eim").read_bytes())
    assert [(s.guid, s.events, s.declared_events) for s in manifest.inputs] == [
        (first.guid, 300, 300),
        (second.guid, 200, 200),
    ]
    assert manifest.total_events == 500
