from __future__ import annotations

import time
from pathlib import Path

import pytest

from eventindex.errors import ConfigError
from eventindex.transport import open_consumer, open_publisher
from eventindex.transport.embedded import EmbeddedQueue


def url(tmp_path: Path, **query: str) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"sqlite://{tmp_path / 'q.db'}" + (f"?{q}" if q else "")


def test_send_receive_ack_in_order(tmp_path: Path) -> None:
    with open_publisher(url(tmp_path)) as pub:
        for i in range(5):
            pub.send(bytes([i, 0, 255]), {"k": str(i)}, group="task")
    with open_consumer(url(tmp_path)) as con:
        got = []
        while (m := con.receive(0.1)) is not None:
            got.append(m)
            con.ack(m)
    assert [m.body for m in got] == [bytes([i, 0, 255]) for i in range(5)]
    assert got[0].headers == {"k": "0", "JMSXGroupID": "task"}
    assert not any(m.redelivered for m in got)
    assert EmbeddedQueue.from_url(url(tmp_path)).depth() == 0


def test_unacked_is_redelivered_after_close_and_release(tmp_path: Path) -> None:
    with open_publisher(url(tmp_path)) as pub:
        pub.send(b"a")
        pub.send(b"b")
    with open_consumer(url(tmp_path)) as con:
        a = con.receive(0.1)
        assert a is not None and a.body == b"a"
        b = con.receive(0.1)
        assert b is not None
        con.release(b)
        again = con.receive(0.1)
        assert again is not None and again.body == b"b" and again.redelivered
        assert con.receive(0.05) is None
    with open_consumer(url(tmp_path)) as con:
        first = con.receive(0.1)
        assert first is not None and first.body == b"a" and first.redelivered


def test_lease_expires(tmp_path: Path) -> None:
    with open_publisher(url(tmp_path)) as pub:
        pub.send(b"x")
    one = open_consumer(url(tmp_path, visibility="0.2"))
    two = open_consumer(url(tmp_path, visibility="0.2"))
    assert one.receive(0.1) is not None
    assert two.receive(0.05) is None
    time.sleep(0.25)
    m = two.receive(0.1)
    assert m is not None and m.redelivered
    two.ack(m)
    one.close()
    two.close()


@pytest.mark.parametrize(
    "bad",
    [
        "sqlite://relative/q.db",
        "sqlite:///q.db?queue=../x",
        "sqlite:///q.db?visibility=x",
        "sqlite:///q.db?nope=1",
        "redis://x",
        "sqlite://host/q.db",
    ],
)
def test_bad_urls(bad: str) -> None:
    with pytest.raises(ConfigError):
        open_consumer(bad)
