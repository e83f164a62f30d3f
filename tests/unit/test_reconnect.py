"""The consumers' reconnector (eventindex.transport.reconnect) on fake connections.

The STOMP and AMQP consumers run it against real brokers in tests/integration; here each rule
is pinned down alone: one connection at a time, deliveries dropped on a loss, backoff inside the
caller's deadline, the outage budget, and errors that are not worth another attempt.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from eventindex.errors import BrokerConnectionError, TransportError
from eventindex.transport.reconnect import Reconnector


class Lost(BrokerConnectionError):
    """A connection attempt that failed in a way worth retrying."""


class FakeLink:
    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.lost: str | None = None
        self.lost_at: float | None = None
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True

    def lose(self, reason: str = "connection reset") -> None:
        self.lost, self.lost_at = reason, time.monotonic()


class Opener:
    """Opens fake links; the first `failures` attempts raise `error`."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or Lost("connection refused")
        self.opened: list[FakeLink] = []
        self.attempts = 0

    def __call__(self, generation: int) -> FakeLink:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        link = FakeLink(generation)
        self.opened.append(link)
        return link


def reconnector(opener: Opener, deadline: float = 60.0, dropped: int = 0) -> tuple[Reconnector[FakeLink], FakeLink]:
    first = FakeLink(1)
    conn = Reconnector("TEST", "test://x", first, opener, lambda: dropped, threading.Event(), deadline, Lost)
    return conn, first


def test_a_live_connection_is_returned_as_it_is() -> None:
    opener = Opener()
    conn, first = reconnector(opener)
    assert conn.usable(time.monotonic() + 1) is first
    assert opener.attempts == 0


def test_a_lost_connection_is_aborted_and_replaced_once(caplog: pytest.LogCaptureFixture) -> None:
    opener = Opener()
    conn, first = reconnector(opener, dropped=3)
    first.lose()
    with caplog.at_level(logging.INFO, logger="eventindex.transport.reconnect"):
        link = conn.usable(time.monotonic() + 1)
    assert first.aborted
    assert link is opener.opened[0] and link.generation == 2 == conn.generation
    assert opener.attempts == 1, "one new connection, no storm"
    assert "TEST connection 1 to test://x lost (connection reset); 3 unacked" in caplog.text
    assert "reconnected" in caplog.text
    assert conn.usable(time.monotonic() + 1) is link


def test_failed_attempts_back_off_within_the_callers_deadline() -> None:
    opener = Opener(failures=3)
    conn, first = reconnector(opener)
    first.lose()
    started = time.monotonic()
    assert conn.usable(time.monotonic() + 0.05) is None, "the caller's timeout comes before the next attempt"
    assert time.monotonic() - started < 1
    link = None
    while link is None and time.monotonic() - started < 20:
        link = conn.usable(time.monotonic() + 0.5)
    assert link is not None
    assert opener.attempts == 4 and link.generation == 5
    assert time.monotonic() - started < 10, "backoff is capped"


def test_an_outage_past_the_deadline_raises_once_then_starts_a_new_budget() -> None:
    opener = Opener(failures=10**6)
    conn, first = reconnector(opener, deadline=0.3)
    first.lose("broker gone")
    with pytest.raises(BrokerConnectionError) as info:
        while True:
            conn.usable(time.monotonic() + 0.2)
    text = str(info.value)
    assert text.startswith("TEST broker test://x unreachable for ") and "connection refused" in text
    assert "\n" not in text
    assert conn.usable(time.monotonic() + 0.05) is None, "a new budget: no error straight away"


def test_an_error_not_worth_retrying_goes_to_the_caller() -> None:
    opener = Opener(failures=1, error=TransportError("subscription refused"))
    conn, first = reconnector(opener)
    first.lose()
    with pytest.raises(TransportError, match="subscription refused"):
        conn.usable(time.monotonic() + 1)


def test_a_stopped_consumer_gets_no_connection() -> None:
    opener = Opener()
    stop = threading.Event()
    first = FakeLink(1)
    conn = Reconnector("TEST", "test://x", first, opener, lambda: 0, stop, 60.0, Lost)
    first.lose()
    stop.set()
    assert conn.usable(time.monotonic() + 1) is None
    assert opener.attempts == 0
    assert conn.take() is first and conn.link is None
