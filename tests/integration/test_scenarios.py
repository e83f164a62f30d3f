"""Retries, duplicates, bad input, lost pointers and deadlines, on the embedded default and the real servers.

The supersink runs as a real process (`ei-supersink run`); its answers are read through
`ei-supersink status --json` and the warehouse, as an operator would read them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest

from eventindex.codec import encode_chunk
from eventindex.columns import EVENT_SCHEMA
from eventindex.names import chunk_key
from eventindex.pointers import object_pointer
from eventindex.schema import eventindex_pb2 as pb
from eventindex.store import open_store
from tests.helpers import Recorder, forge_chunk
from tests.integration.faultkit import (
    DATASET,
    Backend,
    ProducedTask,
    assert_exactly_once,
    backend_env,
    check_warehouse,
    cli,
    delete_object,
    expect,
    produce_job,
    run_sink,
    send_raw,
    synthetic,
    tail,
    task_state,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def new_task() -> str:
    return f"task.{uuid.uuid4().hex[:10]}"


def sink(backend: Backend, state: Path, *extra: str, stuck: str | None = None) -> dict[str, int]:
    """Run the supersink until idle: exit 0, or with `stuck` (a task), exit 3 naming that task."""
    ran = run_sink(backend, state, 2.0, None, *extra)
    if stuck is None:
        assert ran.returncode == 0, tail(ran.stderr)
    else:
        assert ran.returncode == 3, tail(ran.stderr)
        assert f"task {stuck} " in ran.stderr
    counters: dict[str, int] = json.loads(ran.stdout.strip().splitlines()[-1])
    return counters


def test_highest_complete_attempt_wins(backend: Backend, tmp_path: Path) -> None:
    task = new_task()
    produce_job(backend, task, "job1", 1, seed=21)
    produce_job(backend, task, "job1", 2, seed=22)  # different data: visible if the wrong attempt loads
    produce_job(backend, task, "job2", 1, seed=23)
    expect(backend, task, 2)
    sink(backend, tmp_path / "ledger.db")
    st = task_state(tmp_path / "ledger.db", task, backend.env)
    assert st["chosen"] == {"job1": 2, "job2": 1}
    assert st["superseded"] == [{"job": "job1", "attempt": 1, "complete": True}]
    assert_exactly_once(check_warehouse(backend, ProducedTask(task, synthetic(22, 23))))


def test_manifest_listing_a_chunk_that_never_arrived(backend: Backend, tmp_path: Path) -> None:
    task = new_task()
    rec = Recorder()
    produce_job(backend, task, "job1", 1, seed=31, publisher=rec)
    delete_object(backend, chunk_key(task, "job1", 1, 2))
    send_raw(backend, *[body for body, _, _ in rec.sent if b"chunk-000002" not in body])
    expect(backend, task, 1)
    sink(backend, tmp_path / "ledger.db", stuck=task)
    st = task_state(tmp_path / "ledger.db", task, backend.env)
    assert (st["state"], st["jobs_resolved"], st["events_loaded"]) == ("damaged", 0, None)
    missing = st["missing"]
    assert isinstance(missing, list)
    assert any(m.startswith("job job1 attempt 1: chunk-000002 missing (") and "not found" in m for m in missing)
    text = cli("status", "--state", str(tmp_path / "ledger.db"), env=backend.env).stdout
    assert "missing: job job1 attempt 1: chunk-000002 missing" in text


def test_duplicate_events_are_loaded_once_and_reported(backend: Backend, tmp_path: Path) -> None:
    task = new_task()
    produce_job(backend, task, "job1", 1, seed=41)
    produce_job(backend, task, "job2", 1, seed=41)  # the same input indexed by two jobs
    produce_job(backend, task, "job3", 1, seed=42)
    expect(backend, task, 3)
    sink(backend, tmp_path / "ledger.db")
    st = task_state(tmp_path / "ledger.db", task, backend.env)
    duplicates = st["duplicates"]
    assert isinstance(duplicates, dict)
    assert duplicates["count"] == 3_000 and len(duplicates["examples"]) == 10
    assert set(duplicates["examples"][0]["jobs"]) == {"job1", "job2"}
    assert_exactly_once(check_warehouse(backend, ProducedTask(task, synthetic(41, 42))))
    text = cli("status", "--state", str(tmp_path / "ledger.db"), env=backend.env).stdout
    assert "duplicates: 3000 (run, event) pairs loaded once" in text


def test_every_kind_of_bad_input_is_quarantined_and_the_service_goes_on(backend: Backend, tmp_path: Path) -> None:
    task = new_task()
    with backend_env(backend):
        store = open_store(backend.store)
        good = encode_chunk(synthetic(52, events=10).select(EVENT_SCHEMA.names)).data
        bad = good[:-1] + bytes([good[-1] ^ 0x55])  # one flipped bit pattern in the body
        key = chunk_key(task, "jobx", 1, 0)
        store.put(key, bad)
        bomb_key = chunk_key(task, "jobx", 1, 1)
        bomb = forge_chunk(b"\0" * (600 * 1024 * 1024 // 64), usize=1024**4)  # claims a terabyte
        store.put(bomb_key, bomb)
        url = store.object_url(key)
        store.close()

    def pointer(**changes: object) -> bytes:
        fields: dict[str, object] = {
            "kind": pb.POINTER_KIND_CHUNK, "url": url, "size": len(bad), "sha256": hashlib.sha256(bad).digest(),
            "events": 1, "task": task, "job": "jobx", "attempt": 1, "dataset": DATASET,
        }  # fmt: skip
        fields.update(changes)
        return object_pointer(**fields).SerializeToString()  # type: ignore[arg-type]

    unknown_version = pb.Pointer()
    unknown_version.ParseFromString(pointer())
    unknown_version.schema_version = 7
    outside = (
        url.replace(url.split("/")[2], "some-other-bucket", 1) if url.startswith("s3://") else "file:///etc/passwd"
    )
    cases = {
        "malformed": b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        "corrupt chunk": pointer(),
        "zstd bomb": pointer(url=url.replace("chunk-000000", "chunk-000001"), seq=1, size=len(bomb),
                             sha256=hashlib.sha256(bomb).digest()),
        "missing object": pointer(url=url.replace("chunk-000000", "chunk-000009"), seq=9),
        "outside the store": pointer(url=outside),
        "traversal name": pointer(job="../x"),
        "empty name": pointer(job=""),
        "long name": pointer(job="j" * 500),
        "control characters": pointer(job="job\x07"),
        "unknown schema version": unknown_version.SerializeToString(),
    }  # fmt: skip
    send_raw(backend, *cases.values())
    produce_job(backend, task, "job1", 1, seed=51)
    expect(backend, task, 1)
    counters = sink(backend, tmp_path / "ledger.db")
    assert counters["quarantined"] == len(cases)
    assert_exactly_once(check_warehouse(backend, ProducedTask(task, synthetic(51))))
    listed = json.loads(
        cli("quarantine", "list", "--state", str(tmp_path / "ledger.db"), "--json", env=backend.env).stdout
    )
    reasons = [entry["reason"] for entry in listed]
    assert len(reasons) == len(cases) and all("\n" not in r and len(r) < 400 for r in reasons)
    expected_words = [
        "not a protobuf", "sha256 does not match", "above the limit", "missing object", "outside the store",
        "'../x'", "job name is empty", "longer than 128", "outside [A-Za-z0-9._-]", "schema version 7",
    ]  # fmt: skip
    for words in expected_words:
        assert any(words in r for r in reasons), (words, reasons)
    st = json.loads(cli("status", "--state", str(tmp_path / "ledger.db"), "--json", env=backend.env).stdout)
    assert st["quarantined"] == len(cases)


def test_a_task_whose_pointers_were_all_lost_is_recovered_by_reconcile(backend: Backend, tmp_path: Path) -> None:
    task = new_task()
    lost = Recorder()
    produce_job(backend, task, "job1", 1, seed=61, publisher=lost)
    produce_job(backend, task, "job2", 1, seed=62, publisher=lost)
    expect(backend, task, 2)
    state = tmp_path / "ledger.db"
    sink(backend, state, "--rescan-seconds", "0")
    assert task_state(state, task, backend.env)["state"] == "waiting"
    rec = cli("reconcile", "--store", backend.store, "--state", str(state), env=backend.env)
    assert rec.returncode == 0, rec.stderr
    assert json.loads(rec.stdout)["manifests_recorded"] == 2
    sink(backend, state)
    assert task_state(state, task, backend.env)["state"] == "loaded"
    assert_exactly_once(check_warehouse(backend, ProducedTask(task, synthetic(61, 62))))


def test_deadline_then_forced_partial_load(backend: Backend, tmp_path: Path) -> None:
    task = new_task()
    produce_job(backend, task, "job1", 1, seed=71)
    expect(backend, task, 2, events=6_000)
    state = tmp_path / "ledger.db"
    sink(backend, state, "--task-deadline", "0", stuck=task)
    st = task_state(state, task, backend.env)
    assert st["state"] == "failed"
    assert "1 of 2 expected jobs not seen yet" in str(st["detail"])
    forced = cli(
        "load", "--task", task, "--force", "--store", backend.store, "--warehouse", backend.warehouse,
        "--state", str(state), env=backend.env,
    )  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    out = json.loads(forced.stdout)
    assert (out["rows"], out["partial"], out["missing"]) == (3_000, True, ["1 of 2 expected jobs not seen yet"])
    assert_exactly_once(check_warehouse(backend, ProducedTask(task, synthetic(71))))
    assert task_state(state, task, backend.env)["state"] == "loaded-partial"
