"""Issue 8 on real servers: a malformed STOMP frame on ActiveMQ is quarantined and the next good
message loads; retention on SeaweedFS deletes only under the store's bucket and prefix."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path

import boto3
import pytest
import stomp

from eventindex.transport import open_publisher
from tests.helpers import Recorder
from tests.integration.faultkit import (
    Backend,
    ProducedTask,
    assert_exactly_once,
    check_warehouse,
    cli,
    expect,
    kill,
    produce_job,
    run_sink,
    start_sink,
    synthetic,
    tail,
    task_state,
)
from testservers import ActiveMQ, SeaweedFS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def raw_frame(activemq: ActiveMQ, queue: str, body: bytes, headers: dict[str, str]) -> None:
    """One SEND frame as any client could send it, through stomp.py itself."""
    conn = stomp.Connection12([(activemq.host, activemq.stomp_port)], auto_decode=False, heartbeats=(0, 0))
    conn.connect(wait=True)
    try:
        conn.send(destination=f"/queue/{queue}", body=body, headers=headers)
    finally:
        conn.disconnect()


def test_a_malformed_stomp_frame_is_quarantined_and_the_next_good_message_loads(
    activemq: ActiveMQ, tmp_path: Path
) -> None:
    queue = f"ei.test.{uuid.uuid4().hex[:16]}"
    backend = Backend("activemq", (tmp_path / "store").as_uri(), activemq.stomp_url(queue), (tmp_path / "wh").as_uri())
    task = f"task.{uuid.uuid4().hex[:8]}"
    bad_body = b"\xff\x00\x80 not a pointer \xfe" * 7
    raw_frame(
        activemq,
        queue,
        bad_body,
        {
            "content-type": "text/plain; charset=ebcdic",
            "ei-kind": "no-such-kind",
            "ei-task": "../../etc",
            "persistent": "true",
            "x-odd": "é\u2028:with colon",
        },
    )
    recorded = Recorder()
    produce_job(backend, task, "j1", 1, seed=11, publisher=recorded)
    first_body, first_headers, _ = recorded.sent[0]
    lying = {**first_headers, "ei-task": "someone-else", "persistent": "true"}
    raw_frame(activemq, queue, first_body, lying)  # a real pointer whose headers contradict its body
    with open_publisher(backend.broker) as pub:
        for body, headers, grp in recorded.sent:
            pub.send(body, headers, grp)
    expect(backend, task, 1, 3_000)

    state = tmp_path / "ledger.db"
    ran = run_sink(backend, state, 4.0)
    assert ran.returncode == 0, tail(ran.stderr)
    assert "Traceback" not in ran.stderr
    outcome = check_warehouse(backend, ProducedTask(task, synthetic(11)))
    assert_exactly_once(outcome)
    assert task_state(state, task, {})["state"] == "loaded"

    listed = cli("quarantine", "list", "--state", str(state), "--json", env={})
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert len(entries) == 2, entries
    assert "not a protobuf Pointer" in entries[0]["reason"]
    assert "header ei-task 'someone-else' but the body names task" in entries[1]["reason"]
    db = sqlite3.connect(state)
    rows = db.execute("SELECT body, headers FROM quarantine ORDER BY id").fetchall()
    db.close()
    assert [bytes(r[0]) for r in rows] == [bad_body, first_body], "the raw bytes are kept"
    kept_headers = json.loads(rows[0][1])
    assert kept_headers["ei-kind"] == "no-such-kind" and kept_headers["x-odd"] == "é\u2028:with colon"


def test_retention_on_s3_deletes_only_under_the_store_prefix(seaweedfs: SeaweedFS, s3_env: str, tmp_path: Path) -> None:
    bucket, endpoint = s3_env, seaweedfs.endpoint
    backend = Backend(
        "s3",
        f"s3://{bucket}/chunks?endpoint={endpoint}",
        f"sqlite://{tmp_path / 'queue.db'}",
        f"s3://{bucket}/warehouse?endpoint={endpoint}",
        seaweedfs.client_env(),
    )
    task = f"task.{uuid.uuid4().hex[:8]}"
    produce_job(backend, task, "j1", 1, seed=21)
    produce_job(backend, task, "j2", 1, seed=22)
    expect(backend, task, 2, 6_000)
    client = boto3.client("s3", endpoint_url=endpoint)
    decoys = [f"other/{task}/j1/1/chunk-000000.eic", f"chunks-old/{task}/j1/1/manifest.eim", f"{task}/j1/1/x"]
    for key in decoys:
        client.put_object(Bucket=bucket, Key=key, Body=b"not the supersink's")

    def keys(prefix: str) -> list[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    state = tmp_path / "ledger.db"
    first = run_sink(backend, state, 1.0, None, "--delete-transit-after", "0")
    assert first.returncode == 0, tail(first.stderr)
    assert len(keys(f"chunks/{task}/")) == 8
    second = run_sink(backend, state, 1.0, None, "--delete-transit-after", "0")  # purges at start-up
    assert second.returncode == 0, tail(second.stderr)
    counters = json.loads(second.stdout.strip().splitlines()[-1])
    assert (counters["retention_tasks_purged"], counters["retention_objects_deleted"]) == (1, 8)
    assert keys(f"chunks/{task}/") == []
    assert keys("") == sorted([*decoys, *keys("warehouse/")])
    assert_exactly_once(check_warehouse(backend, ProducedTask(task, synthetic(21, 22))))
    assert task_state(state, task, backend.env)["purged_at"] is not None


def test_a_store_that_refuses_the_supersinks_credentials_ends_the_run_with_exit_4(
    seaweedfs: SeaweedFS, s3_env: str, tmp_path: Path
) -> None:
    """A wrong secret key: SeaweedFS answers every GET with 403. `run --until-idle` used to put each message
    back and retry for ever; it now exits 4 with one line, and nothing is lost: with the right key the task loads."""
    bucket, endpoint = s3_env, seaweedfs.endpoint
    backend = Backend(
        "s3", f"s3://{bucket}/chunks?endpoint={endpoint}", f"sqlite://{tmp_path / 'queue.db'}",
        f"s3://{bucket}/warehouse?endpoint={endpoint}", seaweedfs.client_env(),
    )  # fmt: skip
    task = f"task.{uuid.uuid4().hex[:8]}"
    produce_job(backend, task, "j1", 1, seed=31)
    expect(backend, task, 1, 3_000)
    state = tmp_path / "ledger.db"
    wrong = Backend(backend.name, backend.store, backend.broker, backend.warehouse,
                    {**backend.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"})  # fmt: skip
    refused = run_sink(wrong, state, 5.0)
    assert refused.returncode == 4, tail(refused.stderr)
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("ei-supersink: store error: cannot read ") and "(HTTP 403)" in last, last
    ran = run_sink(backend, state, 1.0)
    assert ran.returncode == 0, tail(ran.stderr)
    assert_exactly_once(check_warehouse(backend, ProducedTask(task, synthetic(31))))


def test_a_store_bucket_gone_under_a_running_supersink_ends_the_run_with_exit_4(
    seaweedfs: SeaweedFS, s3_env: str, tmp_path: Path
) -> None:
    """The store's bucket deleted while `run` waits for messages: every GET said NoSuchBucket, and the
    service put each message back and retried for ever. It now exits 4 with one line, the messages still
    queued; with the bucket back, the task loads, every event once."""
    endpoint, transit = seaweedfs.endpoint, f"transit-{uuid.uuid4().hex[:8]}"
    client = seaweedfs.s3_client()
    client.create_bucket(Bucket=transit)
    queue, source = tmp_path / "queue.db", tmp_path / "source.db"
    backend = Backend(
        "s3", f"s3://{transit}/chunks?endpoint={endpoint}", f"sqlite://{queue}",
        f"s3://{s3_env}/warehouse?endpoint={endpoint}", seaweedfs.client_env(),
    )  # fmt: skip
    producing = Backend(backend.name, backend.store, f"sqlite://{source}", backend.warehouse, backend.env)
    task = f"task.{uuid.uuid4().hex[:8]}"
    produce_job(producing, task, "j1", 1, seed=41)
    expect(producing, task, 1, 3_000)
    expect(backend, "task.other", 1)  # taken once the supersink is past its start-up (the bucket there)
    state = tmp_path / "ledger.db"
    sink = start_sink(backend, state, 60.0)
    try:
        deadline = time.monotonic() + 60
        while sqlite3.connect(queue).execute("SELECT count(*) FROM messages").fetchone()[0]:
            assert sink.poll() is None and time.monotonic() < deadline, "the supersink did not start"
            time.sleep(0.1)
        kept = {}
        for item in client.list_objects_v2(Bucket=transit).get("Contents", []):
            kept[item["Key"]] = client.get_object(Bucket=transit, Key=item["Key"])["Body"].read()
            client.delete_object(Bucket=transit, Key=item["Key"])
        client.delete_bucket(Bucket=transit)
        with sqlite3.connect(source) as src, sqlite3.connect(queue) as dst:
            rows = src.execute("SELECT queue, body, headers, enqueued FROM messages").fetchall()
            dst.execute("DELETE FROM messages")
            dst.executemany("INSERT INTO messages (queue, body, headers, enqueued) VALUES (?, ?, ?, ?)", rows)
        _, stderr = sink.communicate(timeout=120)
    finally:
        kill(sink)
    assert sink.returncode == 4, tail(stderr)
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("ei-supersink: store error: cannot read ") and "NoSuchBucket" in last, last
    with sqlite3.connect(queue) as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == len(rows), "every message still queued"
    client.create_bucket(Bucket=transit)
    for key, body in kept.items():
        client.put_object(Bucket=transit, Key=key, Body=body)
    ran = run_sink(backend, state, 1.0)
    assert ran.returncode == 0, tail(ran.stderr)
    assert_exactly_once(check_warehouse(backend, ProducedTask(task, synthetic(41))))
