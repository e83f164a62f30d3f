"""`stomp://host:port[,host2:port2]/queue/NAME` (ActiveMQ, RabbitMQ-STOMP): STOMP 1.2 through stomp.py.
`/topic/NAME` instead of `/queue/NAME` publishes to (or subscribes to) a topic: every subscriber
connected at the time gets each message (the supersink's commit notifications).

One STOMP connection per publisher or consumer, opened and re-opened only from the calling thread:
the stomp.py listener thread just records what happened (CONNECTED, RECEIPT, ERROR, MESSAGE, loss)
and never reconnects (DIRAC #308, #4422). Every (re)connection is one pass over the failover hosts;
when to make the next pass and when to give up is eventindex.transport.reconnect's (shared with
AMQP), and so are the URL's credentials, TLS files and common options (eventindex.transport.config).
Heartbeats are always on, so a dead socket is noticed (DIRAC #7851).

- `StompPublisher.send` asks for a RECEIPT per message and returns only when it came. When the
  connection drops before the receipt, the message is sent again on a new connection (at most
  `reconnect.SEND_ATTEMPTS` times), so a broker restart may duplicate a message but never loses one.
- `StompConsumer` subscribes with `ack: client-individual`. Each connection has a generation number
  carried in every message handle; after a reconnection, frames and acks of older generations are
  dropped (the broker redelivers those messages). `ack` is fire-and-forget (an ack lost with its
  connection only means a redelivery); `close` sends DISCONNECT with a receipt, so acks sent before
  it are processed first.
- `release` re-sends the message to its queue (with a receipt) and then acks the original.
  A STOMP NACK is not used: ActiveMQ 5.x treats it as a poison ack and moves the message straight
  to `ActiveMQ.DLQ` instead of redelivering it. The copy carries `ei-release-count`.
- An ERROR frame that names a refusal no retry fixes (`is_final_error`: RabbitMQ's `access_refused`
  or `precondition_failed`, ActiveMQ's "not authorized") is a TransportError at once, whether it
  answers a SEND, a COMMIT or a SUBSCRIBE, and whether or not it names the frame's receipt (RabbitMQ's
  do not): the producer exits 5 instead of spooling, a consumer stops instead of reconnecting until its
  outage budget ends. Other ERRORs end the connection and are retried. An ERROR reads as its `message`
  header and the first line of its body when that says more (RabbitMQ's "Bad CONNECT" says why there).
- ActiveMQ does not put `JMSXGroupID` on the MESSAGE frames it delivers, so the group also travels
  as `ei-group`; consumers see it as `JMSXGroupID` in `Message.headers`, as with the other transports.
"""

from __future__ import annotations

import logging
import queue
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import stomp
import stomp.exception

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

DEFAULT_PORT = 61613
DEFAULT_TLS_PORT = 61614
DEFAULT_HEARTBEAT_MS = 10_000
MIN_HEARTBEAT_MS = 100
MAX_HEARTBEAT_MS = 3_600_000

#: How long `close` waits for the broker's DISCONNECT receipt.
CLOSE_TIMEOUT = 5.0
#: The receive-side heartbeat grace: the broker is declared dead after this many missed intervals.
HEARTBEAT_GRACE = 2.0

