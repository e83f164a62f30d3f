"""Ceph 16 RGW (:class:`testservers.CephRGW`): S3 semantics the project relies on, and the launcher.

Runs only with ``EI_WITH_CEPH=1`` (then a missing Ceph fails the run): the Debian packages are big and
installed only on request (``EI_WITH_CEPH=1 scripts/install-servers``). ``scripts/test``, and so CI, sets
it unless given ``EI_WITH_CEPH=0``; without it these tests are skipped even with ``CI=true``. The
unavailability test runs everywhere.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from eventindex.errors import ObjectExistsError, ObjectNotFoundError, OversizedObjectError
from eventindex.store.s3 import S3Store
from supersink.warehouse import Warehouse
from testservers import CephRGW, ServerUnavailable

WITH_CEPH = os.environ.get("EI_WITH_CEPH") == "1"
needs_ceph = pytest.mark.skipif(
    not WITH_CEPH, reason="Ceph tests run only with EI_WITH_CEPH=1 (EI_WITH_CEPH=1 scripts/install-servers)"
)
pytestmark = pytest.mark.integration

BINARY_BODY = bytes(range(256)) * 4 + b"\x00\r\n\x00end"


# ---------------------------------------------------------------- helpers
def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
            members.append(int(entry))
    return members


def _listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(ip, port) of every TCP socket in LISTEN state owned by ``pid``."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found: set[tuple[str, int]] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A = LISTEN
                continue
            hexaddr, hexport = cols[1].split(":")
            raw = b"".join(bytes.fromhex(hexaddr[i : i + 8])[::-1] for i in range(0, width, 8))
            found.add((str(ipaddress.ip_address(raw)), int(hexport, 16)))
    return found


def _is_loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _status(exc: ClientError) -> int:
    return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])


def _assert_no_process(pids: dict[str, int]) -> None:
    for name, pid in pids.items():
        assert not _group_members(pid), f"{name} (pid {pid}) left processes behind"


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def s3(ceph: CephRGW) -> Iterator[Any]:
    client = ceph.s3_client()
    try:
        yield client
    finally:
        client.close()


# ---------------------------------------------------------------- the launcher
@needs_ceph
def test_ceph_fixture(ceph: CephRGW) -> None:
    assert ceph.running
    pids = ceph.pids_by_daemon()
    assert set(pids) == {"mon", "osd", "rgw"} and len(set(pids.values())) == 3
    assert ceph.pid == pids["rgw"]
    assert Path(f"/proc/{pids['rgw']}/exe").resolve().name == "radosgw"
    assert ceph.endpoint == f"http://127.0.0.1:{ceph.rgw_port}"
    assert ceph.start_seconds is not None and ceph.start_seconds < 60
    rss = ceph.rss_by_daemon()
    assert set(rss) == {"mon", "osd", "rgw"} and all(v > 1_000_000 for v in rss.values())
    assert ceph.rss_bytes() == pytest.approx(rss["rgw"], rel=0.5)
    assert ceph.cpu_seconds() >= 0 and set(ceph.cpu_by_daemon()) == {"mon", "osd", "rgw"}
    for name, pid in pids.items():
        assert _group_members(pid) == [pid], name  # each daemon alone in its own group
        listening = _listening_addresses(pid)
        assert all(_is_loopback(ip) for ip, _ in listening), (name, listening)
    ports = {port for pid in pids.values() for _, port in _listening_addresses(pid)}
    assert {ceph.ports["mon_v2"], ceph.ports["mon_v1"], ceph.rgw_port} <= ports
    env = ceph.client_env()
    assert env == {
        "AWS_ACCESS_KEY_ID": ceph.access_key,
        "AWS_SECRET_ACCESS_KEY": ceph.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }
    # everything lives in the workdir: conf, admin sockets, logs
    conf = ceph.conf_path.read_text()
    assert "auth_client_required = none" in conf and "tcp_nodelay=1" in conf
    assert {p.name for p in ceph.run_dir.glob("*.asok")} >= {"ceph-mon.a.asok", "ceph-osd.0.asok"}
    assert (ceph.state_path.stat().st_mode & 0o077) == 0  # holds the secret key


def test_unavailable_when_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "radosgw" else real_which(name))
    with pytest.raises(ServerUnavailable, match=r"radosgw.*EI_WITH_CEPH=1 scripts/install-servers"):
        CephRGW(tmp_path)


# ---------------------------------------------------------------- S3 semantics
@needs_ceph
def test_put_get_list(ceph: CephRGW, ceph_env: str, s3: Any) -> None:
    assert os.environ["AWS_ACCESS_KEY_ID"] == ceph.access_key
    for i in range(3):
        s3.put_object(Bucket=ceph_env, Key=f"dir/obj-{i}", Body=BINARY_BODY + bytes([i]))
    assert s3.get_object(Bucket=ceph_env, Key="dir/obj-1")["Body"].read() == BINARY_BODY + b"\x01"
    listed = s3.list_objects_v2(Bucket=ceph_env, Prefix="dir/")
    assert [o["Key"] for o in listed["Contents"]] == [f"dir/obj-{i}" for i in range(3)]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=ceph_env, Key="dir/missing")
    assert _status(err.value) == 404


@needs_ceph
def test_rejects_wrong_credentials(ceph: CephRGW, ceph_env: str) -> None:
    bad = boto3.session.Session().client(
        "s3",
        endpoint_url=ceph.endpoint,
        aws_access_key_id=ceph.access_key,
        aws_secret_access_key="wrong-" + ceph.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    try:
        with pytest.raises(ClientError) as err:
            bad.put_object(Bucket=ceph_env, Key="x", Body=b"x")
        assert _status(err.value) == 403
    finally:
        bad.close()


@needs_ceph
def test_if_none_match_second_write_is_412(ceph_env: str, s3: Any) -> None:
    s3.put_object(Bucket=ceph_env, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=ceph_env, Key="once", Body=b"second", IfNoneMatch="*")
    assert _status(err.value) == 412 and err.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=ceph_env, Key="once")["Body"].read() == b"first"


@needs_ceph
@pytest.mark.parametrize("size", [100, 5_000_000], ids=["small", "5MB"])
def test_if_none_match_is_atomic_under_racing_writers(ceph: CephRGW, ceph_env: str, size: int) -> None:
    """Writers released together on one new key: exactly one wins, the rest get 412, the winner's bytes stay."""
    writers, keys = 6, 15 if size < 1000 else 4
    clients = [ceph.s3_client(retries={"max_attempts": 1}) for _ in range(writers)]
    try:
        for k in range(keys):
            key = f"race/{size}/{k}"
            barrier = threading.Barrier(writers)
            results: list[Any] = [None] * writers

            def write(
                i: int, key: str = key, barrier: threading.Barrier = barrier, results: list[Any] = results
            ) -> None:
                body = bytes([i]) * size
                barrier.wait(timeout=30)
                try:
                    clients[i].put_object(Bucket=ceph_env, Key=key, Body=body, IfNoneMatch="*")
                    results[i] = "ok"
                except ClientError as exc:
                    results[i] = (_status(exc), exc.response["Error"]["Code"])

            threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            winners = [i for i, r in enumerate(results) if r == "ok"]
            assert len(winners) == 1, results
            assert all(r == (412, "PreconditionFailed") for r in results if r != "ok"), results
            got = clients[0].get_object(Bucket=ceph_env, Key=key)["Body"].read()
            assert got == bytes([winners[0]]) * size
    finally:
        for c in clients:
            c.close()


