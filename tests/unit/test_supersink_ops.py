"""Operator features on the embedded default: deadlines, forced loads, reconcile, quarantine retry, claims."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from eventindex.errors import AlreadyCommittedError
from eventindex.names import chunk_key
from eventindex.transport import open_consumer, open_publisher
from supersink.ledger import Ledger
from supersink.service import Supersink
from supersink.warehouse import Warehouse
from tests.helpers import Pipeline, Recorder, assert_same_events, sink_cli, synthetic


@pytest.fixture
def pipe(tmp_path: Path) -> Pipeline:
    return Pipeline(tmp_path)


def run_with_deadline(pipe: Pipeline, deadline: float) -> Supersink:
    ledger = Ledger(pipe.root / "ledger.db")
    sink = Supersink(ledger, pipe.store, Warehouse.from_url((pipe.root / "wh").as_uri()), task_deadline=deadline)
    with open_consumer(pipe.broker) as consumer:
        sink.run(consumer, threading.Event(), until_idle=0.3)
    ledger.close()
    return sink


def test_deadline_fails_the_task_naming_what_is_missing_and_late_data_still_loads(pipe: Pipeline) -> None:
    pipe.expect(3, events=9_000)
    pipe.produce("j1", 1)
    pipe.produce("j2", 2, die_after=2)
    run_with_deadline(pipe, 0.0)
    st = pipe.status()
    assert st["state"] == "failed"
    assert "not complete 0s after it was first seen" in st["detail"]
    assert "job j2 attempt 1: no manifest yet (2 chunks seen)" in st["detail"]
    assert "1 of 3 expected jobs not seen yet" in st["detail"]
    pipe.produce("j2", 2, attempt=2)
    pipe.produce("j3", 3)
    run_with_deadline(pipe, 3600)
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded(), synthetic(1, 2, 3))


def test_forced_load_writes_what_is_there_marked_partial(pipe: Pipeline) -> None:
    pipe.expect(2)
    pipe.produce("j1", 1)
    pipe.run_supersink()
    assert pipe.status()["state"] == "waiting"
    proc = sink_cli(
        "load", "--task", "task1", "--force", "--store", (pipe.root / "store").as_uri(),
        "--warehouse", (pipe.root / "wh").as_uri(), "--state", str(pipe.root / "ledger.db"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["partial"] is True and out["rows"] == 3_000
    assert out["missing"] == ["1 of 2 expected jobs not seen yet"]
    st = pipe.status()
    assert st["state"] == "loaded-partial" and st["partial"] is True
    assert_same_events(pipe.loaded(), synthetic(1))
    again = sink_cli(
        "load", "--task", "task1", "--force", "--store", (pipe.root / "store").as_uri(),
        "--warehouse", (pipe.root / "wh").as_uri(), "--state", str(pipe.root / "ledger.db"),
    )  # fmt: skip
    assert again.returncode == 0, "loading an already loaded task is not an error"
    assert json.loads(again.stdout)["already_loaded"] is True


def test_load_without_force_refuses_an_incomplete_task(pipe: Pipeline) -> None:
    pipe.expect(2)
    pipe.produce("j1", 1)
    pipe.run_supersink()
    proc = sink_cli(
        "load", "--task", "task1", "--store", (pipe.root / "store").as_uri(),
        "--warehouse", (pipe.root / "wh").as_uri(), "--state", str(pipe.root / "ledger.db"),
    )  # fmt: skip
    assert proc.returncode == 3
    assert "is waiting: 1 of 2 expected jobs not seen yet (use --force" in proc.stderr


def test_reconcile_recovers_a_task_whose_pointers_were_all_lost(pipe: Pipeline) -> None:
    lost = Recorder()  # the broker "loses" every pointer
    for job, seed in (("j1", 1), ("j2", 2)):
        pipe.produce(job, seed, publisher=lost)
    pipe.produce("j3", 3, die_after=1, publisher=lost)
    pipe.expect(2)
    pipe.run_supersink()
    assert pipe.status()["state"] == "waiting"
    proc = sink_cli("reconcile", "--store", (pipe.root / "store").as_uri(), "--state", str(pipe.root / "ledger.db"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["manifests_seen"], report["manifests_recorded"], report["tasks"]) == (2, 2, ["task1"])
    again = json.loads(
        sink_cli("reconcile", "--store", (pipe.root / "store").as_uri(), "--state", str(pipe.root / "ledger.db")).stdout
    )
    assert (again["manifests_recorded"], again["already_known"]) == (0, 2)
    pipe.run_supersink()  # loads at start-up: the ledger now has the task complete
    assert pipe.status()["state"] == "loaded"
    assert_same_events(pipe.loaded(), synthetic(1, 2))


def test_quarantined_pointer_can_be_retried_once_its_object_exists(pipe: Pipeline) -> None:
    rec = Recorder()
    pipe.produce("j1", 1, publisher=rec)
    chunk = pipe.root / "store" / chunk_key("task1", "j1", 1, 0)
    hidden = chunk.with_suffix(".hidden")
    chunk.rename(hidden)
    with open_publisher(pipe.broker) as pub:
        for body, headers, group in rec.sent:
            pub.send(body, headers, group)
    pipe.expect(1)
    pipe.run_supersink()
    assert pipe.status()["quarantined"] == 1
    state = str(pipe.root / "ledger.db")
    listed = json.loads(sink_cli("quarantine", "list", "--state", state, "--json").stdout)
    assert len(listed) == 1 and "missing object" in listed[0]["reason"] and listed[0]["state"] == "held"
    hidden.rename(chunk)
    retry = sink_cli("quarantine", "retry", "--state", state, "--broker", pipe.broker, "--all")
    assert retry.returncode == 0, retry.stderr
    assert json.loads(retry.stdout) == {"retried": [listed[0]["id"]]}
    pipe.run_supersink()
    st = pipe.status()
    assert st["state"] == "loaded" and st["quarantined"] == 0
    assert_same_events(pipe.loaded(), synthetic(1))
    bad = sink_cli("quarantine", "retry", "--state", state, "--broker", pipe.broker, "--id", "999")
    assert bad.returncode == 2 and "no held quarantine entry with id 999" in bad.stderr


def test_a_task_claimed_by_another_supersink_is_not_written_and_its_commit_is_adopted(pipe: Pipeline) -> None:
    pipe.produce("j1", 1)
    pipe.expect(1)
    warehouse = Warehouse.from_url((pipe.root / "wh").as_uri())
    warehouse.begin("ds", "task1")
    warehouse.claim("ds", "task1", "the-other-supersink")
    pipe.run_supersink()
    st = pipe.status()
    assert st["state"] == "claimed-elsewhere" and "the-other-supersink" in st["detail"]
    assert list(warehouse.parts("ds", "task1")) == []
    # The other supersink commits; ours adopts the commit on its next look.
    warehouse.write_marker_once("ds", "task1", {"task": "task1", "dataset": "ds", "rows": 3000, "files": []})
    with pytest.raises(AlreadyCommittedError):
        warehouse.write_marker_once("ds", "task1", {"rows": 1})
    pipe.run_supersink()
    st = pipe.status()
    assert (st["state"], st["events_loaded"]) == ("loaded", 3000)


def test_a_restarted_supersink_resumes_its_own_claim(pipe: Pipeline) -> None:
    pipe.produce("j1", 1)
    pipe.expect(1)
    ledger = Ledger(pipe.root / "ledger.db")
    owner = ledger.instance_id()
    ledger.close()
    warehouse = Warehouse.from_url((pipe.root / "wh").as_uri())
    warehouse.begin("ds", "task1")
    warehouse.claim("ds", "task1", owner)  # as if it crashed after claiming
    staged = Path(warehouse.staging_dir("ds", "task1"))
    (staged / "part-00007.parquet.staged").write_bytes(b"stray from the crashed load")
    pipe.task_dir().mkdir(parents=True)
    (pipe.task_dir() / "part-00008.parquet").write_bytes(b"moved in by a crash during the commit's moves")
    pipe.run_supersink()
    assert pipe.status()["state"] == "loaded"
    assert sorted(warehouse.parts("ds", "task1")) == ["part-00000.parquet"]
    assert sorted(p.name for p in staged.iterdir()) == ["_CLAIM.json"], "the crashed load's temporaries removed"
    assert_same_events(pipe.loaded(), synthetic(1))


def test_the_claim_of_a_supersink_lost_for_good_is_released_by_deleting_it(pipe: Pipeline) -> None:
    """The operator's procedure in the README: a supersink died with its ledger while it held a claim."""
    pipe.produce("j1", 1)
    pipe.expect(1)
    warehouse = Warehouse.from_url((pipe.root / "wh").as_uri())
    warehouse.begin("ds", "task1")
    warehouse.claim("ds", "task1", "a-supersink-lost-with-its-disk")
    staged = Path(warehouse.staging_dir("ds", "task1"))
    (staged / "part-00000.parquet.staged").write_bytes(b"half a part from the lost load")
    (staged / "part-00003.parquet.staged").write_bytes(b"another")
    pipe.run_supersink()
    st = pipe.status()
    assert st["state"] == "claimed-elsewhere" and "a-supersink-lost-with-its-disk" in st["detail"]
    assert not pipe.task_dir().exists(), "nothing of an uncommitted task is in the partition tree"
    Path(warehouse.claim_path("ds", "task1")).unlink()
    pipe.run_supersink()
    assert pipe.status()["state"] == "loaded"
    assert sorted(warehouse.parts("ds", "task1")) == ["part-00000.parquet"], "the lost load's parts replaced"
    assert_same_events(pipe.loaded(), synthetic(1))