RELEASE_COUNT_HEADER = "ei-release-count"
GROUP_HEADER = "ei-group"
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_QUEUE_RE = re.compile(f"/queue/({QUEUE_NAME})")
_DESTINATION_RE = re.compile(f"/(queue|topic)/({QUEUE_NAME})")
#: Headers the adapter sets itself; a caller may not pass them to `send`.
_RESERVED_SEND_HEADERS = frozenset(
    {
        "destination", "receipt", "content-length", "transaction", "persistent", "message-id", "subscription",
        "ack", GROUP_HEADER,
    }
)  # fmt: skip
#: Headers of a MESSAGE frame that describe the delivery, not the message: not shown in `Message.headers`.
#: (RabbitMQ copies a SEND's `receipt` and `transaction` headers into the MESSAGE frames it delivers.)
_DELIVERY_HEADERS = frozenset(
    {
        "ack", "subscription", "destination", "message-id", "content-length", "redelivered",
        "expires", "priority", "timestamp", "persistent", "receipt", "transaction",
    }
)  # fmt: skip
#: What stomp.py raises from a send or connect: its own exceptions, socket errors, and the
#: AttributeError of a TLS transport whose send queue was torn down by a disconnection.
_STOMP_ERRORS: tuple[type[BaseException], ...] = (stomp.exception.StompException, OSError, AttributeError)
#: ERROR frames that no retry fixes: the broker refuses this user the destination (RabbitMQ `access_refused`,
#: ActiveMQ's SecurityException "... is not authorized to write to ..."), or the queue exists with other
#: properties (RabbitMQ `precondition_failed`). STOMP has no error codes: these are the brokers' words.
_FINAL_ERROR_RE = re.compile(
    r"access[_ ]refused|not authori[sz]ed|SecurityException|permission denied|precondition[_ ]failed", re.IGNORECASE
)


def _error_text(frame: Any) -> str:
    """An ERROR frame on one line: its `message` header, and the first line of its body when that says more
    (RabbitMQ: "Bad CONNECT" + "Access refused for user 'x'" or "Virtual host 'v' access denied"; ActiveMQ's
    body is a Java stack trace whose first line repeats the message)."""
    message = one_line(frame.headers.get("message"))
    body = frame.body
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body or "")
    first = next((one_line(line) for line in text.splitlines() if line.strip()), "")
    if not message:
        return first or "ERROR frame"
    if not first or message in first or first in message:
        return message
    return one_line(f"{message}: {first}")


def is_final_error(text: str) -> bool:
    """An ERROR frame's text that names a refusal no retry fixes (see _FINAL_ERROR_RE)."""
    return bool(_FINAL_ERROR_RE.search(text))


# --------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class StompConfig(BrokerConfig):
    protocol: ClassVar[str] = "STOMP"
    tls_url: ClassVar[str] = "a stomp+ssl:// URL"

    hosts: tuple[tuple[str, int], ...]
    queue: str
    vhost: str | None = None
    heartbeat_ms: int = DEFAULT_HEARTBEAT_MS
    #: "queue" (one consumer gets each message) or "topic" (every subscriber does)
    kind: str = "queue"

    def __post_init__(self) -> None:
        if not self.hosts:
            raise ConfigError("STOMP broker: at least one host:port is needed")
        for host, port in self.hosts:
            if not valid_host(host):
                raise ConfigError(f"STOMP broker: invalid host {host!r}")
            if not 0 < port < 65536:
                raise ConfigError(f"STOMP broker: port {port} of {host} is out of range 1-65535")
        if len(set(self.hosts)) != len(self.hosts):
            raise ConfigError("STOMP broker: a host:port is listed twice")
        if not _QUEUE_RE.fullmatch(f"/queue/{self.queue}"):
            raise ConfigError(f"STOMP broker: queue name {self.queue!r} must match [A-Za-z0-9._-]{{1,200}}")
        if self.kind not in ("queue", "topic"):
            raise ConfigError(f"STOMP broker: destination kind {self.kind!r} must be queue or topic")
        if self.vhost is not None and (not self.vhost or any(c in self.vhost for c in "\r\n\0")):
            raise ConfigError("STOMP broker: vhost must be a non-empty single-line string")
        if not MIN_HEARTBEAT_MS <= self.heartbeat_ms <= MAX_HEARTBEAT_MS:
            raise ConfigError(f"STOMP broker: heartbeat must be {MIN_HEARTBEAT_MS}-{MAX_HEARTBEAT_MS} ms")
        super().__post_init__()

    @property
    def destination(self) -> str:
        return f"/{self.kind}/{self.queue}"

    @property
    def address(self) -> str:
        """The broker URL without options or credentials, for messages and logs."""
        hosts = ",".join(f"[{h}]:{p}" if is_ipv6(h) else f"{h}:{p}" for h, p in self.hosts)
        return f"{'stomp+ssl' if self.tls else 'stomp'}://{hosts}{self.destination}"

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str] | None = None) -> StompConfig:
        """Parse a broker URL; credentials come from `EI_BROKER_USERNAME`/`EI_BROKER_PASSWORD` only."""
        parts, url, tls = split_url(url, ("stomp", "stomp+ssl"))
        match = _DESTINATION_RE.fullmatch(parts.path)
        if match is None:
            raise ConfigError(
                f"broker URL {url!r}: destination must be /queue/NAME or /topic/NAME with NAME in [A-Za-z0-9._-]"
            )
        hosts = tuple(
            _parse_host(url, item, DEFAULT_TLS_PORT if tls else DEFAULT_PORT) for item in parts.netloc.split(",")
        )
        options = query_options(url, parts.query)
        if "exchange" in options:
            raise ConfigError(f"broker URL {url!r}: exchange= is for amqp:// URLs (STOMP: /topic/NAME)")
        return cls(
            hosts=hosts,
            queue=match.group(2),
            kind=match.group(1),
            tls=tls,
            vhost=options.get("vhost"),
            heartbeat_ms=number(url, options, "heartbeat", int, DEFAULT_HEARTBEAT_MS),
            **shared_options(url, options, env),
        )


