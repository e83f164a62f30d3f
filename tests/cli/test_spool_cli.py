"""The pointer spool end to end through the CLIs: exit 6, `flush-spool`, exit 5 with --no-spool."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from eventindex.pointers import parse_pointer
from producer.spool import PointerSpool
from tests.helpers import Pipeline, assert_same_events, cli, store_dir, synthetic
from tests.unit.test_spool import closed_port


def test_no_broker_exit_6_then_flush_spool_then_the_task_loads_once(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path)
    dead = f"stomp://127.0.0.1:{closed_port()}/queue/q"
    produced = cli(
        "producer.cli", "--task", "task1", "--job", "j1", "--attempt", "1", "--dataset", "ds",
        "--input", "synthetic:3000:7",
        "--chunk-events", "1000", "--store", store_dir(tmp_path / "store"), "--broker", dead, "--threads", "3",
        cwd=tmp_path,
    )  # fmt: skip
    assert produced.returncode == 6, produced.stderr
    assert json.loads(produced.stdout)["spooled"] == 4
    last = produced.stderr.strip().splitlines()[-1]
    assert "4 pointer(s) were spooled" in last and "flush-spool" in last
    assert len(list(pipe.store.list())) == 4, "three chunks and the manifest are stored"
    spool = tmp_path / "ei-producer.spool"
    kinds = [parse_pointer(base64.b64decode(json.loads(line)["body"])).kind for line in spool.read_text().splitlines()]
    assert kinds == [1, 1, 1, 2], "three chunk pointers, then the manifest's"
    flush = cli("producer.cli", "flush-spool", "--broker", dead, cwd=tmp_path)
    assert flush.returncode == 5 and PointerSpool(spool).pending() == 4, "still no broker: the spool is kept"
    flush = cli("producer.cli", "flush-spool", "--broker", dead, "--broker", pipe.broker, cwd=tmp_path)
    assert flush.returncode == 0, flush.stderr
    assert json.loads(flush.stdout)["sent"] == 4
    again = cli("producer.cli", "flush-spool", "--broker", pipe.broker, cwd=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["sent"] == 0
    pipe.expect(1)
    pipe.run_supersink()
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded(), synthetic(7))


def test_no_spool_flag_fails_with_exit_5(tmp_path: Path) -> None:
    proc = cli(
        "producer.cli", "--task", "t", "--job", "j", "--attempt", "1", "--dataset", "ds", "--input", "synthetic:100",
        "--store", store_dir(tmp_path / "store"), "--broker", f"stomp://127.0.0.1:{closed_port()}/queue/q",
        "--no-spool", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 5
    assert proc.stderr.strip().splitlines()[-1].startswith("ei-producer: broker error: no broker reachable")
    assert not (tmp_path / "ei-producer.spool").exists()


def test_broker_only_mode_spools_whole_batches_and_flushes_them(tmp_path: Path) -> None:
    """`--mode mq` sends each input file as one transaction; with no broker the batch is spooled whole."""
    dead = f"stomp://127.0.0.1:{closed_port()}/queue/q"
    produced = cli(
        "producer.cli", "--task", "task1", "--job", "j1", "--attempt", "1", "--dataset", "ds",
        "--input", "synthetic:1000:8",
        "--mode", "mq", "--broker", dead, cwd=tmp_path,
    )  # fmt: skip
    assert produced.returncode == 6, produced.stderr
    summary = json.loads(produced.stdout)
    assert summary["spooled"] == summary["chunks"] + 1, "every events message, then the manifest"
    assert f"read every event, but {summary['spooled']} message(s) were spooled" in produced.stderr
    assert not (tmp_path / "store").exists()
    pipe = Pipeline(tmp_path)  # the supersink's (with its store directory)
    flush = cli("producer.cli", "flush-spool", "--broker", pipe.broker, cwd=tmp_path)
    assert flush.returncode == 0, flush.stderr
    pipe.expect(1)
    pipe.run_supersink()
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded(), synthetic(8, events=1000))


def test_a_directory_given_as_the_spool_and_a_negative_crash_point_are_usage_errors(tmp_path: Path) -> None:
    """Found by fault-hunting: `flush-spool --spool DIR` was exit 5 ("broker error"), and
    `--fail-after-chunks -1` died at once with exit 137."""
    (tmp_path / "d").mkdir()
    proc = cli(
        "producer.cli", "flush-spool", "--spool", str(tmp_path / "d"), "--broker", f"sqlite://{tmp_path / 'q.db'}"
    )
    assert (
        proc.returncode == 2
        and proc.stderr == f"ei-producer: --spool {tmp_path / 'd'} is a directory, not a pointer spool\n"
    )
    proc = cli(
        "producer.cli", "--task", "t", "--job", "j", "--attempt", "1", "--dataset", "ds", "--input", "synthetic:100",
        "--store", (tmp_path / "store").as_uri(), "--broker", f"sqlite://{tmp_path / 'q.db'}",
        "--fail-after-chunks", "-1", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr == "ei-producer: --fail-after-chunks must be 0 or more\n"
    assert not (tmp_path / "store").exists()