@needs_ceph
def test_s3store_write_once_contract(ceph: CephRGW, ceph_env: str) -> None:
    store = S3Store.from_url(f"s3://{ceph_env}/chunks?endpoint={ceph.endpoint}")
    try:
        store.put("a/one", BINARY_BODY)
        store.put("a/two", b"2")
        with pytest.raises(ObjectExistsError):
            store.put("a/one", b"overwrite")
        assert store.get("a/one") == BINARY_BODY
        with pytest.raises(ObjectNotFoundError):
            store.get("a/missing")
        with pytest.raises(OversizedObjectError):
            store.get("a/one", max_bytes=10)
        assert sorted(store.list("a/")) == ["a/one", "a/two"]
        url = store.object_url("a/two")
        assert url == f"s3://{ceph_env}/chunks/a/two" and store.key_for_url(url) == "a/two"
    finally:
        store.close()


@needs_ceph
def test_pyarrow_parquet_roundtrip_through_the_warehouse_filesystem(ceph: CephRGW, ceph_env: str) -> None:
    warehouse = Warehouse.from_url(f"s3://{ceph_env}/warehouse?endpoint={ceph.endpoint}")
    try:
        n = 200_000  # a few MB: pyarrow uploads it in parts
        table = pa.table({"event": pa.array(range(n), pa.int64()), "guid": [f"{i:032x}" for i in range(n)]})
        path = f"{warehouse.root}/ds/task/part-00000.parquet"
        pq.write_table(table, path, filesystem=warehouse.fs)
        assert pq.read_table(path, filesystem=warehouse.fs).equals(table)
        info = warehouse.fs.get_file_info(path)
        assert info.type == pafs.FileType.File and info.size > 1_000_000
    finally:
        warehouse.close()