def _parse_host(url: str, item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):
        end = item.find("]")
        rest = item[end + 1 :] if end >= 0 else "?"
        if rest and not rest.startswith(":"):
            raise ConfigError(f"broker URL {url!r}: bad host {item!r}")
        host, port_text = item[1:end], rest[1:] if rest else None
    elif ":" in item:
        host, port_text = item.rsplit(":", 1)
        if ":" in host:
            raise ConfigError(f"broker URL {url!r}: write an IPv6 address in [brackets]")
    else:
        host, port_text = item, None
    if not host:
        raise ConfigError(f"broker URL {url!r}: empty host in {item!r}")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or len(port_text) > 5:
        raise ConfigError(f"broker URL {url!r}: port {port_text!r} of {host} is not a port number")
    return host, int(port_text)


def _send_headers(body: bytes, headers: Mapping[str, str] | None, group: str | None) -> dict[str, str]:
    out = {"persistent": "true", "content-type": DEFAULT_CONTENT_TYPE}
    for key, value in (headers or {}).items():
        key, value = str(key), str(value)
        if key in _RESERVED_SEND_HEADERS:
            raise TransportError(f"header {key!r} is set by the STOMP adapter, not by the caller")
        if not key or any(c in key for c in ":\r\n\0") or "\0" in value:
            raise TransportError(f"header {key!r} cannot be sent over STOMP (empty, or has ':', CR, LF or NUL)")
        out[key] = value
    if group is None:
        group = out.get("JMSXGroupID")
    if group is not None:
        if "\0" in group:
            raise TransportError("a message group cannot contain NUL")
        # ActiveMQ keeps JMSXGroupID to itself (its MESSAGE frames do not carry it): GROUP_HEADER does
        out[GROUP_HEADER] = out["JMSXGroupID"] = group
    out["content-length"] = str(len(body))
    return out


# ----------------------------------------------------------------------------------------- connection
@dataclass(frozen=True)
class _Delivery:
    generation: int
    #: a stomp.py Frame; None marks "connection gone" (or "consumer closing") and only wakes `receive`
    frame: Any


