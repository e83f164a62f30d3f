"""The producer against real servers when things go wrong: multipart uploads and their aborts on
SeaweedFS, the store stopped mid-job, the broker down (spool, exit 6, flush-spool), broker failover,
--dry-run, and the producer's peak memory on a 2,000,000-event input.

Every scenario that delivers pointers ends with a real `ei-supersink run` and the warehouse checked
event by event (each produced event exactly once).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from eventindex.errors import ObjectExistsError, StoreError
from eventindex.store.base import MIB, StoreOptions
from eventindex.store.s3 import S3Store
from eventindex.transport import open_consumer
from producer.inputs.synthetic import SyntheticInput
from tests.integration.conftest import construct_server
from tests.integration.faultkit import (
    DATASET,
    SORT,
    Backend,
    ProducedTask,
    assert_exactly_once,
    check_warehouse,
    expect,
    run_sink,
    tail,
)
from tests.pki import make_pki
from testservers import ActiveMQ, SeaweedFS
from testservers.base import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]
servers = pytest.mark.parametrize("backend", ["servers"], indirect=True)


def producer_argv(backend: Backend, task: str, job: str, events: int, seed: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "producer.cli", "--task", task, "--job", job, "--attempt", "1", "--dataset", DATASET,
        "--input", f"synthetic:{events}:{seed}", "--store", backend.store, *extra,
    ]  # fmt: skip


def producer_env(backend: Backend) -> dict[str, str]:
    return {**os.environ, **backend.env, "PYTHONPATH": str(ROOT)}


def run_producer(backend: Backend, cwd: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, cwd=cwd, env=producer_env(backend), timeout=timeout
    )


def expected(*jobs: tuple[int, int]) -> pa.Table:
    """The events of synthetic inputs given as (events, seed), sorted as the warehouse is."""
    return pa.concat_tables([t for events, seed in jobs for t in SyntheticInput(events, seed).batches(events)]).sort_by(
        SORT
    )


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bucket_of(backend: Backend) -> str:
    return backend.store.split("/")[2]


def keys(seaweedfs: SeaweedFS, bucket: str, prefix: str = "") -> list[str]:
    client = seaweedfs.s3_client()
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]
    finally:
        client.close()


def open_uploads(seaweedfs: SeaweedFS, bucket: str) -> list[Any]:
    client = seaweedfs.s3_client()
    try:
        return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
    finally:
        client.close()


def load_and_check(backend: Backend, tmp_path: Path, produced: ProducedTask, record: Callable[[str], None]) -> None:
    sink = run_sink(backend, tmp_path / "ledger.db", 2.0)
    assert sink.returncode == 0, tail(sink.stderr)
    outcome = check_warehouse(backend, produced)
    record(outcome.line(produced.task))
    assert_exactly_once(outcome)


@pytest.fixture
def s3_store(seaweedfs: SeaweedFS, s3_env: str) -> Iterator[S3Store]:
    store = S3Store.from_url(
        f"s3://{s3_env}/mp?endpoint={seaweedfs.endpoint}", StoreOptions(multipart_threshold=5 * MIB, part_size=5 * MIB)
    )
    yield store
    store.close()


# ----------------------------------------------------------------------------------------- multipart


@servers
def test_multipart_chunks_load_exactly_once(
    backend: Backend, tmp_path: Path, seaweedfs: SeaweedFS, fault_report: Callable[[str], None]
) -> None:
    task = f"task.{uuid.uuid4().hex[:10]}"
    expect(backend, task, 1, 60_000)
    argv = producer_argv(backend, task, "job1", 60_000, 11, "--broker", backend.broker, "--chunk-events", "30000")
    proc = run_producer(backend, tmp_path, *argv, "--multipart-mb", "1", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    client = seaweedfs.s3_client()
    bucket = bucket_of(backend)
    chunks = [k for k in keys(seaweedfs, bucket, f"chunks/{task}/") if k.endswith(".eic")]
    assert len(chunks) == 2
    for key in chunks:
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] > MIB and head["ETag"].endswith('-1"'), "went up as a multipart upload"
    client.close()
    assert open_uploads(seaweedfs, bucket) == []
    load_and_check(backend, tmp_path, ProducedTask(task, expected((60_000, 11))), fault_report)


def test_a_big_object_goes_up_in_parts(s3_store: S3Store, seaweedfs: SeaweedFS, s3_env: str) -> None:
    data = os.urandom(12 * MIB)
    s3_store.put("big", data)
    assert s3_store.get("big") == data
    client = seaweedfs.s3_client()
    assert client.head_object(Bucket=s3_env, Key="mp/big")["ETag"].endswith('-3"')
    client.close()
    with pytest.raises(ObjectExistsError):
        s3_store.put("big", os.urandom(6 * MIB))
    assert s3_store.get("big") == data
    assert open_uploads(seaweedfs, s3_env) == []


@pytest.mark.parametrize("failure", [StoreError, KeyboardInterrupt])
def test_a_failed_multipart_upload_is_aborted(
    s3_store: S3Store, seaweedfs: SeaweedFS, s3_env: str, failure: type[BaseException]
) -> None:
    calls = 0

    def third_part_fails(**kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise failure("injected")

    s3_store.client.meta.events.register("before-call.s3.UploadPart", third_part_fails)
    with pytest.raises(failure):
        s3_store.put("k", os.urandom(16 * MIB))
    assert calls == 3
    assert open_uploads(seaweedfs, s3_env) == [], "the upload and its two parts are gone"
    assert keys(seaweedfs, s3_env) == []


def test_a_conflict_at_completion_is_refused_and_aborted(s3_store: S3Store, seaweedfs: SeaweedFS, s3_env: str) -> None:
    other = seaweedfs.s3_client()

    def another_writer_wins(**kwargs: Any) -> None:
        other.put_object(Bucket=s3_env, Key="mp/k", Body=b"the other writer", IfNoneMatch="*")

    s3_store.client.meta.events.register("before-call.s3.CompleteMultipartUpload", another_writer_wins)
    with pytest.raises(ObjectExistsError):
        s3_store.put("k", os.urandom(6 * MIB))
    assert other.get_object(Bucket=s3_env, Key="mp/k")["Body"].read() == b"the other writer"
    other.close()
    assert open_uploads(seaweedfs, s3_env) == []


def _race(stores: list[S3Store], key: str, datas: list[bytes]) -> list[int]:
    """Every store writes its data under `key` at once; returns the writers that succeeded."""
    barrier = threading.Barrier(len(stores))
    won: list[int] = []

    def write(w: int) -> None:
        barrier.wait()
        try:
            stores[w].put(key, datas[w])
            won.append(w)
        except ObjectExistsError:
            pass

    threads = [threading.Thread(target=write, args=(w,)) for w in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


def test_concurrent_multipart_writers_of_one_key(
    seaweedfs: SeaweedFS, s3_env: str, fault_report: Callable[[str], None]
) -> None:
    """SeaweedFS does not make `If-None-Match` on CompleteMultipartUpload atomic: several racing writers
    may complete. What must hold: the object is one writer's whole data, and no upload is left open.
    (The manifest, one atomic PUT, and the supersink's sha256 check make the rest safe.)"""
    rounds, writers = 8, 4
    extra_winners = 0
    url = f"s3://{s3_env}/race?endpoint={seaweedfs.endpoint}"
    datas = [bytes([w]) * (6 * MIB) for w in range(writers)]
    for r in range(rounds):
        stores = [S3Store.from_url(url, StoreOptions(5 * MIB, 5 * MIB)) for _ in range(writers)]
        won = _race(stores, f"k{r}", datas)
        final = stores[0].get(f"k{r}")
        for s in stores:
            s.close()
        assert final in datas, "the object is one writer's data, not a mix"
        assert won, "someone won"
        extra_winners += len(won) - 1
    assert open_uploads(seaweedfs, s3_env) == []
    fault_report(f"{rounds} rounds of {writers} racing multipart writers: {extra_winners} extra 'winner(s)' in all")


# ------------------------------------------------------------------------------------ store outage


def uploading_job(
    backend: Backend, tmp_path: Path, seaweedfs: SeaweedFS, task: str, argv: list[str]
) -> subprocess.Popen[str]:
    """Start a producer and return once it has stored three chunks (killed if it does not get there)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=producer_env(backend))  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while len(keys(seaweedfs, bucket_of(backend), f"chunks/{task}/")) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the job should be uploading"
            time.sleep(0.2)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc


@servers
def test_store_stopped_mid_job_waits_out_store_outage_then_exits_4(
    backend: Backend, tmp_path: Path, seaweedfs: SeaweedFS, fault_report: Callable[[str], None]
) -> None:
    task = f"task.{uuid.uuid4().hex[:10]}"
    argv = producer_argv(backend, task, "job1", 300_000, 21, "--broker", backend.broker, "--chunk-events", "2000")
    proc = uploading_job(backend, tmp_path, seaweedfs, task, [*argv, "--quiet", "--store-outage", "6"])
    try:
        stopped = time.monotonic()
        seaweedfs.stop()
        out, err = proc.communicate(timeout=300)
        gave_up = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        seaweedfs.start()
    assert proc.returncode == 4, err
    warning, line = err.strip().splitlines()
    assert warning.startswith("ei-producer: store unavailable (writing ") and "for up to 6 s" in warning, warning
    assert line.startswith("ei-producer: store error: cannot ") and task in line, line
    assert ", 5 attempts; store unavailable for 6 s (--store-outage 6)" in line, "botocore's tries, then ours"
    assert 6 <= gave_up < 60
    assert out == ""
    fault_report(f"store stopped mid-job: exit 4 after {gave_up:.1f} s of retries: {line}")


@servers
def test_store_restarted_mid_job_is_ridden_out(
    backend: Backend, tmp_path: Path, seaweedfs: SeaweedFS, fault_report: Callable[[str], None]
) -> None:
    task = f"task.{uuid.uuid4().hex[:10]}"
    expect(backend, task, 1, 200_000)
    argv = producer_argv(backend, task, "job1", 200_000, 22, "--broker", backend.broker, "--chunk-events", "2000")
    proc = uploading_job(backend, tmp_path, seaweedfs, task, [*argv, "--quiet", "--store-outage", "240"])
    try:
        down = time.monotonic()
        seaweedfs.restart()
        outage = time.monotonic() - down
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if not seaweedfs.running:
            seaweedfs.start()
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["chunks"] == 100
    fault_report(
        f"store restarted mid-job ({outage:.1f} s down): the job rode it out (exit 0, "
        f"{summary['store_retries']} whole-write retries after botocore's)"
    )
    load_and_check(backend, tmp_path, ProducedTask(task, expected((200_000, 22))), fault_report)


# ----------------------------------------------------------------------------------- broker faults


@servers
def test_broker_down_spools_exit_6_then_flush_spool_delivers_once(
    backend: Backend, tmp_path: Path, activemq: ActiveMQ, fault_report: Callable[[str], None]
) -> None:
    task = f"task.{uuid.uuid4().hex[:10]}"
    spool = tmp_path / "pointers.spool"
    argv = producer_argv(backend, task, "job1", 5_000, 31, "--broker", backend.broker, "--chunk-events", "1000")
    activemq.stop()
    try:
        proc = run_producer(backend, tmp_path, *argv, "--spool", str(spool))
        flush_down = run_producer(backend, tmp_path, sys.executable, "-m", "producer.cli", "flush-spool",
                                  "--broker", backend.broker, "--spool", str(spool))  # fmt: skip
    finally:
        activemq.start()
    assert proc.returncode == 6, proc.stderr
    assert json.loads(proc.stdout)["spooled"] == 6, "five chunk pointers and the manifest's"
    assert "were spooled to" in proc.stderr.strip().splitlines()[-1]
    assert flush_down.returncode == 5 and "no broker reachable" in flush_down.stderr
    flush = [sys.executable, "-m", "producer.cli", "flush-spool", "--broker", backend.broker, "--spool", str(spool)]
    sent = run_producer(backend, tmp_path, *flush)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == 6
    again = run_producer(backend, tmp_path, *flush)
    assert again.returncode == 0 and json.loads(again.stdout)["sent"] == 0
    expect(backend, task, 1, 5_000)
    load_and_check(backend, tmp_path, ProducedTask(task, expected((5_000, 31))), fault_report)


@servers
@pytest.mark.parametrize("form", ["two --broker", "two hosts in one URL"])
def test_failover_from_a_dead_broker_to_a_live_one(
    backend: Backend, tmp_path: Path, activemq: ActiveMQ, fault_report: Callable[[str], None], form: str
) -> None:
    task = f"task.{uuid.uuid4().hex[:10]}"
    dead = closed_port()
    if form == "two --broker":
        brokers = [
            "--broker",
            backend.broker.replace(f":{activemq.stomp_port}/", f":{dead}/"),
            "--broker",
            backend.broker,
        ]
    else:
        brokers = ["--broker", backend.broker.replace(f"127.0.0.1:{activemq.stomp_port}",
                                                      f"127.0.0.1:{dead},127.0.0.1:{activemq.stomp_port}")]  # fmt: skip
    expect(backend, task, 1, 4_000)
    argv = producer_argv(backend, task, "job1", 4_000, 41, *brokers, "--chunk-events", "1000")
    proc = run_producer(backend, tmp_path, *argv)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["spooled"] == 0
    if form == "two --broker":
        assert "failing over to" in proc.stderr
    assert not (tmp_path / "ei-producer.spool").exists()
    load_and_check(backend, tmp_path, ProducedTask(task, expected((4_000, 41))), fault_report)


# ------------------------------------------------------------------------------------------ dry run


@servers
def test_dry_run_uploads_and_sends_nothing(backend: Backend, tmp_path: Path, seaweedfs: SeaweedFS) -> None:
    task = f"task.{uuid.uuid4().hex[:10]}"
    argv = producer_argv(backend, task, "job1", 3_000, 51, "--broker", backend.broker, "--chunk-events", "1000")
    proc = run_producer(backend, tmp_path, *argv, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["dry_run"], summary["events"], summary["chunks"], summary["manifest"]) == (True, 3_000, 3, None)
    assert keys(seaweedfs, bucket_of(backend)) == []
    with open_consumer(backend.broker) as consumer:
        assert consumer.receive(1.0) is None
    assert list(tmp_path.iterdir()) == []
    bad = run_producer(backend, tmp_path, *argv[:-2], "--chunk-events", "1000", "--dry-run", "--broker", "ftp://x/q")
    assert bad.returncode == 2 and "scheme" in one_line(bad.stderr)


# ---------------------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SeaweedFS, str, Path]]:
    """A SeaweedFS whose S3 gateway also speaks https, with a certificate from a CA of our own.
    Yields (server, https endpoint, CA bundle)."""
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    port = free_port()
    tls_args = [f"-s3.cert.file={pki.server_cert}", f"-s3.key.file={pki.server_key}", f"-s3.port.https={port}"]
    server = construct_server(lambda: SeaweedFS(tmp_path_factory.mktemp("seaweedfs-tls"), extra_args=tls_args))
    server.start()
    try:
        yield server, f"https://127.0.0.1:{port}", pki.ca
    finally:
        server.stop()


def test_https_store_with_a_ca_bundle(
    tls_seaweedfs: tuple[SeaweedFS, str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault_report: Callable[[str], None],
) -> None:
    """Producer, supersink and an S3 warehouse over https, verified against ca= alone."""
    server, endpoint, ca = tls_seaweedfs
    for var in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE"):  # the system bundle, which does not know our CA
        monkeypatch.delenv(var, raising=False)
    server.create_bucket("ei-tls")
    backend = Backend("tls", f"s3://ei-tls/chunks?endpoint={endpoint}&ca={ca}", f"sqlite://{tmp_path / 'q.db'}",
                      f"s3://ei-tls/warehouse?endpoint={endpoint}&ca={ca}", server.client_env())  # fmt: skip
    task = f"task.{uuid.uuid4().hex[:10]}"
    argv = producer_argv(backend, task, "job1", 2_000, 71, "--broker", backend.broker, "--chunk-events", "1000")
    proc = run_producer(backend, tmp_path, *argv)
    assert proc.returncode == 0, proc.stderr
    assert len(keys(server, "ei-tls", f"chunks/{task}/")) == 3
    expect(backend, task, 1, 2_000)
    load_and_check(backend, tmp_path, ProducedTask(task, expected((2_000, 71))), fault_report)
    parts = keys(server, "ei-tls", f"warehouse/dataset={DATASET}/task={task}/")
    assert any(key.endswith("part-00000.parquet") for key in parts)
    unverified = Backend("tls", f"s3://ei-tls/other?endpoint={endpoint}", backend.broker, backend.warehouse,
                         server.client_env())  # fmt: skip
    argv = producer_argv(unverified, task, "job1", 2_000, 71, "--broker", backend.broker, "--store-attempts", "1")
    refused = run_producer(unverified, tmp_path, *argv)
    assert refused.returncode == 4
    assert "CERTIFICATE_VERIFY_FAILED" in one_line(refused.stderr)
    bundle = Backend("tls", unverified.store, backend.broker, backend.warehouse,
                     {**server.client_env(), "AWS_CA_BUNDLE": str(ca)})  # fmt: skip
    via_env = run_producer(bundle, tmp_path, *argv)
    assert via_env.returncode == 0, via_env.stderr


# -------------------------------------------------------------------------------------------- memory

RSS_EVENTS = 2_000_000
RSS_LIMIT = 600 * 1024 * 1024


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


#: Runs `ei-producer` in this interpreter and, at exit, reports the process's own VmHWM (its peak RSS).
#: (ru_maxrss from wait4 is no use here: Linux carries the forking parent's peak across exec.)
_REPORT_PEAK = """
import atexit, sys
from producer.cli import main
def report():
    with open("/proc/self/status") as fh:
        sys.stderr.write(next(line for line in fh if line.startswith("VmHWM:")))
atexit.register(report)
sys.exit(main(sys.argv[1:]))
"""


@servers
@pytest.mark.timeout(1200)
def test_peak_memory_of_a_2m_event_job_stays_bounded(
    backend: Backend, tmp_path: Path, fault_report: Callable[[str], None]
) -> None:
    task = f"task.{uuid.uuid4().hex[:10]}"
    argv = producer_argv(backend, task, "job1", RSS_EVENTS, 61, "--broker", backend.broker, "--quiet")
    assert argv[1:3] == ["-m", "producer.cli"]
    argv[1:3] = ["-c", _REPORT_PEAK]
    started = time.monotonic()
    polled = 0
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=tmp_path, env=producer_env(backend))
        try:
            while proc.poll() is None:
                polled = max(polled, _vm_hwm(proc.pid))
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    seconds = time.monotonic() - started
    stderr = (tmp_path / "err").read_text()
    assert proc.returncode == 0, stderr
    summary = json.loads((tmp_path / "out").read_text())
    assert summary["events"] == RSS_EVENTS
    final = int(one_line(stderr).split()[1]) * 1024  # "VmHWM:  367512 kB"
    peak = max(polled, final)
    fault_report(
        f"{RSS_EVENTS:,} events, {summary['chunks']} chunks, {summary['bytes'] / 1e6:.1f} MB stored in {seconds:.0f} s "
        f"({RSS_EVENTS / seconds:,.0f} events/s): producer peak RSS (VmHWM) {peak / MIB:.0f} MiB"
    )
    assert peak < RSS_LIMIT, f"peak RSS {peak / MIB:.0f} MiB"
