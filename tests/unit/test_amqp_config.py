"""`amqp://` / `amqps://` broker URLs: parsing and validation, message properties (no broker needed)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from eventindex.errors import ConfigError, TransportError
from eventindex.transport import open_consumer, open_publisher
from eventindex.transport.amqp import (
    DEFAULT_HEARTBEAT,
    DEFAULT_PORT,
    DEFAULT_QUEUE,
    DEFAULT_TLS_PORT,
    AmqpConfig,
    AmqpConsumer,
    AmqpPublisher,
    _connection_parameters,
    _Link,
    properties_for,
)
from eventindex.transport.base import Message
from eventindex.transport.config import DEFAULT_PREFETCH, DEFAULT_TIMEOUT
from eventindex.transport.reconnect import Reconnector

NO_ENV: dict[str, str] = {}


def parse(url: str, env: dict[str, str] | None = None) -> AmqpConfig:
    return AmqpConfig.from_url(url, env=NO_ENV if env is None else env)


def test_minimal_url_and_defaults() -> None:
    cfg = parse("amqp://127.0.0.1:5673/eventindex.pointers")
    assert (cfg.host, cfg.port, cfg.queue) == ("127.0.0.1", 5673, "eventindex.pointers")
    assert not cfg.tls
    assert cfg.vhost == "/"
    assert (cfg.heartbeat, cfg.prefetch, cfg.timeout) == (DEFAULT_HEARTBEAT, DEFAULT_PREFETCH, DEFAULT_TIMEOUT)
    assert (cfg.username, cfg.password) == (None, None)
    assert (cfg.ca, cfg.cert, cfg.key) == (None, None, None)
    assert cfg.address == "amqp://127.0.0.1:5673/eventindex.pointers"


@pytest.mark.parametrize("url", ["amqp://mq.example.org", "amqp://mq.example.org/", "amqp://mq.example.org:5672/"])
def test_default_port_and_queue(url: str) -> None:
    cfg = parse(url)
    assert (cfg.host, cfg.port, cfg.queue) == ("mq.example.org", DEFAULT_PORT, DEFAULT_QUEUE)


def test_amqps_with_certificates() -> None:
    cfg = parse("amqps://mq.example.org/q?ca=/etc/ca.pem&cert=/etc/me.pem&key=/etc/me.key")
    assert cfg.tls
    assert cfg.port == DEFAULT_TLS_PORT
    assert (cfg.ca, cfg.cert, cfg.key) == (Path("/etc/ca.pem"), Path("/etc/me.pem"), Path("/etc/me.key"))
    assert cfg.address == "amqps://mq.example.org:5671/q"


def test_ipv6_host() -> None:
    cfg = parse("amqp://[::1]:5672/q")
    assert cfg.host == "::1"
    assert cfg.address == "amqp://[::1]:5672/q"


def test_options() -> None:
    cfg = parse("amqp://h:1/q-1_x.y?vhost=%2Fprod&heartbeat=5&prefetch=7&timeout=1.5")
    assert (cfg.queue, cfg.vhost, cfg.heartbeat, cfg.prefetch, cfg.timeout) == ("q-1_x.y", "/prod", 5, 7, 1.5)
    assert parse("amqp://h:1/q?vhost=/").vhost == "/"
    assert parse("amqp://h:1/q?vhost=ei").vhost == "ei"


@pytest.mark.parametrize(
    "url",
    [
        "amqp://h:5672/queue/q",
        "amqp://h:5672/a b",
        "amqp://h:5672/a%2Fb",
        "amqp://h:5672/na;me",
        "amqp://h:5672/évent",
        "amqp://h:5672//q",
        "amqp://h:5672/" + "q" * 201,
        "amqp://h:5672/amq.gen-x",
    ],
)
def test_bad_queues(url: str) -> None:
    with pytest.raises(ConfigError, match=r"QUEUE|queue name"):
        parse(url)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("stomp://h:61613/queue/q", "scheme"),
        ("amqp+ssl://h/q", "scheme"),
        ("amqp:///q", "no host"),
        ("amqp://:5672/q", "no host"),
        ("amqp://h:port/q", "port"),
        ("amqp://h:/q", "empty port"),
        ("amqp://h:0/q", "out of range"),
        ("amqp://h:65536/q", "port"),
        ("amqp://h1:1,h2:2/q", "one host"),
        ("amqp://[::1/q", "malformed"),
        ("amqp://h_1:1/q", "invalid host"),
        ("amqp://h:1/q#frag", "fragment"),
        ("amqp://h:1/q?color=red", "unknown parameter 'color'"),
        ("amqp://h:1/q?prefetch=1&prefetch=2", "twice"),
        ("amqp://h:1/q?prefetch=many", "prefetch= must be a number"),
        ("amqp://h:1/q?prefetch=0", "prefetch"),
        ("amqp://h:1/q?prefetch=70000", "prefetch"),
        ("amqp://h:1/q?heartbeat=0", "heartbeat"),
        ("amqp://h:1/q?heartbeat=1.5", "heartbeat= must be a number"),
        ("amqp://h:1/q?heartbeat=3601", "heartbeat"),
        ("amqp://h:1/q?timeout=0", "timeout"),
        ("amqp://h:1/q?timeout=nan", "timeout"),
        ("amqp://h:1/q?timeout=inf", "timeout"),
        ("amqp://h:1/q?vhost=", "vhost"),
        ("amqp://h:1/q?vhost=a%0Ab", "vhost"),
        ("amqp://h:1/q?ca=/etc/ca.pem", "amqps://"),
        ("amqps://h:1/q?key=/etc/me.key", "key= needs cert="),
        ("amqps://h:1/q?ca=", "ca= is empty"),
    ],
)
def test_bad_urls(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        parse(url)
    assert "\n" not in str(info.value)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError, match="queue name"):
        AmqpConfig(host="h", port=1, queue="a/b")
    with pytest.raises(ConfigError, match="vhost"):
        AmqpConfig(host="h", port=1, vhost="")
    with pytest.raises(ConfigError, match="port"):
        AmqpConfig(host="h", port=70000)
    cfg = AmqpConfig(host="h", port=1)
    assert cfg.queue == DEFAULT_QUEUE
    with pytest.raises(AttributeError):
        cfg.queue = "other"  # type: ignore[misc]


def test_connection_parameters_always_bound_the_waits() -> None:
    cfg = parse("amqp://h:1/q?heartbeat=7&timeout=3&vhost=ei", {"EI_BROKER_USERNAME": "u", "EI_BROKER_PASSWORD": "p"})
    params = _connection_parameters(cfg, "publisher")
    assert (params.host, params.port, params.virtual_host) == ("h", 1, "ei")
    assert params.heartbeat == 7
    assert params.blocked_connection_timeout == 3
    assert params.socket_timeout == 3
    assert params.stack_timeout == 3
    assert params.connection_attempts == 1
    assert (params.credentials.username, params.credentials.password) == ("u", "p")
    assert params.ssl_options is None


def test_missing_tls_files_fail_before_connecting(tmp_path: Path) -> None:
    cfg = parse(f"amqps://h:1/q?ca={tmp_path / 'nope.pem'}")
    with pytest.raises(ConfigError, match="ca= file"):
        AmqpPublisher(cfg)
    with pytest.raises(ConfigError, match="ca= file"):
        AmqpConsumer(cfg)


def test_properties_are_persistent_with_headers_and_group() -> None:
    props = properties_for({"ei-kind": "chunk", "content-type": "application/x-ei"}, "task.1")
    assert props.delivery_mode == 2
    assert props.content_type == "application/x-ei"
    assert props.headers == {"ei-kind": "chunk", "content-type": "application/x-ei", "JMSXGroupID": "task.1"}
    assert props.message_id
    plain = properties_for(None, None)
    assert plain.content_type == "application/octet-stream"
    assert plain.headers == {}
    assert properties_for({"JMSXGroupID": "g"}, None).headers == {"JMSXGroupID": "g"}


@pytest.mark.parametrize("headers", [{"": "v"}, {"k" * 256: "v"}])
def test_properties_reject_unsendable_header_names(headers: dict[str, str]) -> None:
    with pytest.raises(TransportError):
        properties_for(headers, None)


def test_open_dispatches_amqp_urls_and_translates_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EI_BROKER_USERNAME", raising=False)
    monkeypatch.delenv("EI_BROKER_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="amqp"):
        open_publisher("amqp://h:1/a/b")
    with pytest.raises(ConfigError, match="amqp"):
        open_consumer("amqps://h:1/q?bad=1")


def test_a_foreign_handle_is_refused() -> None:
    consumer = AmqpConsumer.__new__(AmqpConsumer)  # no connection needed to check the handle
    consumer.config = parse("amqp://h:1/q")
    consumer._conn = Reconnector(
        protocol="AMQP", address=consumer.config.address, first=_Link(consumer.config, 1, None),
        open_link=lambda generation: _Link(consumer.config, generation, None), drop_deliveries=lambda: 0,
        stop=threading.Event(), reconnect_deadline=1.0,
    )  # fmt: skip
    consumer._conn.take()  # no connection: every handle's connection is gone
    with pytest.raises(TransportError, match="not from an AMQP consumer"):
        consumer._link_for(Message(b"", handle="1/ack-id"), "ack")
    assert consumer._link_for(Message(b"", handle="1/5"), "ack") is None


def test_exchange_option() -> None:
    """`?exchange=NAME`: publish to a topic exchange, the path being the routing key (commit notifications)."""
    config = AmqpConfig.from_url("amqp://h:5672/data24?exchange=ei.commits")
    assert (config.exchange, config.queue) == ("ei.commits", "data24")
    assert config.address == "amqp://h:5672/data24 (exchange ei.commits)"
    assert AmqpConfig.from_url("amqp://h:5672/q").exchange is None
    for bad in ("amq.topic", "a/b", ""):
        with pytest.raises(ConfigError, match="exchange"):
            AmqpConfig.from_url(f"amqp://h:5672/q?exchange={bad}")
