"""What a data manager does over months, as processes: a lost ledger, late jobs, a downgrade."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eventindex.columns import EVENT_SCHEMA
from supersink.instance import loads_lock
from supersink.ledger import SCHEMA_VERSION, Ledger
from supersink.warehouse import Warehouse
from tests.helpers import ROOT, SORT, Pipeline, assert_same_events, sink_cli, synthetic


def _args(pipe: Pipeline) -> list[str]:
    return [
        "--store", (pipe.root / "store").as_uri(), "--warehouse", (pipe.root / "wh").as_uri(),
        "--state", str(pipe.root / "ledger.db"),
    ]  # fmt: skip


def _committed_events(pipe: Pipeline) -> pa.Table:
    """Every event the task's marker and amendments list, as a reader following the markers sees them."""
    task_dir = pipe.task_dir()
    files = [f["name"] for f in json.loads((task_dir / "_SUCCESS.json").read_text())["files"]]
    for amendment in sorted(task_dir.glob("_AMEND-*.json")):
        files += [f["name"] for f in json.loads(amendment.read_text())["files"]]
    table = pa.concat_tables(pq.read_table(task_dir / name) for name in files)
    return table.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA).sort_by(SORT)


def _lose_ledger(pipe: Pipeline) -> None:
    """The ledger's disk died: the ledger, its WAL and its assembly area are gone; the store and warehouse stay."""
    for path in pipe.root.glob("ledger.db*"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _partial_then_late_job(pipe: Pipeline) -> None:
    """task1 of 3 jobs committed partial with j1 and j2 (`load --force`)."""
    pipe.expect(3)
    pipe.produce("j1", 1)
    pipe.produce("j2", 2)
    pipe.run_supersink()
    forced = sink_cli("load", "--task", "task1", "--force", *_args(pipe))
    assert forced.returncode == 0, forced.stderr


def test_a_late_job_is_amended_after_the_ledger_was_lost(pipe: Pipeline) -> None:
    """The supersink that committed the task is gone with its ledger (a new identity now): the late job must
    still be amendable, once, and every event of the three jobs be committed once."""
    _partial_then_late_job(pipe)
    _lose_ledger(pipe)
    rebuilt = sink_cli("reconcile", *_args(pipe))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert pipe.status()["state"] == "loaded-partial"
    pipe.produce("j3", 3)
    pipe.run_supersink()
    assert [j["job"] for j in pipe.status()["late_jobs"]] == ["j3"]

    amended = sink_cli("load", "--task", "task1", "--amend", *_args(pipe))
    assert amended.returncode == 0, amended.stderr
    assert json.loads(amended.stdout)["amendment"] == 1
    assert_same_events(_committed_events(pipe), synthetic(1, 2, 3))
    again = sink_cli("load", "--task", "task1", "--amend", *_args(pipe))
    assert again.returncode == 0 and "no late job" in again.stderr
    assert_same_events(_committed_events(pipe), synthetic(1, 2, 3))
    assert not (pipe.task_dir() / "_AMEND-0002.json").exists()


def test_an_amendment_another_supersink_claimed_is_exit_3_naming_the_claim(pipe: Pipeline) -> None:
    _partial_then_late_job(pipe)
    pipe.produce("j3", 3)
    pipe.run_supersink()
    warehouse = Warehouse.from_url((pipe.root / "wh").as_uri())
    warehouse.claim("ds", "task1", "another-supersink", amendment=1)  # amending it right now, or lost mid-way
    claim = Path(warehouse.claim_path("ds", "task1", amendment=1))
    warehouse.close()

    refused = sink_cli("load", "--task", "task1", "--amend", *_args(pipe))
    assert refused.returncode == 3, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "another-supersink" in lines[0] and str(claim) in lines[0], lines
    assert not (pipe.task_dir() / "_AMEND-0001.json").exists()

    claim.unlink()  # the operator releases the lost supersink's claim, as the line says
    amended = sink_cli("load", "--task", "task1", "--amend", *_args(pipe))
    assert amended.returncode == 0, amended.stderr
    assert_same_events(_committed_events(pipe), synthetic(1, 2, 3))


def test_amend_against_a_warehouse_without_the_commit_is_a_usage_error(pipe: Pipeline, tmp_path: Path) -> None:
    """The warehouse given is not the one the task was loaded to (or its marker is gone): exit 2, nothing written."""
    _partial_then_late_job(pipe)
    pipe.produce("j3", 3)
    pipe.run_supersink()
    other = tmp_path / "other-wh"
    other.mkdir()
    args = _args(pipe)
    args[args.index("--warehouse") + 1] = other.as_uri()
    refused = sink_cli("load", "--task", "task1", "--amend", *args)
    assert refused.returncode == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "holds no commit" in refused.stderr
    assert not any(other.rglob("*.parquet"))


def _run(pipe: Pipeline) -> subprocess.CompletedProcess[str]:
    return sink_cli("run", "--broker", pipe.broker, *_args(pipe), "--until-idle", "0.3")


def test_a_ledger_written_by_a_newer_supersink_is_refused_with_exit_2_and_left_alone(pipe: Pipeline) -> None:
    """A downgrade: exit 2 (a unit with RestartPreventExitStatus=2 does not restart in a loop), one line."""
    Ledger(pipe.root / "ledger.db").close()
    newer = str(SCHEMA_VERSION + 1)
    with sqlite3.connect(pipe.root / "ledger.db") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (newer,))
    db.close()
    for done in (_run(pipe), sink_cli("status", "--state", str(pipe.root / "ledger.db"))):
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "newer than this supersink" in lines[0], lines
    with sqlite3.connect(pipe.root / "ledger.db") as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (newer,)
    db.close()


