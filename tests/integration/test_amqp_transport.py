"""What only the AMQP transport does (pika, publisher confirms, transactions), against a real RabbitMQ 3.x on
loopback; the RabbitMQ launcher; and what is particular to RabbitMQ's STOMP plugin (vhost `/`, durable queues).

The contract every transport keeps is tested in test_transport_contract.py, on RabbitMQ (AMQP and STOMP) too.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pika
import pytest

from eventindex.errors import BrokerConnectionError, TransportError
from eventindex.transport.amqp import AmqpConfig, AmqpConsumer, AmqpPublisher
from eventindex.transport.stomp import StompConfig, StompConsumer, StompPublisher
from tests.integration.test_servers import _group_members, _is_loopback, _listening_addresses
from tests.integration.transportkit import receive_all
from testservers import RabbitMQ

pytestmark = pytest.mark.integration


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
def test_a_released_message_comes_back_unchanged(cfg: AmqpConfig) -> None:
    """basic_nack with requeue: the broker puts the message itself back, marked redelivered."""
    with AmqpPublisher(cfg) as publisher:
        publisher.send(b"retry me\x00", {"ei-kind": "chunk"}, group="task.9")
    with AmqpConsumer(cfg) as consumer:
        (first,) = receive_all(consumer, 1, ack=False)
        consumer.release(first)
        (second,) = receive_all(consumer, 1)
        assert second.redelivered
        assert (second.body, second.headers) == (first.body, first.headers)


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


# ---------------------------------------------------------------- STOMP on RabbitMQ
def stomp_config(url: str, env: dict[str, str], **options: str) -> StompConfig:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return StompConfig.from_url(f"{url}&{query}" if query else url, env=env)


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
