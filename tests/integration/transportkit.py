"""Receiving helpers shared by the STOMP and AMQP transport tests."""

from __future__ import annotations

import time

from eventindex.transport import Consumer
from eventindex.transport.base import Message


def receive_all(consumer: Consumer, count: int, timeout: float = 30.0, ack: bool = True) -> list[Message]:
    """Exactly `count` messages within `timeout` seconds (acked unless ack=False)."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        message = consumer.receive(timeout=1.0)
        if message is not None:
            got.append(message)
            if ack:
                consumer.ack(message)
    assert len(got) == count, f"received {len(got)} of {count}"
    return got


def receive_until(consumer: Consumer, body: bytes, timeout: float = 60.0) -> list[bytes]:
    """Receive and ack until a message with `body` arrives; return every body received, in order.

    After a lost connection, messages acked just before the loss may be redelivered first
    (at-least-once), so a test that waits for one new message must not stop at the first.
    """
    seen: list[bytes] = []
    deadline = time.monotonic() + timeout
    while body not in seen and time.monotonic() < deadline:
        message = consumer.receive(timeout=1.0)
        if message is not None:
            seen.append(message.body)
            consumer.ack(message)
    assert body in seen, f"{body!r} not received in {timeout:.0f} s; got {seen[:5]!r}"
    return seen