class _Link:
    """One STOMP connection (one generation).

    Its `on_*` methods are stomp.py's listener callbacks: they run in stomp.py's receiver and
    heartbeat threads, only record what happened and wake waiters, and never send or reconnect.
    """

    def __init__(self, config: StompConfig, generation: int, deliveries: queue.Queue[_Delivery] | None) -> None:
        self.config = config
        self.generation = generation
        self._deliveries = deliveries
        self._cond = threading.Condition()
        self._connected = False
        self._closing = False
        self._lost: str | None = None
        #: time.monotonic() when the connection was found gone
        self.lost_at: float | None = None
        self._refused: str | None = None
        #: an ERROR frame after CONNECTED that no retry fixes (`is_final_error`); the broker then closes the
        #: connection, and the frame may not name the receipt of the frame it refuses (RabbitMQ's do not)
        self._final: str | None = None
        self._receipts: set[str] = set()
        self._errors: dict[str, str] = {}
        heartbeat = config.heartbeat_ms
        self.conn = stomp.Connection12(
            host_and_ports=list(config.hosts),
            prefer_localhost=False,
            try_loopback_connect=False,
            # one pass over the hosts per connect(): the waiting between passes is ours (compute_backoff)
            reconnect_attempts_max=1,
            reconnect_sleep_initial=0.0,
            reconnect_sleep_increase=0.0,
            reconnect_sleep_jitter=0.0,
            reconnect_sleep_max=0.0,
            timeout=config.timeout,
            heartbeats=(heartbeat, heartbeat),
            heart_beat_receive_scale=HEARTBEAT_GRACE,
            keepalive=True,
            vhost=config.vhost,
            auto_decode=False,
        )
        if config.tls:
            self.conn.set_ssl(
                for_hosts=list(config.hosts),
                ca_certs=str(config.ca) if config.ca else None,
                cert_file=str(config.cert) if config.cert else None,
                key_file=str(config.key) if config.key else None,
            )
        self.conn.set_listener("eventindex", self)

    # -- caller side
    @property
    def final(self) -> str | None:
        """The ERROR after CONNECTED that no retry fixes (`is_final_error`), if the broker sent one."""
        return self._final

    @property
    def lost(self) -> str | None:
        """Why the connection is gone, or None while it is up."""
        return self._lost

    def open(self) -> None:
        """Connect (one pass over the hosts) and wait for CONNECTED."""
        cfg = self.config
        try:
            self.conn.connect(username=cfg.username, passcode=cfg.password, wait=False)
        except _STOMP_ERRORS as exc:
            self.abort()
            why = _tls_failure(cfg) if cfg.tls else None  # stomp.py keeps the reason to its log
            raise LinkLost("no host accepted a connection" + (f" ({why})" if why else "")) from exc
        with self._cond:
            self._cond.wait_for(
                lambda: self._connected or self._lost is not None or self._refused is not None, cfg.timeout
            )
            connected, lost, refused = self._connected, self._lost, self._refused
        if refused is not None:
            self.abort()
            raise TransportError(f"STOMP broker {cfg.address} refused the connection: {refused}")
        if not connected or lost is not None:
            self.abort()
            raise LinkLost(lost or f"no CONNECTED frame within {cfg.timeout:g} s")
        where = self.conn.transport.current_host_and_port
        log.info(
            "STOMP connection %d to %s (%s) is up, heartbeats %s ms",
            self.generation,
            cfg.address,
            where,
            self.conn.heartbeats,
        )

    def subscribe(self) -> None:
        cfg = self.config
        prefetch = str(cfg.prefetch)
        self.call_with_receipt(
            "SUBSCRIBE",
            lambda receipt: self.conn.subscribe(
                cfg.destination,
                id=f"eventindex-{self.generation}",
                ack="client-individual",
                # ActiveMQ and RabbitMQ each ignore the other's prefetch header
                headers={"activemq.prefetchSize": prefetch, "prefetch-count": prefetch, "receipt": receipt},
            ),
            refusal_is_final=True,
        )

    def send(self, body: bytes, headers: Mapping[str, str]) -> None:
        self.call_with_receipt(
            "SEND",
            lambda receipt: self.conn.send(
                self.config.destination,
                body,
                headers={**headers, "receipt": receipt},
            ),
        )

    def send_transaction(self, frames: Sequence[tuple[bytes, Mapping[str, str]]]) -> None:
        """BEGIN, SEND each frame in the transaction, COMMIT with a receipt: all or none."""
        tx = f"ei-tx-{uuid.uuid4().hex}"
        try:
            self.conn.begin(transaction=tx)
            for body, headers in frames:
                self.conn.send(self.config.destination, body, headers={**headers, "transaction": tx})
        except _STOMP_ERRORS as exc:
            self._set_lost(f"transaction failed: {one_line(exc) or type(exc).__name__}")
            raise LinkLost(self._lost or "connection lost") from exc
        self.call_with_receipt("COMMIT", lambda receipt: self.conn.commit(tx, headers={"receipt": receipt}))

    def ack(self, ack_id: str) -> bool:
        """Fire-and-forget ACK; False when the connection is gone (the broker redelivers the message)."""
        try:
            self.conn.ack(ack_id)  # STOMP 1.2: ack(id, transaction=None, receipt=None); id = the 'ack' header
        except _STOMP_ERRORS as exc:
            self._set_lost(f"ACK failed: {one_line(exc)}")
            return False
        return True

    def call_with_receipt(self, what: str, action: Callable[[str], None], refusal_is_final: bool = False) -> None:
        """Send one frame with a receipt header and wait for the RECEIPT.

        LinkLost (retry on a new connection) on a drop or timeout, and on an ERROR answer unless
        `refusal_is_final`: the broker closes the connection after an ERROR, and the cause may be
        passing (a broker shutting down, a full store). TransportError for an ERROR no retry fixes
        (`is_final_error`: permissions, a conflicting queue), whether or not it names the receipt.
        """
        receipt = f"ei-{uuid.uuid4().hex}"
        try:
            action(receipt)
        except _STOMP_ERRORS as exc:
            self._set_lost(f"{what} failed: {one_line(exc) or type(exc).__name__}")
            if self._final is not None:  # the broker refused an earlier frame and closed the connection
                raise TransportError(f"STOMP broker {self.config.address} refused {what}: {self._final}") from None
            raise LinkLost(self._lost or "connection lost") from exc
        timeout = self.config.timeout
        with self._cond:
            self._cond.wait_for(
                lambda: receipt in self._receipts or receipt in self._errors or self._lost is not None,
                timeout,
            )
            if receipt in self._receipts:
                self._receipts.discard(receipt)
                return
            refusal = self._errors.pop(receipt, None)
            lost, final = self._lost, self._final
        if refusal is not None:
            if refusal_is_final or is_final_error(refusal):
                raise TransportError(f"STOMP broker {self.config.address} refused {what}: {refusal}")
            raise LinkLost(f"broker refused {what}: {refusal}")
        if final is not None:
            raise TransportError(f"STOMP broker {self.config.address} refused {what}: {final}")
        if lost is not None:
            raise LinkLost(lost)
        raise LinkLost(f"no receipt for {what} within {timeout:g} s")

    def close(self) -> None:
        """DISCONNECT with a receipt (the broker handles earlier ACKs first), then drop the socket."""
        with self._cond:
            self._closing = True
            up = self._lost is None
        if up:
            try:
                self.conn.disconnect()  # stomp.py closes the socket when the receipt arrives
            except _STOMP_ERRORS as exc:
                log.debug("DISCONNECT from %s failed: %s", self.config.address, exc)
            with self._cond:
                self._cond.wait_for(lambda: self._lost is not None, min(CLOSE_TIMEOUT, self.config.timeout))
        self.abort()

    def abort(self) -> None:
        """Drop the socket now (no DISCONNECT); unacked messages go back to the broker."""
        with self._cond:
            self._closing = True
        transport = self.conn.transport
        try:
            if transport.socket is not None:
                transport.disconnect_socket()
        except _STOMP_ERRORS as exc:
            log.debug("closing the socket to %s: %s", self.config.address, exc)
        self._set_lost("closed")
        thread = transport.io_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_TIMEOUT)

    def _set_lost(self, reason: str, quiet: bool = False) -> None:
        with self._cond:
            if self._lost is not None:
                return
            self._lost = reason
            self.lost_at = time.monotonic()
            expected = self._closing or quiet
            self._cond.notify_all()
        if not expected:
            log.warning("STOMP connection %d to %s lost: %s", self.generation, self.config.address, reason)
        if self._deliveries is not None:
            self._deliveries.put(_Delivery(self.generation, None))

    # -- stomp.py's threads
    def on_connected(self, frame: Any) -> None:
        with self._cond:
            self._connected = True
            self._cond.notify_all()

    def on_receipt(self, frame: Any) -> None:
        receipt = frame.headers.get("receipt-id")
        if receipt:
            with self._cond:
                self._receipts.add(receipt)
                self._cond.notify_all()

    def on_error(self, frame: Any) -> None:
        message = _error_text(frame)
        receipt = frame.headers.get("receipt-id")
        log.warning("STOMP broker %s sent ERROR: %s", self.config.address, message)
        with self._cond:
            if not self._connected:
                self._refused = message
            else:
                if receipt:
                    self._errors[receipt] = message
                if is_final_error(message) and self._final is None:
                    self._final = message
            self._cond.notify_all()
        if self._connected:  # the broker closes the connection after an ERROR (said above: no second warning)
            self._set_lost(f"broker error: {message}", quiet=True)

    def on_message(self, frame: Any) -> None:
        if self._deliveries is not None:
            self._deliveries.put(_Delivery(self.generation, frame))

    def on_disconnected(self) -> None:
        self._set_lost("connection closed")

    def on_heartbeat_timeout(self) -> None:
        self._set_lost("missed heartbeats from the broker")


