"""The transport contract (eventindex.transport.base) on every broker: one test body, four transports.

The embedded SQLite queue, ActiveMQ over STOMP, RabbitMQ over STOMP and RabbitMQ over AMQP each
run every test of the first part through the `broker` fixture, opened by URL as the producer and
supersink open them. The second part, outages (a restart, a frozen broker, one that stays down),
runs through the `outage` fixture on a broker of the test's own: ActiveMQ over STOMP and RabbitMQ
over AMQP, each with its protocol's heartbeat timings. What only one protocol does (STOMP's release
count, AMQP's confirms and transactions) is tested in test_stomp_transport.py and test_amqp_transport.py.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from eventindex.errors import BrokerConnectionError, TransportError
from eventindex.transport import Consumer, Publisher, open_consumer, open_publisher
from eventindex.transport.amqp import AmqpConfig, AmqpConsumer, AmqpPublisher
from eventindex.transport.embedded import EmbeddedConsumer, EmbeddedPublisher
from eventindex.transport.stomp import StompConfig, StompConsumer, StompPublisher
from tests.integration.transportkit import receive_all, receive_until
from testservers import ActiveMQ, BrokerServer, RabbitMQ
from testservers.base import free_port

pytestmark = pytest.mark.integration

BODIES = [
    b"",
    b"\x00",
    b"\x00\x00\x00",
    bytes(range(256)) * 4,
    b"\xff\xfe\xc3\x28 not utf-8 \xa0\xa1 \xed\xa0\x80",
    b"\n\nstarts with a blank line\x00",
    b"\r\n\r\n",
    b"content-length:3\n\n\x00\x00 looks like a frame",
    b"AMQP\x00\x00\x09\x01 looks like a protocol header",
    os.urandom(300_000),
]
#: Headers that describe a delivery, not the message (STOMP frame headers, ei-group): never in `Message.headers`.
DELIVERY_HEADERS = ("ack", "message-id", "subscription", "destination", "content-length", "ei-group", "receipt")


@dataclass(frozen=True)
class Broker:
    """A transport under test: how to name a fresh queue on it, and the adapter classes it opens."""

    name: str
    #: the URL of a queue with this name (query options already there, if any, end the URL)
    base_url: str
    publisher: type[Publisher]
    consumer: type[Consumer]
    #: what a message sent without headers arrives with
    plain_headers: dict[str, str] = field(default_factory=dict)

    def url(self, **options: int) -> str:
        """A queue no other test uses; `options` (e.g. prefetch) for the networked brokers only."""
        url = self.base_url.replace("QUEUE", f"ei.test.{uuid.uuid4().hex[:16]}")
        if options and self.publisher is not EmbeddedPublisher:
            query = "&".join(f"{key}={value}" for key, value in options.items())
            url += ("&" if "?" in url else "?") + query
        return url


@pytest.fixture(params=["embedded", "activemq-stomp", "rabbitmq-stomp", "rabbitmq-amqp"])
def broker(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Broker:
    for var in ("EI_BROKER_USERNAME", "EI_BROKER_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    octet_stream = {"content-type": "application/octet-stream"}
    if request.param == "embedded":
        return Broker("embedded", f"sqlite://{tmp_path}/queue.db?queue=QUEUE", EmbeddedPublisher, EmbeddedConsumer)
    if request.param == "activemq-stomp":
        activemq: ActiveMQ = request.getfixturevalue("activemq")
        return Broker(request.param, activemq.stomp_url("QUEUE"), StompPublisher, StompConsumer, octet_stream)
    rabbitmq: RabbitMQ = request.getfixturevalue("rabbitmq")
    request.getfixturevalue("rabbit_env")  # the credentials, in the environment as a deployment has them
    if request.param == "rabbitmq-stomp":
        return Broker(request.param, rabbitmq.stomp_url("QUEUE"), StompPublisher, StompConsumer, octet_stream)
    return Broker(request.param, rabbitmq.amqp_url("QUEUE"), AmqpPublisher, AmqpConsumer, octet_stream)


@pytest.fixture
def url(broker: Broker) -> str:
    return broker.url()


def test_the_url_opens_the_brokers_adapters(broker: Broker, url: str) -> None:
    with open_publisher(url) as publisher, open_consumer(url) as consumer:
        assert type(publisher) is broker.publisher and type(consumer) is broker.consumer


def test_binary_bodies_round_trip_byte_exact(url: str) -> None:
    with open_publisher(url) as publisher:
        for body in BODIES:
            publisher.send(body)
    with open_consumer(url) as consumer:
        got = receive_all(consumer, len(BODIES))
        assert [m.body for m in got] == BODIES
        assert consumer.receive(timeout=0.5) is None


def test_headers_and_group_pass_through(broker: Broker, url: str) -> None:
    headers = {"ei-kind": "chunk", "ei-task": "task.1", "odd": "a:b\\c\nd é", "content-type": "application/x-ei"}
    with open_publisher(url) as publisher:
        publisher.send(b"one", headers, group="task.1")
        publisher.send(b"two")
    with open_consumer(url) as consumer:
        first, second = receive_all(consumer, 2)
    assert first.body == b"one"
    for key, value in headers.items():
        assert first.headers[key] == value
    assert first.headers["JMSXGroupID"] == "task.1"
    assert not first.redelivered
    assert second.headers == broker.plain_headers
    for delivery_header in DELIVERY_HEADERS:
        assert delivery_header not in first.headers


def test_send_batch_delivers_every_message_with_the_group(url: str) -> None:
    with open_publisher(url) as publisher:
        publisher.send_batch([], group="g")  # nothing to do
        publisher.send_batch([(b"a", {"k": "1"}), (b"b\x00", {"k": "2"})], group="file-guid")
    with open_consumer(url) as consumer:
        got = receive_all(consumer, 2)
        assert consumer.receive(timeout=0.5) is None
    assert [(m.body, m.headers["k"], m.headers["JMSXGroupID"]) for m in got] == [
        (b"a", "1", "file-guid"), (b"b\x00", "2", "file-guid"),
    ]  # fmt: skip
    assert all("transaction" not in m.headers for m in got)


def test_unacked_message_is_redelivered_after_close(url: str) -> None:
    with open_publisher(url) as publisher:
        publisher.send(b"\x00payload\xff", {"ei-kind": "chunk"}, group="g")
    with open_consumer(url) as consumer:
        (first,) = receive_all(consumer, 1, ack=False)
        assert not first.redelivered
    with open_consumer(url) as consumer:
        (again,) = receive_all(consumer, 1)
        assert again.body == b"\x00payload\xff"
        assert again.redelivered
        assert again.headers["JMSXGroupID"] == "g" and again.headers["ei-kind"] == "chunk"
    with open_consumer(url) as consumer:
        assert consumer.receive(timeout=1.0) is None


def test_release_redelivers(url: str) -> None:
    with open_publisher(url) as publisher:
        publisher.send(b"retry me\x00", {"ei-kind": "chunk"}, group="task.9")
    with open_consumer(url) as consumer:
        (first,) = receive_all(consumer, 1, ack=False)
        consumer.release(first)
        (second,) = receive_all(consumer, 1, ack=False)
        assert second.body == first.body
        assert second.redelivered
        assert second.headers["ei-kind"] == "chunk"
        assert second.headers["JMSXGroupID"] == "task.9"
        consumer.release(second)
        (third,) = receive_all(consumer, 1)
        assert third.body == first.body and third.redelivered
        assert consumer.receive(timeout=1.0) is None
    with open_consumer(url) as consumer:
        assert consumer.receive(timeout=1.0) is None


def test_acked_message_is_not_redelivered(url: str) -> None:
    with open_publisher(url) as publisher:
        publisher.send(b"acked")
        publisher.send(b"not acked")
    with open_consumer(url) as consumer:
        acked, unacked = receive_all(consumer, 2, ack=False)
        consumer.ack(acked)
    with open_consumer(url) as consumer:
        (again,) = receive_all(consumer, 1)
        assert again.body == unacked.body == b"not acked"
        assert consumer.receive(timeout=1.0) is None


@pytest.mark.parametrize("consumer_open", [True, False], ids=["consumer-open", "consumer-after"])
def test_thousand_messages_exactly_once(broker: Broker, consumer_open: bool) -> None:
    """With the consumer open (prefetching) while the publisher sends, and opened after it closed."""
    url = broker.url(prefetch=50)
    count = 1000
    body = os.urandom(200)
    consumer = open_consumer(url) if consumer_open else None
    with open_publisher(url) as publisher:
        started = time.monotonic()
        for i in range(count):
            publisher.send(b"%06d" % i + body, {"seq": str(i)}, group=f"task.{i % 7}")
        sent = time.monotonic() - started
    with consumer or open_consumer(url) as receiver:
        started = time.monotonic()
        got = receive_all(receiver, count, timeout=120)
        received = time.monotonic() - started
        assert receiver.receive(timeout=1.0) is None
    bodies = [m.body[:6] for m in got]
    assert len(set(bodies)) == count
    assert sorted(bodies) == [b"%06d" % i for i in range(count)]
    assert all(m.headers["seq"] == str(int(m.body[:6])) and m.body[6:] == body for m in got)
    assert not any(m.redelivered for m in got)
    with open_consumer(url) as receiver:
        assert receiver.receive(timeout=1.0) is None
    print(f"{broker.name}, 206 B persistent: send {count / sent:.0f} msg/s, receive+ack {count / received:.0f} msg/s")


def test_receive_after_close_is_an_error(url: str) -> None:
    consumer = open_consumer(url)
    consumer.close()
    consumer.close()  # idempotent
    with pytest.raises(TransportError, match="closed"):
        consumer.receive(timeout=0.1)


def test_close_from_another_thread_ends_a_blocked_receive(url: str) -> None:
    consumer = open_consumer(url)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(consumer.receive(timeout=30)))
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    consumer.close()
    thread.join(10)
    assert not thread.is_alive()
    assert result == [None]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("template", ["stomp://127.0.0.1:{port}/queue/nobody", "amqp://127.0.0.1:{port}/nobody"])
def test_a_dead_port_fails_fast_with_one_line(template: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("EI_BROKER_USERNAME", "EI_BROKER_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    url = template.format(port=free_port())
    started = time.monotonic()
    with pytest.raises(BrokerConnectionError) as info:
        open_publisher(url)
    elapsed = time.monotonic() - started
    assert elapsed < 10
    text = str(info.value)
    assert "\n" not in text
    assert "127.0.0.1" in text and "attempts" in text
    with pytest.raises(BrokerConnectionError):
        open_consumer(url)


# ---------------------------------------------------------------- outages
@dataclass(frozen=True)
class Outage:
    """A broker of this test alone, to restart, freeze or stop, and the timings of its protocol."""

    name: str
    server: BrokerServer
    protocol: str
    #: the adapter module's logger
    logger: str
    #: URL heartbeat options: a second or two (`slow`), the shortest the protocol takes well (`fast`)
    slow_heartbeat: str
    fast_heartbeat: str
    #: how long a frozen broker is watched, and by when each receive has returned (pika checks
    #: heartbeats every heartbeat + 5 s: it finds the connection dead within 12 s)
    frozen_watch: float
    frozen_limit: float

    def url(self, queue: str, **options: str) -> str:
        url = self.server.queue_url(queue, self.protocol)
        return url + ("&" if "?" in url else "?") + "&".join(f"{key}={value}" for key, value in options.items())

    def consumer(self, url: str, reconnect_deadline: float) -> Consumer:
        if self.protocol == "amqp":
            return AmqpConsumer(AmqpConfig.from_url(url), reconnect_deadline=reconnect_deadline)
        return StompConsumer(StompConfig.from_url(url), reconnect_deadline=reconnect_deadline)


@pytest.fixture(params=["activemq-stomp", "rabbitmq-amqp"])
def outage(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Outage:
    for var in ("EI_BROKER_USERNAME", "EI_BROKER_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    if request.param == "activemq-stomp":
        activemq: ActiveMQ = request.getfixturevalue("private_activemq")
        return Outage(request.param, activemq, "stomp", "eventindex.transport.stomp", "1000", "500", 4, 10)
    rabbitmq: RabbitMQ = request.getfixturevalue("private_rabbit")
    for var, value in rabbitmq.client_env().items():
        monkeypatch.setenv(var, value)
    return Outage(request.param, rabbitmq, "amqp", "eventindex.transport.amqp", "2", "1", 13, 18)


def test_broker_restart_mid_stream(outage: Outage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=outage.logger)
    url = outage.url("restart", prefetch="20", heartbeat=outage.slow_heartbeat)
    before, during, after = range(0, 100), range(100, 150), range(150, 250)
    seen: list[bytes] = []
    with open_publisher(url) as publisher, open_consumer(url) as consumer:
        for i in before:
            publisher.send(b"%d" % i)
        held = receive_all(consumer, 10, ack=False)  # prefetch=20: the broker waits for acks after 20
        seen += [m.body for m in receive_all(consumer, 20)] + [m.body for m in held]

        # restart while a second publisher thread keeps sending: its sends ride out the outage
        errors: list[BaseException] = []

        def send_during() -> None:
            try:
                with open_publisher(url) as other:
                    for i in during:
                        other.send(b"%d" % i)
                        time.sleep(0.02)
            except BaseException as exc:
                errors.append(exc)

        sender = threading.Thread(target=send_during)
        sender.start()
        time.sleep(0.3)
        outage.server.restart()
        sender.join(120)
        assert not sender.is_alive()
        assert errors == []

        for old in held:
            consumer.ack(old)  # handles of the old connection: skipped, the broker redelivers them
        for i in after:
            publisher.send(b"%d" % i)

        expected = {b"%d" % i for i in (*before, *during, *after)}
        deadline = time.monotonic() + 120
        while not expected <= set(seen) and time.monotonic() < deadline:
            message = consumer.receive(timeout=1.0)
            if message is not None:
                seen.append(message.body)
                consumer.ack(message)
    assert expected == set(seen), f"missing {sorted(expected - set(seen))[:10]}"
    assert "reconnected" in caplog.text


def test_frozen_broker_is_detected_by_heartbeats(outage: Outage) -> None:
    url = outage.url("frozen", heartbeat=outage.fast_heartbeat, timeout="2")
    with open_publisher(url) as publisher, outage.consumer(url, reconnect_deadline=60) as consumer:
        publisher.send(b"before")
        assert receive_all(consumer, 1)[0].body == b"before"
        pid = outage.server.pid
        assert pid is not None
        os.killpg(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            # receive must neither hang on the dead socket nor raise: it returns within its timeout
            while time.monotonic() - started < outage.frozen_watch:
                assert consumer.receive(timeout=0.5) is None
                assert time.monotonic() - started < outage.frozen_limit
        finally:
            os.killpg(pid, signal.SIGCONT)
        publisher.send(b"after")
        receive_until(consumer, b"after")


def test_consumer_gives_up_after_the_reconnect_deadline(outage: Outage) -> None:
    url = outage.url("gone", heartbeat=outage.fast_heartbeat, timeout="2")
    with outage.consumer(url, reconnect_deadline=3.0) as consumer:
        assert consumer.receive(timeout=0.2) is None
        # The outage begins while the broker shuts down, so the deadline is
        # measured from before stop() and the upper bound from after it.
        stopping = time.monotonic()
        outage.server.stop()
        stopped = time.monotonic()
        with pytest.raises(BrokerConnectionError) as info:
            while time.monotonic() - stopped < 30:
                assert consumer.receive(timeout=0.5) is None
        given_up = time.monotonic()
    assert given_up - stopping >= 3.0
    assert given_up - stopped < 15
    assert "\n" not in str(info.value) and "unreachable" in str(info.value)
