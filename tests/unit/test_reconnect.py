"""The shared connection loops (eventindex.transport.reconnect) on fake connections.

The STOMP and AMQP consumers and publishers run them against real brokers in tests/integration;
here each rule is pinned down alone: bounded connect attempts, one connection at a time,
deliveries dropped on a loss, backoff inside the caller's deadline, the outage budget, errors
that are not worth another attempt, a send retried on a new connection, and `close` cutting a
wait short.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from eventindex.errors import BrokerConnectionError, ConfigError, TransportError
from eventindex.transport import reconnect
from eventindex.transport.base import Message
from eventindex.transport.config import BrokerConfig
from eventindex.transport.reconnect import (
    SEND_ATTEMPTS,
    LinkLost,
    ReconnectingConsumer,
    ReconnectingPublisher,
    Reconnector,
    connect,
)


class FakeLink:
    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.lost: str | None = None
        self.lost_at: float | None = None
        self.aborted = False
        self.closed = False
        #: bodies the broker confirmed on this connection
        self.confirmed: list[bytes] = []

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True

    def lose(self, reason: str = "connection reset") -> None:
        self.lost, self.lost_at = reason, time.monotonic()


class Opener:
    """Opens fake links; the first `failures` attempts raise `error`; the first `unconfirmed` sends drop
    their connection instead of being confirmed."""

    def __init__(self, failures: int = 0, error: Exception | None = None, unconfirmed: int = 0) -> None:
        self.failures = failures
        self.error = error or LinkLost("connection refused")
        self.unconfirmed = unconfirmed
        self.opened: list[FakeLink] = []
        self.attempts = 0
        self.sends = 0
        #: set when a send was not confirmed (a test may then close the publisher)
        self.failed_send = threading.Event()

    def send(self, link: FakeLink, body: bytes) -> None:
        self.sends += 1
        if self.sends <= self.unconfirmed:
            link.lose("no receipt")
            self.failed_send.set()
            raise LinkLost(f"no receipt on connection {link.generation}")
        link.confirmed.append(body)

    def __call__(self, generation: int) -> FakeLink:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        link = FakeLink(generation)
        self.opened.append(link)
        return link


def reconnector(opener: Opener, deadline: float = 60.0, dropped: int = 0) -> tuple[Reconnector[FakeLink], FakeLink]:
    first = FakeLink(1)
    conn = Reconnector(
        protocol="TEST", address="test://x", first=first, open_link=opener, drop_deliveries=lambda: dropped,
        stop=threading.Event(), reconnect_deadline=deadline,
    )  # fmt: skip
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
    conn = Reconnector(
        protocol="TEST", address="test://x", first=first, open_link=opener, drop_deliveries=lambda: 0, stop=stop,
        reconnect_deadline=60.0,
    )  # fmt: skip
    first.lose()
    stop.set()
    assert conn.usable(time.monotonic() + 1) is None
    assert opener.attempts == 0
    assert conn.take() is first and conn.link is None


# ------------------------------------------------------------------------------------------- connect
def open_with(opener: Opener, attempts: int, stop: threading.Event | None = None) -> FakeLink:
    return connect(
        opener, generation=7, attempts=attempts, stop=stop or threading.Event(), protocol="TEST", address="test://x",
        logger=logging.getLogger("test"),
    )  # fmt: skip


def test_connect_retries_until_a_connection_opens() -> None:
    opener = Opener(failures=2)
    link = open_with(opener, attempts=5)
    assert opener.attempts == 3 and link is opener.opened[0] and link.generation == 7


def test_connect_gives_up_after_its_attempts_with_one_line() -> None:
    opener = Opener(failures=10**6)
    started = time.monotonic()
    with pytest.raises(BrokerConnectionError) as info:
        open_with(opener, attempts=3)
    assert opener.attempts == 3
    assert time.monotonic() - started < 5, "backoff 0.2 s, then 0.4 s at most"
    assert str(info.value) == "cannot connect to TEST broker test://x (3 attempts): connection refused"


def test_connect_stops_at_once_when_the_stop_event_is_set() -> None:
    opener = Opener(failures=10**6)
    stop = threading.Event()
    stop.set()
    with pytest.raises(BrokerConnectionError, match=r"\(1 attempts\)"):
        open_with(opener, attempts=5, stop=stop)
    assert opener.attempts == 1


def test_connect_passes_an_error_not_worth_retrying_through() -> None:
    opener = Opener(failures=1, error=TransportError("access refused"))
    with pytest.raises(TransportError, match="access refused"):
        open_with(opener, attempts=5)
    assert opener.attempts == 1


# ----------------------------------------------------------------------------------------- publisher
@dataclass(frozen=True)
class FakeConfig(BrokerConfig):
    protocol: ClassVar[str] = "TEST"
    tls_url: ClassVar[str] = "a test+tls:// URL"

    @property
    def address(self) -> str:
        return "test://x"


class FakePublisher(ReconnectingPublisher[FakeConfig, FakeLink]):
    def __init__(self, opener: Opener, config: FakeConfig | None = None, *, exclusive: bool = True) -> None:
        self.opener = opener
        super().__init__(config or FakeConfig(), exclusive=exclusive, logger=logging.getLogger("test"))

    def _open_link(self, generation: int) -> FakeLink:
        return self.opener(generation)

    def send(self, body: bytes, headers: Mapping[str, str] | None = None, group: str | None = None) -> None:
        self._confirmed(lambda link: self.opener.send(link, body), "a message")


def test_a_publisher_checks_its_tls_files_before_connecting(tmp_path: Path) -> None:
    opener = Opener()
    with pytest.raises(ConfigError, match=r"TEST broker: ca= file .*missing\.pem does not exist"):
        FakePublisher(opener, FakeConfig(tls=True, ca=tmp_path / "missing.pem"))
    assert opener.attempts == 0


def test_an_unconfirmed_send_is_sent_again_on_a_new_connection() -> None:
    opener = Opener(unconfirmed=1)
    with FakePublisher(opener) as publisher:
        publisher.send(b"m")
    first, second = opener.opened
    assert first.aborted and first.confirmed == []
    assert second.generation == 2 and second.confirmed == [b"m"] and second.closed


def test_a_send_never_confirmed_fails_after_its_attempts() -> None:
    opener = Opener(unconfirmed=10**6)
    publisher = FakePublisher(opener)
    with pytest.raises(BrokerConnectionError) as info:
        publisher.send(b"m")
    assert opener.sends == SEND_ATTEMPTS and len(opener.opened) == SEND_ATTEMPTS
    assert str(info.value).startswith(f"TEST broker test://x did not confirm a message in {SEND_ATTEMPTS} attempts")
    publisher.close()
    with pytest.raises(TransportError, match="TEST publisher for test://x is closed"):
        publisher.send(b"m")


@pytest.mark.parametrize("exclusive", [True, False])
def test_close_cuts_the_wait_between_send_attempts_short(exclusive: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconnect, "compute_backoff", lambda *args: 60.0)  # a minute's wait after the failed send
    opener = Opener(unconfirmed=10**6)
    publisher = FakePublisher(opener, exclusive=exclusive)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            publisher.send(b"m")
        except TransportError as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    assert opener.failed_send.wait(5)
    started = time.monotonic()
    publisher.close()
    sender.join(5)
    assert not sender.is_alive() and time.monotonic() - started < 2
    assert [str(e) for e in errors] == ["TEST publisher for test://x is closed"]
    assert opener.sends == 1


# ------------------------------------------------------------------------------------------ consumer
class FakeConsumer(ReconnectingConsumer[FakeConfig, FakeLink]):
    """Deliveries are (generation, body) in a queue, as a client library's thread would put them."""

    def __init__(self, opener: Opener) -> None:
        self.opener = opener
        self.inbox: queue.Queue[tuple[int, bytes | None]] = queue.Queue()
        super().__init__(FakeConfig(), reconnect_deadline=60.0, logger=logging.getLogger("test"))

    def _open_link(self, generation: int) -> FakeLink:
        return self.opener(generation)

    def _take(self, link: FakeLink, deadline: float) -> Message | None:
        try:
            generation, body = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if body is None or generation != link.generation:
            return None
        return Message(body, handle=f"{generation}/1")

    def _drain(self) -> int:
        dropped = self.inbox.qsize()
        self.inbox = queue.Queue()
        return dropped

    def ack(self, message: Message) -> None:
        """Not used here: each protocol's ack is tested against its broker."""

    def release(self, message: Message) -> None:
        """Not used here."""

    def close(self) -> None:
        self.inbox.put((-1, None))  # wakes a receive blocked on the queue
        super().close()


