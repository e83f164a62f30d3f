"""`amqp://host:port[/QUEUE]` / `amqps://` (RabbitMQ): AMQP 0-9-1 through pika's BlockingConnection.

One connection and one channel per publisher or consumer. pika's blocking adapter runs no thread
of its own: every callback (a delivery, a consumer cancel) runs inside a pika call made by the
thread that calls `send`/`receive`, so connecting and re-connecting happen only there (DIRAC #308,
#4422). Every (re)connection is one attempt; when to make the next and when to give up is
eventindex.transport.reconnect's (shared with STOMP), and so are the URL's credentials, TLS files
and common options (eventindex.transport.config). Heartbeats, the socket/connect timeouts and the
blocked-connection timeout are always set, so neither a dead socket nor a broker that blocks
publishers hangs a caller (DIRAC #7851).

- The queue is declared durable (on every connection) and published to through the default
  exchange, `mandatory` and `delivery_mode=2` (persistent). A queue an operator declared with
  arguments of their own (`x-queue-type=quorum`, a length limit, a TTL) is used as it is; one that
  differs in durability is refused.
- A refusal no retry fixes (a login, vhost or permission refused: 403, 530; a conflicting queue: 406) is a
  TransportError at once, on connecting and on publishing (a user without the write right): only a
  connection that failed or dropped is retried, and only that is a BrokerConnectionError (the producer
  spools on it). pika's "probable authentication error" of a socket that dropped during the login (a
  broker restarting, a network cut) is no refusal. pika's own log records are kept off stderr
  (`quiet_pika`): each failure reaches the caller as one line.
- `?exchange=NAME`: a publisher publishes to the durable topic exchange NAME (declared on every
  connection) with the URL's path as the routing key, not `mandatory` (a message no queue is bound
  for is dropped by the broker, as a topic's with no subscriber); a consumer consumes the queue of
  the path, bound to that exchange for every routing key (the supersink's commit notifications).
- `AmqpPublisher.send` uses publisher confirms: it returns only after the broker's Basic.Ack. A
  Nack, a returned (unroutable) message or a lost connection sends the message again on a new
  connection (at most `reconnect.SEND_ATTEMPTS` times): a broker restart may duplicate a message
  but never loses one. `send_batch` is one AMQP transaction (tx.select/tx.commit on a second
  channel), retried the same way as a whole.
- `AmqpConsumer` consumes with manual acks and `basic_qos(prefetch)`. Each connection has a
  generation number carried in every message handle; after a reconnection the deliveries of the
  old channel are dropped and acks/releases of old handles are skipped (the broker redelivers those
  messages). `release` is `basic_nack(requeue=True)`: the broker puts the message back, marked
  redelivered (AMQP cannot change a message's headers on a requeue, so there is no release count).
- The group (the task) travels as the `JMSXGroupID` header; RabbitMQ has no message groups, so it
  only labels the message.
- Heartbeats are sent while the caller is inside a pika call. A consumer that works longer than
  about two heartbeat intervals between `receive` calls finds its connection closed by the broker,
  reconnects, and gets its unacked messages again; hence the default of 60 s (RabbitMQ's own).
"""

from __future__ import annotations

import collections
import logging
import os
import re
import ssl
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from eventindex.errors import ConfigError, TransportError
from eventindex.transport.base import Adapter, Message
from eventindex.transport.config import (
    QUEUE_NAME,
    BrokerConfig,
    is_ipv6,
    number,
    one_line,
    query_options,
    shared_options,
    split_url,
    valid_host,
)
from eventindex.transport.reconnect import RECONNECT_DEADLINE, LinkLost, ReconnectingConsumer, ReconnectingPublisher

log = logging.getLogger(__name__)

DEFAULT_PORT = 5672
DEFAULT_TLS_PORT = 5671
DEFAULT_QUEUE = "eventindex"
DEFAULT_VHOST = "/"
DEFAULT_HEARTBEAT = 60
MIN_HEARTBEAT = 1
MAX_HEARTBEAT = 3600

#: `receive` waits on the socket in slices of at most this long, so `close` from another thread
#: gets the connection within that time.
POLL_SLICE = 0.5

