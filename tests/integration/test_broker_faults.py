"""What a broker operator meets, against a real RabbitMQ on loopback: users without the rights they need, a
refused login, a vhost that does not exist, a queue the operator declared with arguments of their own, and a
connection cut in the middle of its login.

- A broker that answers and refuses (no write or configure right, a wrong password, an unknown vhost) is a
  configuration error: `ei-producer` exits 5 with one line naming the refusal, spools nothing (a spool would
  hide it), prints no traceback and no credential; a consumer is refused at once, not after its reconnect budget.
- A connection that drops during the login (a broker stopping, a network cut) is not a refusal: it is retried.

The restricted users are made with `rabbitmqctl` on the session's node; every test uses a queue of its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest

from eventindex.errors import BrokerConnectionError, TransportError
from eventindex.transport import Consumer
from eventindex.transport.amqp import AmqpConfig, AmqpConsumer, AmqpPublisher
from eventindex.transport.stomp import StompConfig, StompConsumer
from tests.integration.transportkit import receive_all
from testservers import RabbitMQ
from testservers.rabbitmq import RABBITMQ_HOME

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

#: make_user(configure, write, read) -> the EI_BROKER_* environment of a new user with those permissions
MakeUser = Callable[[str, str, str], dict[str, str]]


# ---------------------------------------------------------------- helpers
def rabbitmqctl(rabbitmq: RabbitMQ, *args: str) -> None:
    """Run `rabbitmqctl` against `rabbitmq`'s node (its cookie, epmd port and node name)."""
    subprocess.run(
        [str(RABBITMQ_HOME / "bin" / "rabbitmqctl"), "-n", rabbitmq.node_name, *args],
        env=rabbitmq.environment(), check=True, capture_output=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def make_user(rabbitmq: RabbitMQ) -> Iterator[MakeUser]:
    """`make_user(configure, write, read)`: a new user with those permission patterns on vhost `/`; returns the
    EI_BROKER_* environment of it. Deleted after the test."""
    made: list[str] = []

    def make(configure: str, write: str, read: str) -> dict[str, str]:
        name, password = f"ei-op-{secrets.token_hex(4)}", "p" + secrets.token_urlsafe(18)
        rabbitmqctl(rabbitmq, "add_user", name, password)
        made.append(name)
        rabbitmqctl(rabbitmq, "set_permissions", "-p", "/", name, configure, write, read)
        return {"EI_BROKER_USERNAME": name, "EI_BROKER_PASSWORD": password}

    yield make
    for name in made:
        with contextlib.suppress(subprocess.SubprocessError):
            rabbitmqctl(rabbitmq, "delete_user", name)


def queue_name() -> str:
    return f"ei.op.{uuid.uuid4().hex[:12]}"


def broker_url(rabbitmq: RabbitMQ, protocol: str, queue: str) -> str:
    return rabbitmq.amqp_url(queue) if protocol == "amqp" else rabbitmq.stomp_url(queue)


def run_producer(tmp_path: Path, broker: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EI_BROKER_")}
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", "--task", "t1", "--job", "j1", "--attempt", "1", "--dataset", "ds",
         "--input", "synthetic:200:1", "--store", store.as_uri(), "--broker", broker,
         "--spool", str(tmp_path / "pointers.spool")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**clean, **env, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def assert_one_line_refusal(proc: subprocess.CompletedProcess[str], tmp_path: Path, password: str) -> str:
    """Exit 5, nothing spooled, every stderr line one of the tool's, no traceback, no password; the last line."""
    assert proc.returncode == 5, proc.stderr
    assert not (tmp_path / "pointers.spool").exists(), "a refusal must not be spooled"
    lines = proc.stderr.strip().splitlines()
    assert lines and all(line.startswith("ei-producer: ") for line in lines), proc.stderr
    assert "Traceback" not in proc.stderr
    assert password not in proc.stderr + proc.stdout
    return lines[-1]


# ---------------------------------------------------------------- permissions and refusals
@pytest.mark.parametrize("protocol", ["amqp", "stomp"])
@pytest.mark.parametrize("missing", ["write", "configure"])
def test_a_user_without_the_right_to_send_exits_5_and_spools_nothing(
    rabbitmq: RabbitMQ, make_user: MakeUser, tmp_path: Path, protocol: str, missing: str
) -> None:
    env = make_user("" if missing == "configure" else ".*", "" if missing == "write" else ".*", ".*")
    queue = queue_name()
    if missing == "configure":  # the queue exists (an administrator made it): declaring it still needs the right
        connection = pika.BlockingConnection(
            pika.ConnectionParameters(
                rabbitmq.host, rabbitmq.amqp_port, "/", pika.PlainCredentials(rabbitmq.username, rabbitmq.password)
            )
        )
        connection.channel().queue_declare(queue=queue, durable=True)
        connection.close()
    started = time.monotonic()
    proc = run_producer(tmp_path, broker_url(rabbitmq, protocol, queue), env)
    last = assert_one_line_refusal(proc, tmp_path, env["EI_BROKER_PASSWORD"])
    assert "broker error" in last and "refused" in last and "access" in last.lower(), last
    assert time.monotonic() - started < 30  # no reconnect rounds: a refusal is final


def test_a_refused_amqp_login_is_one_line_without_the_client_librarys_traceback(
    rabbitmq: RabbitMQ, tmp_path: Path
) -> None:
    env = {"EI_BROKER_USERNAME": rabbitmq.username, "EI_BROKER_PASSWORD": "wrong-" + secrets.token_hex(6)}
    proc = run_producer(tmp_path, rabbitmq.amqp_url(queue_name()), env)
    last = assert_one_line_refusal(proc, tmp_path, env["EI_BROKER_PASSWORD"])
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "refused the connection" in last and "ACCESS_REFUSED" in last


@pytest.mark.parametrize("fault", ["password", "vhost"])
def test_a_refused_stomp_login_says_why(rabbitmq: RabbitMQ, tmp_path: Path, fault: str) -> None:
    """RabbitMQ's ERROR frame says "Bad CONNECT" for every refusal; the reason is in its body."""
    password = "wrong-" + secrets.token_hex(6) if fault == "password" else rabbitmq.password
    env = {"EI_BROKER_USERNAME": rabbitmq.username, "EI_BROKER_PASSWORD": password}
    url = rabbitmq.stomp_url(queue_name())
    if fault == "vhost":
        url = url.replace("vhost=/", "vhost=no-such-vhost")
    proc = run_producer(tmp_path, url, env)
    last = assert_one_line_refusal(proc, tmp_path, rabbitmq.password if fault == "vhost" else password)
    expected = "Access refused for user" if fault == "password" else "Virtual host 'no-such-vhost'"
    assert expected in last, last


@pytest.mark.parametrize("protocol", ["amqp", "stomp"])
def test_a_consumer_without_the_right_to_read_is_refused_at_once(
    rabbitmq: RabbitMQ, make_user: MakeUser, protocol: str
) -> None:
    env = make_user("", ".*", "")
    queue = queue_name()
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        if protocol == "amqp":
            consumer: Consumer = AmqpConsumer(AmqpConfig.from_url(rabbitmq.amqp_url(queue), env=env))
        else:  # RabbitMQ may confirm the SUBSCRIBE and refuse the queue just after it: the refusal ends `receive`
            consumer = StompConsumer(StompConfig.from_url(rabbitmq.stomp_url(queue), env=env))
        with consumer:
            while time.monotonic() - started < 10:
                consumer.receive(0.5)
    assert not isinstance(info.value, BrokerConnectionError), "a refusal, not an unreachable broker"
    assert time.monotonic() - started < 5
    text = str(info.value)
    assert "\n" not in text and "refused" in text and env["EI_BROKER_PASSWORD"] not in text


# ---------------------------------------------------------------- a queue the operator declared
@pytest.mark.parametrize(
    "arguments", [{"x-queue-type": "quorum"}, {"x-max-length": 100_000}], ids=["quorum", "max-length"]
)
def test_a_queue_declared_with_the_operators_arguments_is_used_as_it_is(
    rabbitmq: RabbitMQ, rabbit_env: dict[str, str], arguments: dict[str, object]
) -> None:
    queue = queue_name()
    credentials = pika.PlainCredentials(rabbitmq.username, rabbitmq.password)
    connection = pika.BlockingConnection(pika.ConnectionParameters(rabbitmq.host, rabbitmq.amqp_port, "/", credentials))
    try:
        channel = connection.channel()
        channel.queue_declare(queue=queue, durable=True, arguments=arguments)
        cfg = AmqpConfig.from_url(rabbitmq.amqp_url(queue), env=rabbit_env)
        with AmqpPublisher(cfg) as publisher:
            for i in range(5):
                publisher.send(b"%d" % i)
        with AmqpConsumer(cfg) as consumer:
            assert sorted(m.body for m in receive_all(consumer, 5)) == [b"%d" % i for i in range(5)]
        # still the operator's queue: declaring it with those arguments still matches
        channel.queue_declare(queue=queue, durable=True, arguments=arguments, passive=False)
        channel.queue_delete(queue=queue)
    finally:
        connection.close()


# ---------------------------------------------------------------- a connection cut during the login
class HandshakeCutter:
    """A TCP relay on 127.0.0.1 in front of the real broker. Its first `cuts` connections are cut in the middle
    of the AMQP handshake, `stage` round trips in (1: after the broker's Connection.Start reached the client and
    the client answered, while pika authenticates; 2: after Connection.Tune, while it opens the vhost), as a
    network cut or a broker dying there would; later connections are relayed whole."""

    def __init__(self, upstream: int, *, stage: int, cuts: int = 1) -> None:
        self.upstream, self.stage, self.cuts_left = upstream, stage, cuts
        self.cut = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
        client.settimeout(10)
        with self._lock:
            self._sockets += [client, upstream]
            cut = self.cuts_left > 0
            self.cuts_left -= cut
        try:
            if cut:
                for _ in range(self.stage):
                    upstream.sendall(client.recv(65536))  # the protocol header, then Connection.StartOk
                    client.sendall(upstream.recv(65536))  # Connection.Start, then Connection.Tune
                client.recv(65536)  # the client's answer, never delivered
                self.cut += 1
            else:
                self._relay(client, upstream)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        peer = {client: upstream, upstream: client}
        by_fd = {sock.fileno(): sock for sock in peer}
        with selectors.DefaultSelector() as selector:
            for sock in peer:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in selector.select(0.2):
                    sock = by_fd[key.fd]
                    data = sock.recv(65536)
                    if not data:
                        return
                    peer[sock].setblocking(True)
                    peer[sock].sendall(data)
                    peer[sock].setblocking(False)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def cutter(request: pytest.FixtureRequest, rabbitmq: RabbitMQ) -> Iterator[HandshakeCutter]:
    relay = HandshakeCutter(rabbitmq.amqp_port, stage=int(request.param))
    try:
        yield relay
    finally:
        relay.close()


@pytest.mark.parametrize("role", ["publisher", "consumer"])
@pytest.mark.parametrize("cutter", [1, 2], ids=["during-login", "during-vhost-open"], indirect=True)
def test_a_connection_cut_during_the_login_is_retried_not_taken_for_a_refusal(
    rabbitmq: RabbitMQ, rabbit_env: dict[str, str], cutter: HandshakeCutter, role: str
) -> None:
    """pika calls such a drop a 'probable authentication (or access) error'; it is no refusal: the next attempt
    gets through (before the fix, the first cut ended the publisher or the consumer as 'refused')."""
    queue = queue_name()
    via_cutter = AmqpConfig.from_url(f"amqp://127.0.0.1:{cutter.port}/{queue}", env=rabbit_env)
    direct = AmqpConfig.from_url(rabbitmq.amqp_url(queue), env=rabbit_env)
    if role == "publisher":
        with AmqpPublisher(via_cutter) as publisher:
            publisher.send(b"through")
        with AmqpConsumer(direct) as consumer:
            assert [m.body for m in receive_all(consumer, 1)] == [b"through"]
    else:
        with AmqpPublisher(direct) as publisher:
            publisher.send(b"through")
        with AmqpConsumer(via_cutter) as consumer:
            assert [m.body for m in receive_all(consumer, 1)] == [b"through"]
    assert cutter.cut == 1