def _open_link(config: StompConfig, generation: int, deliveries: queue.Queue[_Delivery] | None) -> _Link:
    link = _Link(config, generation, deliveries)
    link.open()
    if deliveries is not None:
        try:
            link.subscribe()
        except TransportError:
            link.abort()
            raise
    return link


# ------------------------------------------------------------------------------------------ publisher
class StompPublisher(ReconnectingPublisher[StompConfig, _Link]):
    """Persistent messages with a RECEIPT each; connects in the constructor. Concurrent sends share the
    connection, each waiting for its own receipt."""

    def __init__(self, config: StompConfig) -> None:
        super().__init__(config, exclusive=False, logger=log)

    def _open_link(self, generation: int) -> _Link:
        return _open_link(self.config, generation, None)

    def send(self, body: bytes, headers: Mapping[str, str] | None = None, group: str | None = None) -> None:
        body = bytes(body)
        frame_headers = _send_headers(body, headers, group)
        self._confirmed(lambda link: link.send(body, frame_headers), "a message")

    def send_batch(self, messages: Sequence[tuple[bytes, Mapping[str, str]]], group: str | None = None) -> None:
        """One STOMP transaction: the broker delivers none of the messages unless it committed all."""
        frames = [(bytes(body), _send_headers(bytes(body), headers, group)) for body, headers in messages]
        if frames:
            self._confirmed(lambda link: link.send_transaction(frames), f"a transaction of {len(frames)} messages")


