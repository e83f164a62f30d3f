"""The AMQP transport (pika, publisher confirms) against a real RabbitMQ 3.x on loopback,
and the STOMP transport against RabbitMQ's STOMP plugin (vhost `/`, durable queues)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from eventindex.errors import BrokerConnectionError, TransportError
from eventindex.transport import open_consumer, open_publisher
from eventindex.transport.amqp import AmqpConfig, AmqpConsumer, AmqpPublisher
from eventindex.transport.stomp import RELEASE_COUNT_HEADER, StompConfig, StompConsumer, StompPublisher
from tests.integration.test_servers import _group_members, _is_loopback, _listening_addresses
from tests.integration.transportkit import receive_all, receive_until
from testservers import RabbitMQ
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
    b"AMQP\x00\x00\x09\x01 looks like a protocol header",
    os.urandom(300_000),
]


def config(url: str, env: dict[str, str], **options: str) -> AmqpConfig:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return AmqpConfig.from_url(f"{url}?{query}" if query else url, env=env)


def admin_channel(rabbitmq: RabbitMQ) -> tuple[Any, Any]:
    """A plain pika connection, to look at queues behind the adapter's back."""
    credentials = pika.PlainCredentials(rabbitmq.username, rabbitmq.password)
    params = pika.ConnectionParameters(rabbitmq.host, rabbitmq.amqp_port, "/", credentials, heartbeat=30)
    connection = pika.BlockingConnection(params)
    return connection, connection.channel()


def queue_depth(rabbitmq: RabbitMQ, queue: str) -> int:
    connection, channel = admin_channel(rabbitmq)
    try:
        return int(channel.queue_declare(queue=queue, passive=True).method.message_count)
    finally:
        connection.close()


@pytest.fixture
def cfg(amqp_queue: str, rabbit_env: dict[str, str]) -> AmqpConfig:
    return config(amqp_queue, rabbit_env)