def test_a_consumer_receives_from_its_live_connection_until_the_deadline() -> None:
    opener = Opener()
    consumer = FakeConsumer(opener)
    consumer.inbox.put((1, b"m"))
    message = consumer.receive(timeout=1)
    assert message is not None and (message.body, message.handle) == (b"m", "1/1")
    started = time.monotonic()
    assert consumer.receive(timeout=0.2) is None
    assert 0.2 <= time.monotonic() - started < 2
    consumer.close()
    assert opener.opened[0].closed


def test_a_consumer_drops_what_a_lost_connection_prefetched_and_reconnects() -> None:
    opener = Opener()
    consumer = FakeConsumer(opener)
    consumer.inbox.put((1, b"prefetched"))
    first = opener.opened[0]
    first.lose()
    consumer.inbox.put((1, b"late"))
    assert consumer.receive(timeout=0.5) is None, "what connection 1 delivered is the broker's to redeliver"
    second = opener.opened[1]
    assert first.aborted and second.generation == 2
    consumer.inbox.put((2, b"again"))
    message = consumer.receive(timeout=1)
    assert message is not None and message.body == b"again"
    assert consumer._conn.link_of(1, "ack") is None and consumer._conn.link_of(2, "ack") is second
    consumer.close()


def test_close_ends_a_blocked_receive_and_a_later_receive_is_an_error() -> None:
    consumer = FakeConsumer(Opener())
    result: list[Message | None] = []
    receiver = threading.Thread(target=lambda: result.append(consumer.receive(timeout=30)))
    receiver.start()
    time.sleep(0.2)
    started = time.monotonic()
    consumer.close()
    receiver.join(5)
    assert not receiver.is_alive() and result == [None] and time.monotonic() - started < 2
    consumer.close()  # idempotent
    with pytest.raises(TransportError, match="TEST consumer for test://x is closed"):
        consumer.receive(timeout=0.1)


def test_connect_keeps_trying_for_its_least_time_whatever_the_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """A publisher's reconnect lasts at least RECONNECT_SECONDS, not however long its attempts' random waits add
    up to: 10 attempts with full jitter can be over in a few seconds, before a restarted broker is back."""
    monkeypatch.setattr(reconnect, "compute_backoff", lambda attempt, base, cap: 0.01)
    tried: list[int] = []

    def refuse(generation: int) -> FakeLink:
        tried.append(generation)
        raise reconnect.LinkLost("refused")

    started = time.monotonic()
    with pytest.raises(BrokerConnectionError, match="refused"):
        reconnect.connect(refuse, generation=2, attempts=3, stop=threading.Event(), protocol="STOMP", address="a",
                          logger=logging.getLogger("test"), min_seconds=0.3)  # fmt: skip
    assert time.monotonic() - started >= 0.3 and len(tried) > 3
    tried.clear()
    with pytest.raises(BrokerConnectionError):
        reconnect.connect(refuse, generation=2, attempts=3, stop=threading.Event(), protocol="STOMP", address="a",
                          logger=logging.getLogger("test"))  # fmt: skip
    assert len(tried) == 3  # without a least time: the attempts alone