GROUP_HEADER = "JMSXGroupID"
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_QUEUE_RE = re.compile(QUEUE_NAME)
#: AMQP reply codes that no retry fixes: access refused, not found, precondition failed, not allowed.
_FINAL_REPLY_CODES = frozenset({403, 404, 406, 530})
#: What pika raises from a connect, publish or wait: its own exceptions (connection and channel),
#: its connection workflow's (e.g. a handshake timeout, raised unwrapped) and socket errors.
_PIKA_ERRORS: tuple[type[BaseException], ...] = (pika.exceptions.AMQPError, AMQPConnectorException, OSError)
#: pika's guesses from the handshake stage a connection ended in: a refusal only when the broker closed it with
#: a final reply code (403 ACCESS_REFUSED, 530 NOT_ALLOWED), not when the socket dropped (a broker restarting).
_PROBABLE_REFUSALS: tuple[type[BaseException], ...] = (
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
)
#: How pika writes the broker's Connection.Close inside a Probable* error: "ConnectionClosedByBroker: (403) ..."
_CLOSED_BY_BROKER_RE = re.compile(r"ConnectionClosedByBroker: \((\d+)\)")
#: An existing queue's argument that our declaration does not set (a quorum queue, a length limit, a TTL an
#: operator chose): the queue is used as it is. Any other difference (durable, exclusive, auto-delete) is refused.
_OPERATOR_ARGUMENT_RE = re.compile(r"PRECONDITION_FAILED - inequivalent arg 'x-")
#: pika logs every failure it raises, some with a traceback: the adapter reports each in one line of its own.
_PIKA_LOGGER = "pika"


