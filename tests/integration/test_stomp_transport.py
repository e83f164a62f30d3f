"""What only the STOMP transport does, against a real ActiveMQ 5.17 (and RabbitMQ's STOMP plugin) on loopback.

The contract every transport keeps is tested in test_transport_contract.py, on these brokers too.
"""

from __future__ import annotations

import pytest

from eventindex.errors import TransportError
from eventindex.transport import open_consumer, open_publisher
from eventindex.transport.stomp import (
    RELEASE_COUNT_HEADER,
    StompConfig,
    StompConsumer,
    StompPublisher,
)
from tests.integration.transportkit import receive_all
from testservers.base import free_port

pytestmark = pytest.mark.integration


def config(url: str, **options: str) -> StompConfig:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return StompConfig.from_url(f"{url}?{query}" if query else url, env={})


@pytest.fixture(params=["activemq", "rabbitmq"])
def any_stomp_queue(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh queue on ActiveMQ, or on RabbitMQ's STOMP plugin (its credentials in the environment)."""
    for var in ("EI_BROKER_USERNAME", "EI_BROKER_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    return str(request.getfixturevalue("stomp_queue" if request.param == "activemq" else "rabbit_stomp_queue"))


def test_reserved_header_is_refused_before_sending(stomp_queue: str) -> None:
    with StompPublisher(config(stomp_queue)) as publisher, pytest.raises(TransportError, match="destination"):
        publisher.send(b"x", {"destination": "/queue/elsewhere"})


def test_release_sends_a_copy_that_counts_the_releases(any_stomp_queue: str) -> None:
    """No NACK (ActiveMQ would dead-letter the message): a copy with ei-release-count, then an ACK."""
    with open_publisher(any_stomp_queue) as publisher:
        publisher.send(b"retry me\x00", {"ei-kind": "chunk"}, group="task.9")
    with open_consumer(any_stomp_queue) as consumer:
        (first,) = receive_all(consumer, 1, ack=False)
        assert RELEASE_COUNT_HEADER not in first.headers
        consumer.release(first)
        (second,) = receive_all(consumer, 1, ack=False)
        assert second.redelivered
        assert second.headers == {**first.headers, RELEASE_COUNT_HEADER: "1"}
        consumer.release(second)
        (third,) = receive_all(consumer, 1)
        assert third.headers == {**first.headers, RELEASE_COUNT_HEADER: "2"}
        assert consumer.receive(timeout=1.0) is None


def test_failover_skips_a_dead_host(stomp_queue: str) -> None:
    cfg = config(stomp_queue)
    (host, port), dead = cfg.hosts[0], free_port()
    url = f"stomp://127.0.0.1:{dead},{host}:{port}/queue/{cfg.queue}"
    with StompPublisher(config(url)) as publisher:
        publisher.send(b"via the second host")
    with StompConsumer(config(url)) as consumer:
        assert receive_all(consumer, 1)[0].body == b"via the second host"