def test_a_ledger_restored_from_before_a_commit_whose_objects_are_gone_is_told_by_load(pipe: Pipeline) -> None:
    """A backup (SQLite's online backup, as docs/operations.md says) taken while the task waited for j2; the task
    was committed after it and retention deleted its transit objects; the backup is restored. The pointers of j2
    were acked long ago and the store holds nothing of the task: `load --task` records the warehouse's commit
    (nothing written again) rather than offering a partial `--force` load."""
    pipe.expect(2)
    pipe.produce("j1", 1)
    pipe.run_supersink()
    backup = pipe.root / "backup.db"
    with sqlite3.connect(pipe.root / "ledger.db") as live, sqlite3.connect(backup) as copy:
        live.backup(copy)
    live.close()
    copy.close()
    pipe.produce("j2", 2)
    pipe.run_supersink()
    committed = sorted(p.name for p in pipe.task_dir().iterdir())
    shutil.rmtree(pipe.root / "store" / "task1")  # retention, days later
    _lose_ledger(pipe)
    shutil.copyfile(backup, pipe.root / "ledger.db")
    assert _run(pipe).returncode == 0
    assert pipe.status()["state"] == "waiting"

    loaded = sink_cli("load", "--task", "task1", *_args(pipe))
    assert loaded.returncode == 0, loaded.stderr
    summary = json.loads(loaded.stdout)
    assert (summary["rows"], summary["partial"], summary["already_loaded"]) == (6_000, False, True)
    st = pipe.status()
    assert (st["state"], st["events_loaded"]) == ("loaded", 6_000)
    assert sorted(p.name for p in pipe.task_dir().iterdir()) == committed, "nothing written again"
    assert_same_events(_committed_events(pipe), synthetic(1, 2))


def test_a_reader_that_goes_away_does_not_change_the_exit_code(pipe: Pipeline) -> None:
    """`ei-supersink status --json | head -1`: exit 1 ("internal error: BrokenPipeError") in 2 of 8 runs."""
    pipe.expect(1)
    pipe.produce("j1", 1)
    pipe.run_supersink()
    read, write = os.pipe()
    os.close(read)  # the reader went away before anything was written
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        for command in (["status", "--json", "--state", str(pipe.root / "ledger.db")],
                        ["quarantine", "list", "--state", str(pipe.root / "ledger.db")],
                        ["committed", "--warehouse", (pipe.root / "wh").as_uri()]):  # fmt: skip
            done = subprocess.run(
                [sys.executable, "-m", "supersink.cli", *command], stdout=write, stderr=subprocess.PIPE, text=True,
                env=env, timeout=120,
            )  # fmt: skip
            assert (done.returncode, done.stderr) == (0, ""), (command, done.stderr)
    finally:
        os.close(write)


def test_a_one_shot_load_and_the_service_never_load_one_task_at_once(pipe: Pipeline) -> None:
    """They share one identity (it lives in the ledger), so the load claim did not keep them apart: a `load
    --force` finishing after the service's full load had committed overwrote the committed parts."""
    pipe.expect(1)
    pipe.produce("j1", 1)
    ledger = pipe.root / "ledger.db"
    with loads_lock(ledger, wait=True) as held:  # a one-shot load of this supersink is writing
        assert held
        pipe.run_supersink()
        assert pipe.status()["state"] == "waiting" and not (pipe.task_dir() / "_SUCCESS.json").exists()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        one_shot = subprocess.Popen(
            [sys.executable, "-m", "supersink.cli", "load", "--task", "task1", *_args(pipe)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                one_shot.wait(3.0)  # it waits for the load in progress
        except BaseException:
            one_shot.kill()
            raise
    out, err = one_shot.communicate(timeout=120)
    assert one_shot.returncode == 0, err
    assert json.loads(out)["already_loaded"] is False
    pipe.run_supersink()  # the service finds the commit: nothing loaded twice
    assert pipe.status()["state"] == "loaded" and len(list(pipe.task_dir().glob("_AMEND-*"))) == 0
    assert_same_events(_committed_events(pipe), synthetic(1))