@needs_ceph
def test_pyarrow_write_needs_checksum_when_required(
    ceph: CephRGW, ceph_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why client_env() sets AWS_REQUEST_CHECKSUM_CALCULATION: without it RGW 16 refuses pyarrow's upload."""
    monkeypatch.delenv("AWS_REQUEST_CHECKSUM_CALCULATION")
    fs = pafs.S3FileSystem(region="us-east-1", endpoint_override=ceph.endpoint.split("//")[1], scheme="http")
    with pytest.raises(OSError, match=r"411|MissingContentLength"):
        pq.write_table(pa.table({"x": [1, 2, 3]}), f"{ceph_env}/no-checksum.parquet", filesystem=fs)


@needs_ceph
def test_small_get_latency_is_milliseconds(ceph_env: str, s3: Any) -> None:
    """tcp_nodelay=1 on the beast frontend: without it every small GET waits ~44 ms (Nagle + delayed ACK)."""
    s3.put_object(Bucket=ceph_env, Key="small", Body=b"x" * 1000)
    times = []
    for _ in range(100):
        t0 = time.perf_counter()
        s3.get_object(Bucket=ceph_env, Key="small")["Body"].read()
        times.append(time.perf_counter() - t0)
    times.sort()
    assert times[50] < 0.020, f"median small GET {times[50] * 1000:.1f} ms"


# ---------------------------------------------------------------- lifecycle
@needs_ceph
def test_restart_keeps_data_and_endpoint(ceph: CephRGW, ceph_env: str) -> None:
    client = ceph.s3_client()
    client.put_object(Bucket=ceph_env, Key="survives", Body=BINARY_BODY, IfNoneMatch="*")
    client.close()
    old_pids, old_endpoint = ceph.pids_by_daemon(), ceph.endpoint
    ceph.restart()
    assert ceph.endpoint == old_endpoint
    new_pids = ceph.pids_by_daemon()
    assert set(new_pids) == {"mon", "osd", "rgw"}
    assert all(new_pids[name] != old_pids[name] for name in old_pids)
    _assert_no_process(old_pids)
    client = ceph.s3_client()
    try:
        assert client.get_object(Bucket=ceph_env, Key="survives")["Body"].read() == BINARY_BODY
        with pytest.raises(ClientError) as err:  # still write-once after the restart
            client.put_object(Bucket=ceph_env, Key="survives", Body=b"again", IfNoneMatch="*")
        assert _status(err.value) == 412
    finally:
        client.close()


@needs_ceph
def test_stop_and_kill_leave_no_process(tmp_path: Path) -> None:
    server = CephRGW(tmp_path / "c")
    with server:
        pids = server.pids_by_daemon()
        assert len(pids) == 3
        server.create_bucket("lifecycle")
        client = server.s3_client()
        client.put_object(Bucket="lifecycle", Key="k", Body=b"v")
        client.close()
    assert not server.running and server.pid is None and server.pids_by_daemon() == {}
    _assert_no_process(pids)
    server.stop()  # idempotent

    # kill(): radosgw crashes (SIGKILL), the OSD and monitor are stopped cleanly
    server.start()
    pids = server.pids_by_daemon()
    server.kill()
    assert server.pids_by_daemon() == {}
    _assert_no_process(pids)

    # ... and what radosgw acknowledged is still there
    server.start()
    client = server.s3_client()
    try:
        assert client.get_object(Bucket="lifecycle", Key="k")["Body"].read() == b"v"
    finally:
        client.close()
    pids = server.pids_by_daemon()
    server.kill(backend=True)
    assert server.pids_by_daemon() == {}
    _assert_no_process(pids)


@needs_ceph
def test_new_launcher_reuses_a_workdir(tmp_path: Path) -> None:
    first = CephRGW(tmp_path / "c")
    with first:
        first.create_bucket("reuse")
        client = first.s3_client()
        client.put_object(Bucket="reuse", Key="k", Body=b"v")
        client.close()
    second = CephRGW(tmp_path / "c")
    assert (second.fsid, second.endpoint, second.access_key) == (first.fsid, first.endpoint, first.access_key)
    with pytest.raises(ValueError, match="another access_key"):
        CephRGW(tmp_path / "c", access_key="OTHER")
    with second:
        client = second.s3_client()
        try:
            assert client.get_object(Bucket="reuse", Key="k")["Body"].read() == b"v"
        finally:
            client.close()