@pytest.fixture(scope="module")
def _private_rabbit(rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    broker = RabbitMQ(tmp_path_factory.mktemp("private-rabbitmq"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def private_rabbit(_private_rabbit: RabbitMQ) -> RabbitMQ:
    """A second broker, to restart, freeze or stop (started again if a test left it stopped)."""
    if not _private_rabbit.running:
        _private_rabbit.start()
    return _private_rabbit


# ---------------------------------------------------------------- the launcher
def test_two_nodes_coexist_on_loopback_only(rabbitmq: RabbitMQ, private_rabbit: RabbitMQ) -> None:
    for node in (rabbitmq, private_rabbit):
        assert node.pid is not None and node.epmd_pid is not None
        assert node.start_seconds is not None and node.start_seconds < 30
        listening: set[tuple[str, int]] = set()
        for pid in [*_group_members(node.pid), node.epmd_pid]:
            listening |= _listening_addresses(pid)
        assert all(_is_loopback(ip) for ip, _ in listening), listening
        ports = {port for _, port in listening}
        assert {node.amqp_port, node.stomp_port, node.dist_port, node.epmd_port} <= ports, listening
    assert rabbitmq.node_name != private_rabbit.node_name
    assert {rabbitmq.amqp_port, rabbitmq.epmd_port}.isdisjoint({private_rabbit.amqp_port, private_rabbit.epmd_port})


def test_stop_leaves_no_process_and_restart_keeps_messages(tmp_path: Path, rabbitmq: RabbitMQ) -> None:
    node = RabbitMQ(tmp_path / "rmq")
    env = node.client_env()
    url = node.amqp_url("kept")
    with node:
        with AmqpPublisher(config(url, env)) as publisher:
            publisher.send(b"survives a restart")
        pid, epmd = node.pid, node.epmd_pid
        assert pid is not None and epmd is not None
        node.restart()
        assert node.epmd_pid is not None and node.epmd_pid != epmd
        assert not Path(f"/proc/{epmd}").exists()
        with AmqpConsumer(config(url, env)) as consumer:
            assert [m.body for m in receive_all(consumer, 1)] == [b"survives a restart"]
        pid, epmd = node.pid, node.epmd_pid
    assert node.pid is None and node.epmd_pid is None
    assert pid is not None and not _group_members(pid)
    assert not Path(f"/proc/{epmd}").exists()


# ---------------------------------------------------------------- AMQP
def test_binary_bodies_round_trip_byte_exact(cfg: AmqpConfig) -> None:
    with AmqpPublisher(cfg) as publisher:
        for body in BODIES:
            publisher.send(body)
    with AmqpConsumer(cfg) as consumer:
        got = receive_all(consumer, len(BODIES))
        assert [m.body for m in got] == BODIES
        assert consumer.receive(timeout=0.5) is None


def test_headers_and_group_pass_through(amqp_queue: str) -> None:
    headers = {"ei-kind": "chunk", "ei-task": "task.1", "odd": "a:b\\c\nd é", "content-type": "application/x-ei"}
    with open_publisher(amqp_queue) as publisher:
        assert isinstance(publisher, AmqpPublisher)
        publisher.send(b"one", headers, group="task.1")
        publisher.send(b"two")
    with open_consumer(amqp_queue) as consumer:
        assert isinstance(consumer, AmqpConsumer)
        first, second = receive_all(consumer, 2)
    assert first.body == b"one"
    for key, value in headers.items():
        assert first.headers[key] == value
    assert first.headers["JMSXGroupID"] == "task.1"
    assert not first.redelivered
    assert second.headers == {"content-type": "application/octet-stream"}


def test_send_returns_after_the_broker_confirmed(rabbitmq: RabbitMQ, cfg: AmqpConfig) -> None:
    with AmqpPublisher(cfg) as publisher:
        for i in range(20):
            publisher.send(b"%d" % i)
            # confirmed means queued: another connection sees it at once, no waiting
            assert queue_depth(rabbitmq, cfg.queue) == i + 1


def test_a_deleted_queue_is_declared_again_and_nothing_is_lost(rabbitmq: RabbitMQ, cfg: AmqpConfig) -> None:
    with AmqpPublisher(cfg) as publisher:
        publisher.send(b"before")
        connection, channel = admin_channel(rabbitmq)
        channel.queue_delete(queue=cfg.queue)
        connection.close()
        # mandatory: the broker returns the unroutable message; the retry declares the queue again
        publisher.send(b"after")
    with AmqpConsumer(cfg) as consumer:
        assert [m.body for m in receive_all(consumer, 1)] == [b"after"]
        assert consumer.receive(timeout=0.5) is None


def test_send_batch_is_one_committed_transaction(rabbitmq: RabbitMQ, cfg: AmqpConfig) -> None:
    batch = [(b"%03d\x00" % i, {"seq": str(i)}) for i in range(300)]
    with AmqpPublisher(cfg) as publisher:
        publisher.send_batch([], group="g")  # nothing to do
        publisher.send(b"single, confirmed")
        publisher.send_batch(batch, group="file-guid")
        assert queue_depth(rabbitmq, cfg.queue) == 301  # committed means queued
        connection, channel = admin_channel(rabbitmq)
        channel.queue_delete(queue=cfg.queue)
        connection.close()
        # the whole transaction comes back unroutable; the retry declares the queue and sends it again
        publisher.send_batch(batch[:2], group="again")
        publisher.send(b"after")
    with AmqpConsumer(cfg) as consumer:
        got = receive_all(consumer, 3)
        assert consumer.receive(timeout=0.5) is None
    assert [(m.body, m.headers.get("JMSXGroupID")) for m in got] == [
        (b"000\x00", "again"), (b"001\x00", "again"), (b"after", None),
    ]  # fmt: skip


def test_a_conflicting_queue_is_refused_at_once(rabbitmq: RabbitMQ, cfg: AmqpConfig) -> None:
    connection, channel = admin_channel(rabbitmq)
    channel.queue_declare(queue=cfg.queue, durable=False, auto_delete=False)
    try:
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            AmqpPublisher(cfg)
        assert time.monotonic() - started < 5  # a refusal is final: no retries
        assert not isinstance(info.value, BrokerConnectionError)
        text = str(info.value)
        assert "\n" not in text and "refused" in text and "406" in text
    finally:
        channel.queue_delete(queue=cfg.queue)
        connection.close()


def test_wrong_password_is_refused_with_one_line(rabbitmq: RabbitMQ, amqp_queue: str) -> None:
    env = {"EI_BROKER_USERNAME": rabbitmq.username, "EI_BROKER_PASSWORD": "wrong"}
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        AmqpConsumer(config(amqp_queue, env))
    assert time.monotonic() - started < 10
    text = str(info.value)
    assert "\n" not in text and "refused" in text
    assert "wrong" not in text and rabbitmq.password not in text


def test_unacked_message_is_redelivered_after_close(cfg: AmqpConfig) -> None:
    with AmqpPublisher(cfg) as publisher:
        publisher.send(b"\x00payload\xff", {"ei-kind": "chunk"}, group="g")
    with AmqpConsumer(cfg) as consumer:
        (first,) = receive_all(consumer, 1, ack=False)
        assert not first.redelivered
    with AmqpConsumer(cfg) as consumer:
        (again,) = receive_all(consumer, 1)
        assert again.body == b"\x00payload\xff"
        assert again.redelivered
        assert again.headers["JMSXGroupID"] == "g" and again.headers["ei-kind"] == "chunk"
    with AmqpConsumer(cfg) as consumer:
        assert consumer.receive(timeout=1.0) is None


def test_release_redelivers(cfg: AmqpConfig) -> None:
    with AmqpPublisher(cfg) as publisher:
        publisher.send(b"retry me\x00", {"ei-kind": "chunk"}, group="task.9")
    with AmqpConsumer(cfg) as consumer:
        (first,) = receive_all(consumer, 1, ack=False)
        consumer.release(first)
        (second,) = receive_all(consumer, 1, ack=False)
        assert second.body == first.body
        assert second.redelivered
        assert second.headers == first.headers
        consumer.release(second)
        (third,) = receive_all(consumer, 1)
        assert third.redelivered
        assert consumer.receive(timeout=1.0) is None
    with AmqpConsumer(cfg) as consumer:
        assert consumer.receive(timeout=1.0) is None


def test_acked_message_is_not_redelivered(cfg: AmqpConfig) -> None:
    with AmqpPublisher(cfg) as publisher:
        publisher.send(b"acked")
        publisher.send(b"not acked")
    with AmqpConsumer(cfg) as consumer:
        acked, unacked = receive_all(consumer, 2, ack=False)
        consumer.ack(acked)
    with AmqpConsumer(cfg) as consumer:
        (again,) = receive_all(consumer, 1)
        assert again.body == unacked.body == b"not acked"
        assert consumer.receive(timeout=1.0) is None


def test_thousand_messages_exactly_once(amqp_queue: str, rabbit_env: dict[str, str]) -> None:
    cfg = config(amqp_queue, rabbit_env, prefetch="50")
    count = 1000
    body = os.urandom(200)
    with AmqpPublisher(cfg) as publisher:
        started = time.monotonic()
        for i in range(count):
            publisher.send(b"%06d" % i + body, {"seq": str(i)}, group=f"task.{i % 7}")
        sent = time.monotonic() - started
    with AmqpConsumer(cfg) as consumer:
        started = time.monotonic()
        got = receive_all(consumer, count, timeout=120)
        received = time.monotonic() - started
        assert consumer.receive(timeout=1.0) is None
    bodies = [m.body[:6] for m in got]
    assert sorted(bodies) == [b"%06d" % i for i in range(count)]
    assert all(m.headers["seq"] == str(int(m.body[:6])) for m in got)
    assert not any(m.redelivered for m in got)
    with AmqpConsumer(cfg) as consumer:
        assert consumer.receive(timeout=1.0) is None
    print(f"AMQP 206 B persistent: send+confirm {count / sent:.0f} msg/s, receive+ack {count / received:.0f} msg/s")


def test_receive_after_close_is_an_error(cfg: AmqpConfig) -> None:
    consumer = AmqpConsumer(cfg)
    consumer.close()
    consumer.close()  # idempotent
    with pytest.raises(TransportError, match="closed"):
        consumer.receive(timeout=0.1)


def test_close_from_another_thread_ends_a_blocked_receive(cfg: AmqpConfig) -> None:
    consumer = AmqpConsumer(cfg)
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


def test_broker_restart_mid_stream(private_rabbit: RabbitMQ, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventindex.transport.amqp")
    cfg = config(private_rabbit.amqp_url("restart"), private_rabbit.client_env(), prefetch="20", heartbeat="2")
    before, during, after = range(0, 100), range(100, 150), range(150, 250)
    seen: list[bytes] = []
    with AmqpPublisher(cfg) as publisher, AmqpConsumer(cfg) as consumer:
        for i in before:
            publisher.send(b"%d" % i)
        held = receive_all(consumer, 10, ack=False)
        seen += [m.body for m in receive_all(consumer, 20)] + [m.body for m in held]

        # restart while a second publisher thread keeps sending: its sends ride out the outage
        errors: list[BaseException] = []

        def send_during() -> None:
            try:
                with AmqpPublisher(cfg) as other:
                    for i in during:
                        other.send(b"%d" % i)
                        time.sleep(0.02)
            except BaseException as exc:
                errors.append(exc)

        sender = threading.Thread(target=send_during)
        sender.start()
        time.sleep(0.3)
        private_rabbit.restart()
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


def test_frozen_broker_is_detected_by_heartbeats(private_rabbit: RabbitMQ) -> None:
    cfg = config(private_rabbit.amqp_url("frozen"), private_rabbit.client_env(), heartbeat="1", timeout="2")
    with AmqpPublisher(cfg) as publisher, AmqpConsumer(cfg, reconnect_deadline=60) as consumer:
        publisher.send(b"before")
        assert receive_all(consumer, 1)[0].body == b"before"
        pid = private_rabbit.pid
        assert pid is not None
        os.killpg(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            # receive must neither hang on the dead socket nor raise: it returns within its timeout
            # (pika checks heartbeats every heartbeat + 5 s: the connection is found dead within 12 s)
            while time.monotonic() - started < 13:
                assert consumer.receive(timeout=0.5) is None
                assert time.monotonic() - started < 18
        finally:
            os.killpg(pid, signal.SIGCONT)
        publisher.send(b"after")
        receive_until(consumer, b"after")


def test_consumer_gives_up_after_the_reconnect_deadline(private_rabbit: RabbitMQ) -> None:
    cfg = config(private_rabbit.amqp_url("gone"), private_rabbit.client_env(), heartbeat="1", timeout="2")
    with AmqpConsumer(cfg, reconnect_deadline=3.0) as consumer:
        assert consumer.receive(timeout=0.2) is None
        # The outage begins while the broker shuts down, so the deadline is
        # measured from before stop() and the upper bound from after it.
        stopping = time.monotonic()
        private_rabbit.stop()
        stopped = time.monotonic()
        with pytest.raises(BrokerConnectionError) as info:
            while time.monotonic() - stopped < 30:
                assert consumer.receive(timeout=0.5) is None
        given_up = time.monotonic()
    assert given_up - stopping >= 3.0
    assert given_up - stopped < 15
    assert "\n" not in str(info.value) and "unreachable" in str(info.value)


def test_publisher_on_a_dead_port_fails_fast_with_one_line() -> None:
    url = f"amqp://127.0.0.1:{free_port()}/nobody"
    started = time.monotonic()
    with pytest.raises(BrokerConnectionError) as info:
        AmqpPublisher(config(url, {}))
    elapsed = time.monotonic() - started
    assert elapsed < 10
    text = str(info.value)
    assert "\n" not in text
    assert "127.0.0.1" in text and "attempts" in text
    with pytest.raises(BrokerConnectionError):
        open_publisher(url)
    with pytest.raises(BrokerConnectionError):
        AmqpConsumer(config(url, {}))


# ---------------------------------------------------------------- STOMP on RabbitMQ
def stomp_config(url: str, env: dict[str, str], **options: str) -> StompConfig:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return StompConfig.from_url(f"{url}&{query}" if query else url, env=env)


def test_rabbitmq_stomp_round_trip_redelivery_and_release(rabbit_stomp_queue: str, rabbit_env: dict[str, str]) -> None:
    cfg = stomp_config(rabbit_stomp_queue, rabbit_env)
    assert cfg.vhost == "/"
    with StompPublisher(cfg) as publisher:
        for body in BODIES:
            publisher.send(body)
        publisher.send(b"retry me\x00", {"ei-kind": "chunk"}, group="task.9")
    with StompConsumer(cfg) as consumer:
        assert [m.body for m in receive_all(consumer, len(BODIES))] == BODIES
        (first,) = receive_all(consumer, 1, ack=False)
        # RabbitMQ copies a SEND's receipt header into the MESSAGE: it must not show as a message header
        assert "receipt" not in first.headers
    with StompConsumer(cfg) as consumer:
        (again,) = receive_all(consumer, 1, ack=False)
        assert again.redelivered and again.body == b"retry me\x00"
        consumer.release(again)
        (released,) = receive_all(consumer, 1)
        assert released.body == b"retry me\x00"
        assert released.headers[RELEASE_COUNT_HEADER] == "1"
        assert released.headers["JMSXGroupID"] == "task.9" and released.headers["ei-kind"] == "chunk"
        assert consumer.receive(timeout=1.0) is None


def test_rabbitmq_stomp_batch_is_one_transaction(rabbit_stomp_queue: str, rabbit_env: dict[str, str]) -> None:
    cfg = stomp_config(rabbit_stomp_queue, rabbit_env)
    with StompPublisher(cfg) as publisher:
        publisher.send_batch([(b"a", {"k": "1"}), (b"b", {"k": "2"})], group="g")
    with StompConsumer(cfg) as consumer:
        got = receive_all(consumer, 2)
    assert [(m.body, m.headers["k"]) for m in got] == [(b"a", "1"), (b"b", "2")]
    assert all("transaction" not in m.headers for m in got)


def test_rabbitmq_stomp_queue_is_durable(private_rabbit: RabbitMQ) -> None:
    env = private_rabbit.client_env()
    cfg = stomp_config(private_rabbit.stomp_url(f"durable.{uuid.uuid4().hex[:8]}"), env)
    with StompPublisher(cfg) as publisher:
        publisher.send(b"kept")
    with StompConsumer(cfg) as consumer:  # a subscription that ends must not take the queue with it
        (first,) = receive_all(consumer, 1, ack=False)
    private_rabbit.restart()
    with StompConsumer(cfg) as consumer:
        (again,) = receive_all(consumer, 1)
        assert again.body == first.body == b"kept"


def test_rabbitmq_stomp_without_vhost_is_refused(rabbitmq: RabbitMQ, rabbit_env: dict[str, str]) -> None:
    url = rabbitmq.stomp_url("novhost").split("?")[0]
    with pytest.raises(TransportError) as info:
        StompPublisher(StompConfig.from_url(url, env=rabbit_env))
    assert "\n" not in str(info.value)
