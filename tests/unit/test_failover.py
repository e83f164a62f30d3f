"""Failover over several brokers: order, stickiness, rotation, bounded passes, the error that ends it."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from eventindex.errors import BrokerConnectionError, ConfigError, TransportError
from eventindex.transport import Publisher, open_publisher
from eventindex.transport.embedded import EmbeddedQueue
from eventindex.transport.failover import FAILOVER_PASSES, FailoverPublisher
from eventindex.transport.schemes import check_broker_url, redacted
from tests.faultstore import Fault, FaultyPublisher


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Opener:
    """Opens the real publisher of a URL, except for the URLs marked down (as if unreachable)."""

    def __init__(self, down: set[str] | None = None, refuse: set[str] | None = None) -> None:
        self.down = down or set()
        self.refuse = refuse or set()
        self.opened: list[str] = []

    def __call__(self, url: str) -> Publisher:
        self.opened.append(url)
        if url in self.down:
            raise BrokerConnectionError(f"cannot connect to {url} (injected)")
        if url in self.refuse:
            raise TransportError(f"{url} refused the connection: bad credentials (injected)")
        # the real publisher, whose sends fail as on a lost connection while the test has its broker down
        lost = Fault(
            "send", "disconnected", message=f"connection to {url} lost (injected)", when=lambda: url in self.down
        )
        return FaultyPublisher(open_publisher(url), lost)


def queue(tmp_path: Path, name: str) -> str:
    return f"sqlite://{tmp_path / name}.db"


def depth(url: str) -> int:
    return EmbeddedQueue.from_url(url).depth()


def test_the_first_reachable_broker_takes_everything(tmp_path: Path) -> None:
    a, b, c = (queue(tmp_path, n) for n in "abc")
    opener = Opener(down={a})
    with FailoverPublisher([a, b, c], opener) as pub:
        for i in range(5):
            pub.send(f"m{i}".encode(), group="t")
        assert pub.current_url == redacted(b)
    assert opener.opened == [a, b], "b is kept once it works: no reconnection per message"
    assert (depth(b), depth(c)) == (5, 0)


def test_a_failing_broker_is_left_for_the_next_in_rotation(tmp_path: Path) -> None:
    a, b = queue(tmp_path, "a"), queue(tmp_path, "b")
    opener = Opener()
    with FailoverPublisher([a, b], opener) as pub:
        pub.send(b"1")
        opener.down.add(a)
        pub.send(b"2")
        opener.down = {b}
        pub.send(b"3")  # wraps around to a
    assert opener.opened == [a, b, a]
    assert (depth(a), depth(b)) == (2, 1)


def test_every_broker_down_is_a_connection_error_after_bounded_passes(tmp_path: Path) -> None:
    a, b = queue(tmp_path, "a"), queue(tmp_path, "b")
    opener = Opener(down={a, b})
    pub = FailoverPublisher([a, b], opener)
    started = time.monotonic()
    with pytest.raises(BrokerConnectionError) as caught:
        pub.send(b"x")
    assert len(opener.opened) == 2 * FAILOVER_PASSES
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "no broker reachable (2 tried)" in message and "a.db" in message and "b.db" in message
    assert "\n" not in message


def test_a_refusal_somewhere_is_not_reported_as_unreachable(tmp_path: Path) -> None:
    a, b = queue(tmp_path, "a"), queue(tmp_path, "b")
    with pytest.raises(TransportError) as caught:
        FailoverPublisher([a, b], Opener(down={a}, refuse={b})).send(b"x")
    assert not isinstance(caught.value, BrokerConnectionError)
    assert "bad credentials" in str(caught.value)


def test_one_url_means_one_pass_the_adapter_retries_itself(tmp_path: Path) -> None:
    a = queue(tmp_path, "a")
    opener = Opener(down={a})
    with pytest.raises(BrokerConnectionError):
        FailoverPublisher([a], opener).send(b"x")
    assert opener.opened == [a]


def test_the_stop_event_cuts_the_wait_between_passes(tmp_path: Path) -> None:
    a, b = queue(tmp_path, "a"), queue(tmp_path, "b")
    stop = threading.Event()
    stop.set()
    opener = Opener(down={a, b})
    with pytest.raises(BrokerConnectionError):
        FailoverPublisher([a, b], opener, passes=5, stop=stop).send(b"x")
    assert len(opener.opened) == 1


def test_a_real_dead_stomp_broker_fails_over_to_the_embedded_queue(tmp_path: Path) -> None:
    dead = f"stomp://127.0.0.1:{closed_port()}/queue/q?heartbeat=1000"
    alive = queue(tmp_path, "alive")
    with FailoverPublisher([dead, alive]) as pub:
        pub.send(b"x", {"ei-kind": "chunk"}, group="t")
        pub.send_batch([(b"y", {}), (b"z", {})], group="t")
    assert depth(alive) == 3


def test_urls_are_checked_before_any_connection(tmp_path: Path) -> None:
    ok = queue(tmp_path, "a")
    with pytest.raises(ConfigError, match="scheme"):
        FailoverPublisher([ok, "http://example.org/q"])
    with pytest.raises(ConfigError, match="twice"):
        FailoverPublisher([ok, ok])
    with pytest.raises(ConfigError, match="at least one"):
        FailoverPublisher([])
    with pytest.raises(ConfigError, match="ca= file"):
        check_broker_url(f"stomp+ssl://127.0.0.1:61614/queue/q?ca={tmp_path / 'missing.pem'}")
    with pytest.raises(ConfigError, match="credentials"):
        check_broker_url("stomp://user:secret@127.0.0.1/queue/q")
    assert redacted("stomp+ssl://u:pw@h:1/queue/q?ca=/x") == "stomp+ssl://h:1/queue/q"
    assert not list(tmp_path.iterdir()), "nothing was opened"


def test_a_closed_publisher_refuses_to_send(tmp_path: Path) -> None:
    pub = FailoverPublisher([queue(tmp_path, "a")])
    pub.send(b"x")
    pub.close()
    with pytest.raises(TransportError, match="closed"):
        pub.send(b"y")
