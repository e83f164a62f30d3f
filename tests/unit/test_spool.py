"""The pointer spool: durable appends, torn lines, safe and idempotent flushes, exit code 6 end to end."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from eventindex.errors import BrokerConnectionError, TransportError
from eventindex.transport import Publisher, open_consumer, open_publisher
from eventindex.transport.embedded import EmbeddedQueue
from eventindex.transport.failover import FailoverPublisher
from producer.spool import FlushResult, NotASpoolError, PointerSpool, SpoolingPublisher
from tests.faultstore import Fault, FaultyPublisher
from tests.helpers import Recorder

ROOT = Path(__file__).resolve().parents[2]


def fail_after(inner: Publisher, n: int) -> FaultyPublisher:
    """A real publisher whose connection is lost after `n` messages."""
    return FaultyPublisher(inner, Fault("send", "disconnected", after=n, message="connection lost (injected)"))


def drain(url: str) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    with open_consumer(url) as consumer:
        while (message := consumer.receive(0.2)) is not None:
            out.append((message.body, dict(message.headers)))
            consumer.ack(message)
    return out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_append_then_flush_sends_in_order_and_empties(tmp_path: Path) -> None:
    spool = PointerSpool(tmp_path / "p.spool")
    for i in range(5):
        spool.append(bytes([i, 0, 255]) * 10, {"ei-kind": "chunk", "n": str(i)}, group="task1")
    assert spool.pending() == 5
    broker = f"sqlite://{tmp_path / 'q.db'}"
    with open_publisher(broker) as pub:
        result = spool.flush(pub)
    assert (result.sent, result.skipped) == (5, 0)
    got = drain(broker)
    assert [body for body, _ in got] == [bytes([i, 0, 255]) * 10 for i in range(5)]
    assert got[0][1]["JMSXGroupID"] == "task1" and got[3][1]["n"] == "3"
    assert spool.pending() == 0 and (tmp_path / "p.spool").stat().st_size == 0
    with open_publisher(broker) as pub:
        assert spool.flush(pub).sent == 0, "re-running a flush is harmless"


def test_flushing_a_missing_spool_sends_nothing(tmp_path: Path) -> None:
    with open_publisher(f"sqlite://{tmp_path / 'q.db'}") as pub:
        assert PointerSpool(tmp_path / "none.spool").flush(pub).sent == 0


def test_a_torn_or_damaged_line_is_skipped_and_the_next_record_starts_clean(tmp_path: Path) -> None:
    path = tmp_path / "p.spool"
    spool = PointerSpool(path)
    spool.append(b"first", group="t")
    with path.open("ab") as handle:
        handle.write(b'{"v": 1, "body": "dG9ybg')  # a crash in the middle of an append
    spool.append(b"second", group="t")
    lines = path.read_bytes().splitlines()
    assert len(lines) == 3 and lines[1].startswith(b'{"v": 1')
    damaged = json.loads(lines[2])
    damaged["crc32"] += 1
    with path.open("ab") as handle:
        handle.write(json.dumps(damaged).encode() + b"\n")
    broker = f"sqlite://{tmp_path / 'q.db'}"
    with open_publisher(broker) as pub:
        result = spool.flush(pub)
    assert (result.sent, result.skipped) == (2, 2)
    assert [body for body, _ in drain(broker)] == [b"first", b"second"]
    # the damaged lines are kept beside the spool, not thrown away
    kept = spool.damaged_path.read_bytes().splitlines()
    assert kept == [b'{"v": 1, "body": "dG9ybg', json.dumps(damaged).encode()]
    assert path.read_bytes() == b""


def test_a_file_that_is_not_a_spool_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"line one\nline two\n")
    with open_publisher(f"sqlite://{tmp_path / 'q.db'}") as pub, pytest.raises(NotASpoolError, match="none of its 2"):
        PointerSpool(path).flush(pub)
    assert path.read_bytes() == b"line one\nline two\n"
    assert not PointerSpool(path).damaged_path.exists()


def test_flushing_a_missing_spool_creates_nothing(tmp_path: Path) -> None:
    spool = PointerSpool(tmp_path / "typo" / "p.spool")
    with open_publisher(f"sqlite://{tmp_path / 'q.db'}") as pub:
        assert spool.flush(pub) == FlushResult(0, 0)
    assert spool.pending() == 0
    assert not (tmp_path / "typo").exists()


def test_a_flush_that_fails_part_way_keeps_exactly_what_was_not_sent(tmp_path: Path) -> None:
    spool = PointerSpool(tmp_path / "p.spool")
    for i in range(6):
        spool.append(f"m{i}".encode(), group="t")
    broker = f"sqlite://{tmp_path / 'q.db'}"
    with fail_after(open_publisher(broker), 2) as pub, pytest.raises(BrokerConnectionError, match="2 sent, 4 kept"):
        spool.flush(pub)
    assert spool.pending() == 4
    with open_publisher(broker) as pub:
        assert spool.flush(pub).sent == 4
    assert [body for body, _ in drain(broker)] == [f"m{i}".encode() for i in range(6)]


def test_concurrent_appenders_never_interleave(tmp_path: Path) -> None:
    spool = PointerSpool(tmp_path / "p.spool")

    def writer(n: int) -> None:
        for i in range(50):
            spool.append(f"{n}:{i}".encode() * 50, {"w": str(n)}, group="t")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    broker = f"sqlite://{tmp_path / 'q.db'}"
    with open_publisher(broker) as pub:
        result = spool.flush(pub)
    assert (result.sent, result.skipped) == (200, 0)
    assert EmbeddedQueue.from_url(broker).depth() == 200


def test_spooling_publisher_switches_once_and_stays_spooling(tmp_path: Path) -> None:
    broker = f"sqlite://{tmp_path / 'q.db'}"
    spool = PointerSpool(tmp_path / "p.spool")
    pub = SpoolingPublisher(fail_after(open_publisher(broker), 2), spool)
    for i in range(5):
        pub.send(f"p{i}".encode(), {"k": "v"}, group="t")
    pub.close()
    assert pub.spooled == 3 and pub.reason is not None and "injected" in pub.reason
    assert spool.pending() == 3
    assert [body for body, _ in drain(broker)] == [b"p0", b"p1"]


def test_a_refusing_broker_is_an_error_not_a_spool(tmp_path: Path) -> None:
    refuses = FaultyPublisher(Recorder(), Fault("send", "refused", message="broker refused SEND: not authorized"))
    pub = SpoolingPublisher(refuses, PointerSpool(tmp_path / "p.spool"))
    with pytest.raises(TransportError, match="not authorized"):
        pub.send(b"x")
    assert pub.spooled == 0


def test_spooling_through_an_unreachable_stomp_broker(tmp_path: Path) -> None:
    spool = PointerSpool(tmp_path / "p.spool")
    pub = SpoolingPublisher(FailoverPublisher([f"stomp://127.0.0.1:{closed_port()}/queue/q"]), spool)
    with pub:
        pub.send(b"a", group="t")
        pub.send(b"b", group="t")  # sticky: no second round of connection attempts
    assert pub.spooled == 2 and pub.reason is not None and "cannot connect" in pub.reason


# ------------------------------------------------------------------------------ the CLI, end to end
