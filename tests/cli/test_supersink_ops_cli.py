"""`ei-supersink load` (forced or not), `reconcile` and `quarantine retry` as processes."""

from __future__ import annotations

import json

from eventindex.names import chunk_key
from eventindex.transport import open_publisher
from tests.helpers import Pipeline, Recorder, assert_same_events, sink_cli, synthetic


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