# ------------------------------------------------------------------------------------------- consumer
class StompConsumer(ReconnectingConsumer[StompConfig, _Link]):
    """`ack: client-individual` subscription; reconnects from the thread that calls `receive`."""

    def __init__(self, config: StompConfig, reconnect_deadline: float = RECONNECT_DEADLINE) -> None:
        #: filled by stomp.py's receiver thread
        self._deliveries: queue.Queue[_Delivery] = queue.Queue()
        super().__init__(config, reconnect_deadline=reconnect_deadline, logger=log)

    def _open_link(self, generation: int) -> _Link:
        return _open_link(self.config, generation, self._deliveries)

    def _take(self, link: _Link, deadline: float) -> Message | None:
        while True:
            remaining = deadline - time.monotonic()
            try:
                item = self._deliveries.get(timeout=remaining) if remaining > 0 else self._deliveries.get_nowait()
            except queue.Empty:
                return None
            if item.frame is None:
                if item.generation == link.generation and link.final is not None:
                    # RabbitMQ may confirm a SUBSCRIBE and refuse the queue after it (access_refused): reconnecting
                    # would meet the same refusal until the outage budget ends, so it is reported now
                    raise TransportError(f"STOMP broker {self.config.address} refused the subscription: {link.final}")
                return None  # connection lost or consumer closing
            if item.generation == link.generation:
                return _message(item)
            log.debug("dropped a message of STOMP connection %d; the broker redelivers it", item.generation)

    def _drain(self) -> int:
        dropped = 0
        while True:
            try:
                item = self._deliveries.get_nowait()
            except queue.Empty:
                return dropped
            dropped += item.frame is not None

    def _link_for(self, message: Message, what: str) -> tuple[_Link, str] | None:
        generation, sep, ack_id = message.handle.partition("/")
        if not sep or not generation.isdigit() or not ack_id:
            raise TransportError(f"{what}: message handle {message.handle!r} is not from a STOMP consumer")
        link = self._conn.link_of(int(generation), what)
        return None if link is None else (link, ack_id)

    def ack(self, message: Message) -> None:
        found = self._link_for(message, "ack")
        if found is not None:
            link, ack_id = found
            link.ack(ack_id)

    def release(self, message: Message) -> None:
        found = self._link_for(message, "release")
        if found is None:
            return
        link, ack_id = found
        try:
            count = int(message.headers.get(RELEASE_COUNT_HEADER, "0")) + 1
        except ValueError:
            count = 1
        headers = {**message.headers, RELEASE_COUNT_HEADER: str(count)}
        group = headers.pop("JMSXGroupID", None)
        try:
            link.send(message.body, _send_headers(message.body, headers, group))
        except TransportError as exc:
            # the original stays unacked on a connection that is going away: the broker redelivers it
            log.warning(
                "release: re-sending to %s failed (%s); the broker redelivers the original",
                self.config.address,
                exc,
            )
            return
        link.ack(ack_id)

    def close(self) -> None:
        self._stop.set()
        self._deliveries.put(_Delivery(-1, None))  # wakes a receive() blocked on the queue
        super().close()


