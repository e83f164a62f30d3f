"""The STOMP transport against a real ActiveMQ 5.17 on loopback."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventindex.errors import BrokerConnectionError, TransportError
from eventindex.transport import open_consumer, open_publisher
from eventindex.transport.stomp import (
    RELEASE_COUNT_HEADER,
    StompConfig,
    StompConsumer,
    StompPublisher,
)
from tests.integration.transportkit import receive_all, receive_until
from testservers import ActiveMQ
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
    os.urandom(300_000),
]


def config(url: str, **options: str) -> StompConfig:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return StompConfig.from_url(f"{url}?{query}" if query else url, env={})


@pytest.fixture
def private_broker(activemq: ActiveMQ, tmp_path: Path) -> Iterator[ActiveMQ]:
    """A broker of this test alone, to restart or freeze (`activemq` checks that ActiveMQ is installed)."""
    broker = ActiveMQ(tmp_path / "activemq")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_binary_bodies_round_trip_byte_exact(stomp_queue: str) -> None:
    cfg = config(stomp_queue)
    with StompPublisher(cfg) as publisher:
        for body in BODIES:
            publisher.send(body)
    with StompConsumer(cfg) as consumer:
        got = receive_all(consumer, len(BODIES))
        assert [m.body for m in got] == BODIES
        assert consumer.receive(timeout=0.5) is None


def test_headers_and_group_pass_through(stomp_queue: str) -> None:
    headers = {"ei-kind": "chunk", "ei-task": "task.1", "odd": "a:b\\c\nd é", "content-type": "application/x-ei"}
    with open_publisher(stomp_queue) as publisher:
        publisher.send(b"one", headers, group="task.1")
        publisher.send(b"two")
    with open_consumer(stomp_queue) as consumer:
        assert isinstance(consumer, StompConsumer)
        first, second = receive_all(consumer, 2)
    assert first.body == b"one"
    for key, value in headers.items():
        assert first.headers[key] == value
    assert first.headers["JMSXGroupID"] == "task.1"
    assert not first.redelivered
    assert second.headers["content-type"] == "application/octet-stream"
    assert "JMSXGroupID" not in second.headers
    for delivery_header in ("ack", "message-id", "subscription", "destination", "content-length", "ei-group"):
        assert delivery_header not in first.headers


def test_reserved_header_is_refused_before_sending(stomp_queue: str) -> None:
    with StompPublisher(config(stomp_queue)) as publisher, pytest.raises(TransportError, match="destination"):
        publisher.send(b"x", {"destination": "/queue/elsewhere"})


def test_unacked_message_is_redelivered_after_close(stomp_queue: str) -> None:
    cfg = config(stomp_queue)
    with StompPublisher(cfg) as publisher:
        publisher.send(b"\x00payload\xff", group="g")
    with StompConsumer(cfg) as consumer:
        (first,) = receive_all(consumer, 1, ack=False)
        assert not first.redelivered
    with StompConsumer(cfg) as consumer:
        (again,) = receive_all(consumer, 1)
        assert again.body == b"\x00payload\xff"
        assert again.redelivered
        assert again.headers["JMSXGroupID"] == "g"
    with StompConsumer(cfg) as consumer:
        assert consumer.receive(timeout=1.0) is None


def test_release_redelivers(stomp_queue: str) -> None:
    cfg = config(stomp_queue)
    with StompPublisher(cfg) as publisher:
        publisher.send(b"retry me\x00", {"ei-kind": "chunk"}, group="task.9")
    with StompConsumer(cfg) as consumer:
        (first,) = receive_all(consumer, 1, ack=False)
        consumer.release(first)
        (second,) = receive_all(consumer, 1, ack=False)
        assert second.body == first.body
        assert second.redelivered
        assert second.headers["ei-kind"] == "chunk"
        assert second.headers["JMSXGroupID"] == "task.9"
        assert second.headers[RELEASE_COUNT_HEADER] == "1"
        consumer.release(second)
        (third,) = receive_all(consumer, 1)
        assert third.headers[RELEASE_COUNT_HEADER] == "2"
        assert consumer.receive(timeout=1.0) is None
    with StompConsumer(cfg) as consumer:
        assert consumer.receive(timeout=1.0) is None


def test_acked_message_is_not_redelivered(stomp_queue: str) -> None:
    cfg = config(stomp_queue)
    with StompPublisher(cfg) as publisher:
        publisher.send(b"acked")
        publisher.send(b"not acked")
    with StompConsumer(cfg) as consumer:
        acked, unacked = receive_all(consumer, 2, ack=False)
        consumer.ack(acked)
    with StompConsumer(cfg) as consumer:
        (again,) = receive_all(consumer, 1)
        assert again.body == unacked.body == b"not acked"
        assert consumer.receive(timeout=1.0) is None


def test_thousand_messages_exactly_once(stomp_queue: str) -> None:
    cfg = config(stomp_queue, prefetch="50")
    count = 1000
    with StompPublisher(cfg) as publisher, StompConsumer(cfg) as consumer:
        for i in range(count):
            publisher.send(b"%06d" % i, {"seq": str(i)}, group=f"task.{i % 7}")
        got = receive_all(consumer, count, timeout=120)
        assert consumer.receive(timeout=1.0) is None
    bodies = [m.body for m in got]
    assert len(set(bodies)) == count
    assert sorted(bodies) == [b"%06d" % i for i in range(count)]
    assert all(m.headers["seq"] == str(int(m.body)) for m in got)
    assert not any(m.redelivered for m in got)
    with StompConsumer(cfg) as consumer:
        assert consumer.receive(timeout=1.0) is None


def test_receive_after_close_is_an_error(stomp_queue: str) -> None:
    consumer = StompConsumer(config(stomp_queue))
    consumer.close()
    consumer.close()  # idempotent
    with pytest.raises(TransportError, match="closed"):
        consumer.receive(timeout=0.1)


def test_close_wakes_a_blocked_receive(stomp_queue: str) -> None:
    consumer = StompConsumer(config(stomp_queue))
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


def test_broker_restart_mid_stream(private_broker: ActiveMQ, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventindex.transport.stomp")
    cfg = config(private_broker.stomp_url("restart"), prefetch="20", heartbeat="1000")
    before, during, after = range(0, 100), range(100, 150), range(150, 250)
    seen: list[bytes] = []
    with StompPublisher(cfg) as publisher, StompConsumer(cfg) as consumer:
        for i in before:
            publisher.send(b"%d" % i)
        held = receive_all(consumer, 10, ack=False)  # prefetch=20: the broker waits for acks after 20
        seen += [m.body for m in receive_all(consumer, 20)] + [m.body for m in held]

        # restart while a second publisher thread keeps sending: its sends ride out the outage
        errors: list[BaseException] = []

        def send_during() -> None:
            try:
                with StompPublisher(cfg) as other:
                    for i in during:
                        other.send(b"%d" % i)
                        time.sleep(0.02)
            except BaseException as exc:
                errors.append(exc)

        sender = threading.Thread(target=send_during)
        sender.start()
        time.sleep(0.3)
        private_broker.restart()
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


def test_frozen_broker_is_detected_by_heartbeats(private_broker: ActiveMQ) -> None:
    cfg = config(private_broker.stomp_url("frozen"), heartbeat="500", timeout="2")
    with StompPublisher(cfg) as publisher, StompConsumer(cfg, reconnect_deadline=60) as consumer:
        publisher.send(b"before")
        assert receive_all(consumer, 1)[0].body == b"before"
        pid = private_broker.pid
        assert pid is not None
        os.killpg(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            # receive must neither hang on the dead socket nor raise: it returns within its timeout
            while time.monotonic() - started < 4:
                assert consumer.receive(timeout=0.5) is None
                assert time.monotonic() - started < 10
        finally:
            os.killpg(pid, signal.SIGCONT)
        publisher.send(b"after")
        receive_until(consumer, b"after")


def test_consumer_gives_up_after_the_reconnect_deadline(private_broker: ActiveMQ) -> None:
    cfg = config(private_broker.stomp_url("gone"), heartbeat="500", timeout="2")
    with StompConsumer(cfg, reconnect_deadline=3.0) as consumer:
        assert consumer.receive(timeout=0.2) is None
        # The outage begins while the broker shuts down, so the deadline is
        # measured from before stop() and the upper bound from after it.
        stopping = time.monotonic()
        private_broker.stop()
        stopped = time.monotonic()
        with pytest.raises(BrokerConnectionError) as info:
            while time.monotonic() - stopped < 30:
                assert consumer.receive(timeout=0.5) is None
        given_up = time.monotonic()
    assert given_up - stopping >= 3.0
    assert given_up - stopped < 15
    assert "\n" not in str(info.value) and "unreachable" in str(info.value)


def test_publisher_on_a_dead_port_fails_fast_with_one_line() -> None:
    url = f"stomp://127.0.0.1:{free_port()}/queue/nobody"
    started = time.monotonic()
    with pytest.raises(BrokerConnectionError) as info:
        StompPublisher(config(url))
    elapsed = time.monotonic() - started
    assert elapsed < 10
    text = str(info.value)
    assert "\n" not in text
    assert "127.0.0.1" in text and "attempts" in text
    with pytest.raises(BrokerConnectionError):
        open_publisher(url)
    with pytest.raises(BrokerConnectionError):
        StompConsumer(config(url))


def test_failover_skips_a_dead_host(stomp_queue: str) -> None:
    cfg = config(stomp_queue)
    (host, port), dead = cfg.hosts[0], free_port()
    url = f"stomp://127.0.0.1:{dead},{host}:{port}/queue/{cfg.queue}"
    with StompPublisher(config(url)) as publisher:
        publisher.send(b"via the second host")
    with StompConsumer(config(url)) as consumer:
        assert receive_all(consumer, 1)[0].body == b"via the second host"