# --------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class AmqpConfig(BrokerConfig):
    protocol: ClassVar[str] = "AMQP"
    tls_url: ClassVar[str] = "an amqps:// URL"

    host: str
    port: int
    queue: str = DEFAULT_QUEUE
    vhost: str = DEFAULT_VHOST
    heartbeat: int = DEFAULT_HEARTBEAT
    #: publish to this topic exchange (routing key: `queue`) instead of to the queue itself
    exchange: str | None = None

    def __post_init__(self) -> None:
        if not valid_host(self.host):
            raise ConfigError(f"AMQP broker: invalid host {self.host!r}")
        if self.exchange is not None and (not _QUEUE_RE.fullmatch(self.exchange) or self.exchange.startswith("amq.")):
            raise ConfigError(
                f"AMQP broker: exchange name {self.exchange!r} is not [A-Za-z0-9._-]{{1,200}} or starts with amq."
            )
        if not 0 < self.port < 65536:
            raise ConfigError(f"AMQP broker: port {self.port} is out of range 1-65535")
        if not _QUEUE_RE.fullmatch(self.queue):
            raise ConfigError(f"AMQP broker: queue name {self.queue!r} must match [A-Za-z0-9._-]{{1,200}}")
        if self.queue.startswith("amq."):
            raise ConfigError(f"AMQP broker: queue name {self.queue!r}: names starting with 'amq.' are reserved")
        if not self.vhost or len(self.vhost.encode()) > 255 or any(c in self.vhost for c in "\r\n\0"):
            raise ConfigError("AMQP broker: vhost must be a non-empty single-line string of at most 255 bytes")
        if not MIN_HEARTBEAT <= self.heartbeat <= MAX_HEARTBEAT:
            raise ConfigError(f"AMQP broker: heartbeat must be {MIN_HEARTBEAT}-{MAX_HEARTBEAT} s")
        super().__post_init__()

    @property
    def address(self) -> str:
        """The broker URL without options or credentials, for messages and logs."""
        host = f"[{self.host}]" if is_ipv6(self.host) else self.host
        where = f"{'amqps' if self.tls else 'amqp'}://{host}:{self.port}/{self.queue}"
        return where if self.exchange is None else f"{where} (exchange {self.exchange})"

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str] | None = None) -> AmqpConfig:
        """Parse a broker URL; credentials come from `EI_BROKER_USERNAME`/`EI_BROKER_PASSWORD` only."""
        parts, url, tls = split_url(url, ("amqp", "amqps"))
        if "," in parts.netloc:
            raise ConfigError(f"broker URL {url!r}: one host only (AMQP failover lists are not supported)")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise ConfigError(f"broker URL {url!r}: the port must be a number 1-65535") from None
        if not host:
            raise ConfigError(f"broker URL {url!r}: no host")
        if parts.netloc.endswith(":"):
            raise ConfigError(f"broker URL {url!r}: empty port")
        name = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not name:
            name = DEFAULT_QUEUE
        elif not _QUEUE_RE.fullmatch(name):
            raise ConfigError(f"broker URL {url!r}: the path must be /QUEUE with QUEUE in [A-Za-z0-9._-]")
        options = query_options(url, parts.query)
        if "vhost" in options and not options["vhost"]:
            raise ConfigError(f"broker URL {url!r}: vhost= is empty")
        return cls(
            host=host,
            port=port if port is not None else (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
            queue=name,
            tls=tls,
            vhost=options.get("vhost", DEFAULT_VHOST),
            heartbeat=number(url, options, "heartbeat", int, DEFAULT_HEARTBEAT),
            exchange=options.get("exchange"),
            **shared_options(url, options, env),
        )


def _connection_parameters(config: AmqpConfig, role: str) -> Any:
    ssl_options = None
    if config.tls:
        try:
            context = ssl.create_default_context(cafile=str(config.ca) if config.ca else None)
            if config.cert is not None:
                context.load_cert_chain(str(config.cert), str(config.key) if config.key else None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"AMQP broker: cannot load the TLS files: {one_line(exc)}") from None
        ssl_options = pika.SSLOptions(context, server_hostname=config.host)
    credentials = (
        pika.PlainCredentials(config.username, config.password or "")
        if config.username is not None
        else pika.ConnectionParameters.DEFAULT_CREDENTIALS
    )
    return pika.ConnectionParameters(
        host=config.host,
        port=config.port,
        virtual_host=config.vhost,
        credentials=credentials,
        heartbeat=config.heartbeat,
        blocked_connection_timeout=config.timeout,
        socket_timeout=config.timeout,
        stack_timeout=config.timeout,
        connection_attempts=1,  # the retries and the waits between them are ours
        retry_delay=0,
        ssl_options=ssl_options,
        client_properties={"connection_name": f"eventindex {role} pid {os.getpid()}"},
    )


def properties_for(headers: Mapping[str, str] | None, group: str | None) -> Any:
    """The persistent message's properties; the caller's headers and the group in its header table."""
    table: dict[str, str] = {}
    for key, value in (headers or {}).items():
        key, value = str(key), str(value)
        if not key or len(key.encode()) > 255:
            raise TransportError(f"header {key[:40]!r} cannot be sent over AMQP (empty, or longer than 255 bytes)")
        table[key] = value
    if group is None:
        group = table.get(GROUP_HEADER)
    if group is not None:
        table[GROUP_HEADER] = group
    return pika.BasicProperties(
        content_type=table.get("content-type", DEFAULT_CONTENT_TYPE),
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=uuid.uuid4().hex,
        timestamp=int(time.time()),
        headers=table,
    )


def _describe(exc: BaseException) -> str:
    """One line for a pika or socket error (several pika errors have an empty str())."""
    if isinstance(exc, pika.exceptions.ConnectionClosed | pika.exceptions.ChannelClosed):
        return f"{type(exc).__name__} ({exc.reply_code} {one_line(exc.reply_text)})"
    if isinstance(exc, pika.exceptions.AMQPConnectionError) and exc.args:
        inner = exc.args[0]
        if isinstance(inner, BaseException):
            return f"{type(exc).__name__}: {_describe(inner)}"
    return f"{type(exc).__name__}: {one_line(exc)}" if one_line(exc) else type(exc).__name__


def _is_final(exc: BaseException) -> bool:
    """A refusal that a retry does not fix (credentials, vhost, permissions, a conflicting queue).

    pika turns a connection that ended during the handshake into ProbableAuthenticationError or
    ProbableAccessDeniedError whatever ended it: a refusal only when the broker closed it with a final code;
    a dropped socket (a broker stopping or restarting, a network cut) is worth another attempt."""
    if isinstance(exc, _PROBABLE_REFUSALS):
        match = _CLOSED_BY_BROKER_RE.search(str(exc))
        return match is not None and int(match.group(1)) in _FINAL_REPLY_CODES
    if isinstance(exc, pika.exceptions.AuthenticationError):
        return True
    if isinstance(exc, pika.exceptions.ConnectionClosed | pika.exceptions.ChannelClosed):
        return int(exc.reply_code) in _FINAL_REPLY_CODES
    return False


def _is_operator_argument(exc: BaseException) -> bool:
    """The queue exists with an argument (x-...) our declaration does not set: 406 PRECONDITION_FAILED."""
    return (
        isinstance(exc, pika.exceptions.ChannelClosed)
        and int(exc.reply_code) == 406
        and bool(_OPERATOR_ARGUMENT_RE.search(str(exc.reply_text)))
    )


def quiet_pika() -> None:
    """Keep pika's own log records (several lines and a traceback for one refused login) off the tools' stderr:
    every failure reaches the caller as one TransportError line. A level set on the `pika` logger by the program
    is kept."""
    logger = logging.getLogger(_PIKA_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.CRITICAL)


quiet_pika()


# ----------------------------------------------------------------------------------------- connection
@dataclass(frozen=True)
class _Delivery:
    generation: int
    delivery_tag: int
    redelivered: bool
    properties: Any
    body: bytes


class _Link:
    """One AMQP connection and its channel (one generation). Used only under its owner's lock."""

    def __init__(
        self, config: AmqpConfig, generation: int, deliveries: collections.deque[_Delivery] | None = None
    ) -> None:
        self.config = config
        self.generation = generation
        self._deliveries = deliveries
        self.connection: Any = None
        self.channel: Any = None
        #: the publisher's transactional channel (`send_batch`), opened on first use
        self.tx_channel: Any = None
        #: messages of the current transaction the broker returned as unroutable
        self.tx_returned = 0
        #: why the connection is gone, or None while it is up
        self.lost: str | None = None
        #: time.monotonic() when the connection was found gone
        self.lost_at: float | None = None

    def open(self) -> None:
        """Connect, open the channel, declare the queue; a consumer also sets its prefetch and subscribes."""
        cfg = self.config
        role = "consumer" if self._deliveries is not None else "publisher"
        parameters = _connection_parameters(cfg, role)
        try:
            self.connection = pika.BlockingConnection(parameters)
            self.channel = self.connection.channel()
            if cfg.exchange is not None:
                self.channel.exchange_declare(exchange=cfg.exchange, exchange_type="topic", durable=True)
            if cfg.exchange is None or self._deliveries is not None:
                self._declare_queue()
            if cfg.exchange is not None and self._deliveries is not None:
                self.channel.queue_bind(queue=cfg.queue, exchange=cfg.exchange, routing_key="#")
            if self._deliveries is None:
                self.channel.confirm_delivery()
            else:
                self.channel.basic_qos(prefetch_count=cfg.prefetch)
                self.channel.add_on_cancel_callback(self._on_cancel)
                self.channel.basic_consume(
                    queue=cfg.queue,
                    on_message_callback=self._on_message,
                    auto_ack=False,
                    consumer_tag=f"eventindex-{self.generation}-{uuid.uuid4().hex[:12]}",
                )
        except _PIKA_ERRORS as exc:
            self.abort()
            if _is_final(exc):
                raise TransportError(f"AMQP broker {cfg.address} refused the connection: {_describe(exc)}") from None
            raise LinkLost(_describe(exc)) from None
        log.info(
            "AMQP connection %d to %s (vhost %s) is up, heartbeat %d s", self.generation, cfg.address, cfg.vhost,
            cfg.heartbeat,
        )  # fmt: skip

    def _declare_queue(self) -> None:
        """Declare the queue durable; a queue an operator declared with arguments of their own (x-queue-type,
        x-max-length, ...) is used as it is (a passive declare, on a new channel: the 406 closed the first)."""
        try:
            self.channel.queue_declare(queue=self.config.queue, durable=True)
        except pika.exceptions.ChannelClosed as exc:
            if not _is_operator_argument(exc):
                raise
            log.info("AMQP queue %s has arguments of its own (%s): used as it is", self.config.queue, exc.reply_text)
            self.channel = self.connection.channel()
            self.channel.queue_declare(queue=self.config.queue, passive=True)

    def _refused(self, exc: BaseException, what: str) -> TransportError | None:
        """A TransportError when `exc` is the broker refusing `what` for good (permissions: 403 on publish), after
        marking the link lost (its channel is closed: the next send opens a new connection); None otherwise."""
        if not _is_final(exc):
            return None
        self.set_lost(f"the broker refused {what}: {_describe(exc)}")
        return TransportError(f"AMQP broker {self.config.address} refused {what}: {_describe(exc)}")

    def publish(self, body: bytes, properties: Any) -> None:
        """Publish and wait for the broker's confirm; LinkLost when it did not take the message, TransportError when
        it refused it for good."""
        try:
            self.channel.basic_publish(
                exchange=self.config.exchange or "", routing_key=self.config.queue, body=body, properties=properties,
                mandatory=self.config.exchange is None,
            )  # fmt: skip
        except pika.exceptions.UnroutableError:
            self.set_lost("the broker returned the message as unroutable (queue deleted?)")
        except pika.exceptions.NackError:
            self.set_lost("the broker nacked the message")
        except _PIKA_ERRORS as exc:
            refused = self._refused(exc, "the message")
            if refused is not None:
                raise refused from None
            self.set_lost(_describe(exc))
        else:
            return
        raise LinkLost(self.lost or "connection lost")

    def publish_transaction(self, items: Sequence[tuple[bytes, Any]]) -> None:
        """Publish on a second, transactional channel and commit: the broker answers Tx.CommitOk once the
        persistent messages are on disk (confirms and transactions cannot share a channel). LinkLost
        when the commit failed or a message came back unroutable (then the queue is gone and so none of
        them was routed)."""
        self.tx_returned = 0
        try:
            if self.tx_channel is None:
                channel = self.connection.channel()
                channel.tx_select()
                channel.add_on_return_callback(self._on_tx_return)
                self.tx_channel = channel
            for body, properties in items:
                self.tx_channel.basic_publish(
                    exchange=self.config.exchange or "", routing_key=self.config.queue, body=body,
                    properties=properties, mandatory=self.config.exchange is None,
                )  # fmt: skip
            self.tx_channel.tx_commit()
            self.connection.process_data_events(0)  # dispatches the Basic.Return of an unroutable message
        except _PIKA_ERRORS as exc:
            refused = self._refused(exc, "the transaction")
            if refused is not None:
                raise refused from None
            self.set_lost(f"transaction failed: {_describe(exc)}")
            raise LinkLost(self.lost or "connection lost") from None
        if self.tx_returned:
            self.set_lost("the broker returned the messages as unroutable (queue deleted?)")
            raise LinkLost(self.lost or "connection lost")

    def wait(self, seconds: float) -> None:
        """Process socket events (deliveries, heartbeats) for at most `seconds`; marks the link lost on failure."""
        try:
            self.connection.process_data_events(time_limit=max(0.0, seconds))
        except _PIKA_ERRORS as exc:
            self.set_lost(_describe(exc))

    def settle(self, delivery_tag: int, ack: bool) -> None:
        """basic_ack, or basic_nack with requeue; fire-and-forget (a lost one means a redelivery)."""
        try:
            if ack:
                self.channel.basic_ack(delivery_tag=delivery_tag)
            else:
                self.channel.basic_nack(delivery_tag=delivery_tag, requeue=True)
        except _PIKA_ERRORS as exc:
            self.set_lost(f"{'ack' if ack else 'nack'} failed: {_describe(exc)}")

    def set_lost(self, reason: str) -> None:
        if self.lost is None:
            self.lost, self.lost_at = reason, time.monotonic()

    def close(self) -> None:
        """Close the connection (the broker requeues unacked deliveries)."""
        if self.connection is not None and self.lost is None:
            try:
                self.connection.close()
            except _PIKA_ERRORS as exc:
                log.debug("closing the AMQP connection to %s: %s", self.config.address, _describe(exc))
        self.set_lost("closed")
        self.abort()

    def abort(self) -> None:
        """Forget the connection; close its socket if it is still open."""
        connection, self.connection, self.channel, self.tx_channel = self.connection, None, None, None
        self.set_lost("closed")
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except _PIKA_ERRORS as exc:
                log.debug("closing the AMQP connection to %s: %s", self.config.address, _describe(exc))

    # -- pika callbacks: they run inside this link's pika calls, in the caller's thread
    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        if self._deliveries is not None:
            self._deliveries.append(
                _Delivery(self.generation, int(method.delivery_tag), bool(method.redelivered), properties, body)
            )

    def _on_tx_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self.tx_returned += 1

    def _on_cancel(self, method: Any) -> None:
        self.set_lost("the broker cancelled the consumer (queue deleted?)")


def _open_link(config: AmqpConfig, generation: int, deliveries: collections.deque[_Delivery] | None) -> _Link:
    link = _Link(config, generation, deliveries)
    link.open()
    return link


# ------------------------------------------------------------------------------------------ publisher
class AmqpPublisher(ReconnectingPublisher[AmqpConfig, _Link]):
    """Persistent messages on a confirm-mode channel; connects in the constructor."""

    def __init__(self, config: AmqpConfig) -> None:
        super().__init__(config, exclusive=True, logger=log)  # pika connections are not thread-safe

    def _open_link(self, generation: int) -> _Link:
        return _open_link(self.config, generation, None)

    def send(self, body: bytes, headers: Mapping[str, str] | None = None, group: str | None = None) -> None:
        body = bytes(body)
        properties = properties_for(headers, group)
        self._confirmed(lambda link: link.publish(body, properties), "a message")

    def send_batch(self, messages: Sequence[tuple[bytes, Mapping[str, str]]], group: str | None = None) -> None:
        """One AMQP transaction: the broker routes none of the messages unless it committed all."""
        items = [(bytes(body), properties_for(headers, group)) for body, headers in messages]
        if items:
            self._confirmed(lambda link: link.publish_transaction(items), f"a transaction of {len(items)} messages")


# ------------------------------------------------------------------------------------------- consumer
class AmqpConsumer(ReconnectingConsumer[AmqpConfig, _Link]):
    """Manual-ack consumer with a prefetch window; reconnects from the thread that calls `receive`.
    pika connections are not thread-safe: `ack` and `release` take the lock `receive` holds."""

    def __init__(self, config: AmqpConfig, reconnect_deadline: float = RECONNECT_DEADLINE) -> None:
        #: filled by pika's callbacks, inside this consumer's pika calls
        self._deliveries: collections.deque[_Delivery] = collections.deque()
        super().__init__(config, reconnect_deadline=reconnect_deadline, logger=log)

    def _open_link(self, generation: int) -> _Link:
        return _open_link(self.config, generation, self._deliveries)

    def _take(self, link: _Link, deadline: float) -> Message | None:
        while True:
            while self._deliveries:
                item = self._deliveries.popleft()
                if item.generation == link.generation:
                    return _message(item)
                log.debug("dropped a message of AMQP connection %d; the broker redelivers it", item.generation)
            remaining = deadline - time.monotonic()
            if link.lost is not None or self._stop.is_set() or remaining <= 0:
                return None
            link.wait(min(remaining, POLL_SLICE))  # slices: `close` from another thread waits one at most

    def _drain(self) -> int:
        dropped = len(self._deliveries)
        self._deliveries.clear()
        return dropped

    def _link_for(self, message: Message, what: str) -> tuple[_Link, int] | None:
        generation, sep, tag = message.handle.partition("/")
        if not sep or not generation.isdigit() or not tag.isdigit():
            raise TransportError(f"{what}: message handle {message.handle!r} is not from an AMQP consumer")
        link = self._conn.link_of(int(generation), what)
        return None if link is None else (link, int(tag))

    def ack(self, message: Message) -> None:
        with self._lock:
            found = self._link_for(message, "ack")
            if found is not None:
                link, tag = found
                link.settle(tag, ack=True)

    def release(self, message: Message) -> None:
        with self._lock:
            found = self._link_for(message, "release")
            if found is not None:
                link, tag = found
                link.settle(tag, ack=False)


def _message(item: _Delivery) -> Message:
    properties = item.properties
    headers: dict[str, str] = {}
    for key, value in (properties.headers or {}).items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        headers[str(key)] = str(value)
    if properties.content_type:
        headers.setdefault("content-type", str(properties.content_type))
    return Message(
        body=bytes(item.body),
        headers=headers,
        handle=f"{item.generation}/{item.delivery_tag}",
        redelivered=item.redelivered,
    )


ADAPTER = Adapter(
    check=lambda url: AmqpConfig.from_url(url).check_files(),
    publisher=lambda url: AmqpPublisher(AmqpConfig.from_url(url)),
    consumer=lambda url: AmqpConsumer(AmqpConfig.from_url(url)),
)