def _message(item: _Delivery) -> Message:
    frame = item.frame
    raw: dict[str, str] = frame.headers
    headers = {key: value for key, value in raw.items() if key not in _DELIVERY_HEADERS}
    group = headers.pop(GROUP_HEADER, None)
    if group is not None:
        headers.setdefault("JMSXGroupID", group)
    ack_id = raw.get("ack") or raw.get("message-id", "")
    body = frame.body
    return Message(
        body=body if isinstance(body, bytes) else bytes(body or b""),
        headers=headers,
        handle=f"{item.generation}/{ack_id}",
        redelivered=raw.get("redelivered") == "true" or RELEASE_COUNT_HEADER in headers,
    )


ADAPTER = Adapter(
    check=lambda url: StompConfig.from_url(url).check_files(),
    publisher=lambda url: StompPublisher(StompConfig.from_url(url)),
    consumer=lambda url: StompConsumer(StompConfig.from_url(url)),
)


def _tls_failure(config: StompConfig) -> str | None:
    """Why a TLS handshake with the first host that answers fails, as the STOMP client would do it (the
    same CA and client certificate, the host name checked), or None when every handshake succeeds
    (the failure was elsewhere). Asked only after a connection failed: it costs one handshake."""
    try:
        context = ssl.create_default_context(cafile=str(config.ca) if config.ca else None)
        if config.cert:
            context.load_cert_chain(str(config.cert), str(config.key) if config.key else None)
    except (OSError, ssl.SSLError) as exc:
        return f"TLS: the CA file or client certificate cannot be used: {exc}"
    for host, port in config.hosts:
        try:
            with (
                socket.create_connection((host, port), timeout=config.timeout) as raw,
                context.wrap_socket(raw, server_hostname=host),
            ):
                continue
        except ssl.SSLCertVerificationError as exc:
            return f"{host}:{port}: TLS: {exc.verify_message or exc.reason}"
        except ssl.SSLError as exc:
            return f"{host}:{port}: TLS: {exc.reason or exc}"
        except OSError:
            continue  # not listening: nothing to say about TLS
    return None
