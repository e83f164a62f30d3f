"""`stomp://` / `stomp+ssl://` broker URLs: parsing and validation (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventindex.errors import ConfigError, TransportError
from eventindex.transport.config import DEFAULT_PREFETCH, DEFAULT_TIMEOUT
from eventindex.transport.stomp import (
    DEFAULT_HEARTBEAT_MS,
    DEFAULT_PORT,
    DEFAULT_TLS_PORT,
    GROUP_HEADER,
    StompConfig,
    _send_headers,
)

NO_ENV: dict[str, str] = {}


def parse(url: str, env: dict[str, str] | None = None) -> StompConfig:
    return StompConfig.from_url(url, env=NO_ENV if env is None else env)


def test_minimal_url_and_defaults() -> None:
    cfg = parse("stomp://127.0.0.1:61613/queue/eventindex")
    assert cfg.hosts == (("127.0.0.1", 61613),)
    assert cfg.queue == "eventindex"
    assert cfg.destination == "/queue/eventindex"
    assert not cfg.tls
    assert cfg.vhost is None
    assert cfg.heartbeat_ms == DEFAULT_HEARTBEAT_MS
    assert cfg.prefetch == DEFAULT_PREFETCH
    assert cfg.timeout == DEFAULT_TIMEOUT
    assert (cfg.username, cfg.password) == (None, None)
    assert (cfg.ca, cfg.cert, cfg.key) == (None, None, None)
    assert cfg.address == "stomp://127.0.0.1:61613/queue/eventindex"


def test_failover_hosts_keep_their_order() -> None:
    cfg = parse("stomp://mq2.example.org:61613,mq1.example.org:61000,localhost/queue/ei.pointers-v1_x")
    assert cfg.hosts == (("mq2.example.org", 61613), ("mq1.example.org", 61000), ("localhost", DEFAULT_PORT))
    assert cfg.queue == "ei.pointers-v1_x"
    assert cfg.address == "stomp://mq2.example.org:61613,mq1.example.org:61000,localhost:61613/queue/ei.pointers-v1_x"


def test_ipv6_host_in_brackets() -> None:
    cfg = parse("stomp://[::1]:61613,[fe80::1]/queue/q")
    assert cfg.hosts == (("::1", 61613), ("fe80::1", DEFAULT_PORT))
    assert cfg.address == "stomp://[::1]:61613,[fe80::1]:61613/queue/q"


def test_ssl_with_certificates() -> None:
    cfg = parse("stomp+ssl://mq.example.org/queue/q?ca=/etc/ca.pem&cert=/etc/me.pem&key=/etc/me.key")
    assert cfg.tls
    assert cfg.hosts == (("mq.example.org", DEFAULT_TLS_PORT),)
    assert (cfg.ca, cfg.cert, cfg.key) == (Path("/etc/ca.pem"), Path("/etc/me.pem"), Path("/etc/me.key"))
    assert cfg.address.startswith("stomp+ssl://")


def test_options() -> None:
    cfg = parse("stomp://h:1/queue/q?vhost=/&heartbeat=2500&prefetch=7&timeout=1.5")
    assert (cfg.vhost, cfg.heartbeat_ms, cfg.prefetch, cfg.timeout) == ("/", 2500, 7, 1.5)


@pytest.mark.parametrize(
    "url",
    [
        "stomp://h:61613/temp-queue/q",
        "stomp://h:61613/topic/",
        "stomp://h:61613/queue/",
        "stomp://h:61613/queue",
        "stomp://h:61613/",
        "stomp://h:61613",
        "stomp://h:61613/queue/a/b",
        "stomp://h:61613/queue/a b",
        "stomp://h:61613/queue/a%2Fb",
        "stomp://h:61613/queue/na;me",
        "stomp://h:61613/queue/évent",
        "stomp://h:61613//queue/q",
        "stomp://h:61613/queue/" + "q" * 201,
    ],
)
def test_bad_destinations(url: str) -> None:
    with pytest.raises(ConfigError, match="queue"):
        parse(url)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("amqp://h:5672/queue/q", "scheme"),
        ("stomps://h:5672/queue/q", "scheme"),
        ("sqlite:///tmp/q.db", "scheme"),
        ("stomp:///queue/q", "empty host"),
        ("stomp://h1:1,,h2:2/queue/q", "empty host"),
        ("stomp://:61613/queue/q", "empty host"),
        ("stomp://h:port/queue/q", "port"),
        ("stomp://h:/queue/q", "port"),
        ("stomp://h:0/queue/q", "out of range"),
        ("stomp://h:65536/queue/q", "out of range"),
        ("stomp://h:1234567/queue/q", "port"),
        ("stomp://::1:61613/queue/q", "brackets"),
        ("stomp://[::1/queue/q", "malformed"),
        ("stomp://[::1]x/queue/q", "bad host"),
        ("stomp://[nothex]:1/queue/q", "malformed"),
        ("stomp://h_1:1/queue/q", "invalid host"),
        ("stomp://h:1,h:1/queue/q", "twice"),
        ("stomp://h:1/queue/q#frag", "fragment"),
        ("stomp://h:1/queue/q?color=red", "unknown parameter 'color'"),
        ("stomp://h:1/queue/q?prefetch=1&prefetch=2", "twice"),
        ("stomp://h:1/queue/q?prefetch=many", "prefetch= must be a number"),
        ("stomp://h:1/queue/q?prefetch=0", "prefetch"),
        ("stomp://h:1/queue/q?prefetch=70000", "prefetch"),
        ("stomp://h:1/queue/q?heartbeat=0", "heartbeat"),
        ("stomp://h:1/queue/q?heartbeat=1.5", "heartbeat= must be a number"),
        ("stomp://h:1/queue/q?timeout=0", "timeout"),
        ("stomp://h:1/queue/q?timeout=nan", "timeout"),
        ("stomp://h:1/queue/q?timeout=inf", "timeout"),
        ("stomp://h:1/queue/q?vhost=", "vhost"),
        ("stomp://h:1/queue/q?ca=/etc/ca.pem", "stomp\\+ssl"),
        ("stomp+ssl://h:1/queue/q?key=/etc/me.key", "key= needs cert="),
        ("stomp+ssl://h:1/queue/q?ca=", "ca= is empty"),
    ],
)
def test_bad_urls(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        parse(url)
    assert "\n" not in str(info.value)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError, match="at least one host"):
        StompConfig(hosts=(), queue="q")
    with pytest.raises(ConfigError, match="queue name"):
        StompConfig(hosts=(("h", 1),), queue="a/b")
    with pytest.raises(ConfigError, match="vhost"):
        StompConfig(hosts=(("h", 1),), queue="q", vhost="a\nb")
    cfg = StompConfig(hosts=(("h", 1),), queue="q")
    with pytest.raises(AttributeError):
        cfg.queue = "other"  # type: ignore[misc]


def test_send_headers() -> None:
    headers = _send_headers(b"\x00\x01", {"ei-kind": "chunk", "content-type": "application/x-ei"}, "task.1")
    assert headers == {
        "persistent": "true",
        "content-type": "application/x-ei",
        "ei-kind": "chunk",
        "JMSXGroupID": "task.1",
        GROUP_HEADER: "task.1",
        "content-length": "2",
    }
    assert _send_headers(b"", None, None) == {
        "persistent": "true",
        "content-type": "application/octet-stream",
        "content-length": "0",
    }


@pytest.mark.parametrize(
    "headers",
    [{"destination": "/queue/other"}, {"receipt": "x"}, {"persistent": "false"}, {"content-length": "3"},
     {GROUP_HEADER: "g"}, {"a:b": "v"}, {"": "v"}, {"k": "nul\0"}],
)  # fmt: skip
def test_send_headers_rejects_reserved_or_unsendable(headers: dict[str, str]) -> None:
    with pytest.raises(TransportError):
        _send_headers(b"x", headers, None)


def test_topic_destination() -> None:
    """`/topic/NAME` (commit notifications): every subscriber gets each message."""
    config = StompConfig.from_url("stomp://h:61613/topic/ei.commits")
    assert (config.kind, config.queue, config.destination) == ("topic", "ei.commits", "/topic/ei.commits")
    assert config.address == "stomp://h:61613/topic/ei.commits"
    assert StompConfig.from_url("stomp://h:61613/queue/q").destination == "/queue/q"
    with pytest.raises(ConfigError, match="exchange= is for amqp"):
        StompConfig.from_url("stomp://h:61613/topic/t?exchange=x")
