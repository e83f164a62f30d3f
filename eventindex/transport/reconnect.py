"""One broker connection at a time, re-opened by the thread that uses it: shared by STOMP and AMQP.

The protocol modules say how to open a connection (a *link*, one generation) and how to tell it is
gone; this module decides when to open one and how long to wait:

- `connect` opens a link with bounded attempts and capped exponential backoff with jitter between
  them (`compute_backoff`); only `LinkLost` is worth another attempt.
- `Reconnector` is a consumer's current link. A lost link is aborted, the prefetched deliveries it
  leaves are dropped (the broker redelivers them), and a new one is opened, never past the caller's
  receive deadline (no reconnect storm). An outage longer than `reconnect_deadline` raises
  BrokerConnectionError once; the next receive starts a new budget.
- `ReconnectingConsumer` is the consumers' base: `receive` asks the Reconnector for a live link
  and the protocol for that link's next delivery; `close` takes the link away and drops what it
  had prefetched.
- `ReconnectingPublisher` is the publishers' base: a send runs on the current link until the
  broker confirms it, on a new link after a loss (at most SEND_ATTEMPTS times), so a broker restart
  may duplicate a message but never loses one.

Every wait is on a stop event (set by `close`), never a sleep, so closing ends it at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Generic, Protocol, TypeVar

from eventindex.backoff import compute_backoff
from eventindex.errors import BrokerConnectionError, TransportError
from eventindex.transport.base import Consumer, Message, Publisher
from eventindex.transport.config import BrokerConfig

log = logging.getLogger(__name__)

#: How long a consumer keeps reconnecting through one outage before `receive` raises.
RECONNECT_DEADLINE = 300.0
#: Cap and base of the wait between reconnection attempts (seconds), for consumers and publishers.
BACKOFF_BASE = 0.2
BACKOFF_CAP = 10.0
#: Attempts before the first connect (in a constructor) gives up: a wrong address or a broker that is
#: down fails fast, in a few seconds.
CONNECT_ATTEMPTS = 5
#: Attempts before a publisher's reconnect after a drop gives up, and the least time it keeps trying
#: (the jittered backoff above makes 10 attempts last anywhere from ~5 to ~45 s): long enough to ride
#: out a broker restart, which took RabbitMQ over 12 s on a loaded 2-core machine.
RECONNECT_ATTEMPTS = 10
RECONNECT_SECONDS = 30.0
#: Times a publisher puts one send on a (new) connection before giving up.
SEND_ATTEMPTS = 3


class LinkLost(BrokerConnectionError):
    """The connection failed, dropped, or the broker did not confirm in time: the operation may be retried."""


class Link(Protocol):
    """What the reconnector needs of a connection."""

    @property
    def generation(self) -> int: ...

    @property
    def lost(self) -> str | None:
        """Why the connection is gone, None while it is up."""

    @property
    def lost_at(self) -> float | None:
        """time.monotonic() when it was found gone."""

    def abort(self) -> None: ...


class ClosableLink(Link, Protocol):
    """A connection its owner closes politely when done (DISCONNECT, Connection.Close)."""

    def close(self) -> None: ...


L = TypeVar("L", bound=Link)
K = TypeVar("K", bound=ClosableLink)
C = TypeVar("C", bound=BrokerConfig)


def connect(
    open_link: Callable[[int], L],
    *,
    generation: int,
    attempts: int,
    stop: threading.Event,
    protocol: str,
    address: str,
    logger: logging.Logger,
    min_seconds: float = 0.0,
) -> L:
    """`open_link(generation)`, up to `attempts` times (and for at least `min_seconds`) with backoff between
    them, until one succeeds.

    LinkLost is retried; any other error goes to the caller. BrokerConnectionError when every attempt
    failed, or `stop` was set while waiting for the next.
    """
    reason = ""
    made = 0
    until = time.monotonic() + min_seconds
    while made < attempts or time.monotonic() < until:
        if made and stop.wait(compute_backoff(made, BACKOFF_BASE, BACKOFF_CAP)):
            break
        made += 1
        try:
            return open_link(generation)
        except LinkLost as exc:
            reason = str(exc)
            logger.info("%s connect to %s, attempt %d/%d: %s", protocol, address, made, max(attempts, made), reason)
    raise BrokerConnectionError(f"cannot connect to {protocol} broker {address} ({made} attempts): {reason}")


class Reconnector(Generic[L]):
    """The current connection of a consumer (`link`), and the outage it may be in."""

    def __init__(
        self,
        *,
        protocol: str,
        address: str,
        open_link: Callable[[int], L],
        drop_deliveries: Callable[[], int],
        stop: threading.Event,
        reconnect_deadline: float,
        logger: logging.Logger = log,
        first: L | None = None,
    ) -> None:
        """`open_link(generation)` opens a connection or raises LinkLost (worth another attempt; any
        other error goes to the caller); `drop_deliveries()` forgets the prefetched deliveries of a
        lost connection and returns how many. Its lines go to `logger` (the consumer's module).
        `first` is the first connection; without it, `connect` opens it here (CONNECT_ATTEMPTS attempts)."""
        if first is None:
            first = connect(
                open_link, generation=1, attempts=CONNECT_ATTEMPTS, stop=stop, protocol=protocol, address=address,
                logger=logger,
            )  # fmt: skip
        self.protocol = protocol
        self.address = address
        self.link: L | None = first
        self.generation = first.generation
        self.reconnect_deadline = reconnect_deadline
        self._open_link = open_link
        self._drop_deliveries = drop_deliveries
        self._stop = stop
        self._log = logger
        self._outage_since: float | None = None
        self._outage_attempts = 0
        self._outage_reason = ""
        self._next_attempt = 0.0

    def take(self) -> L | None:
        """Forget the current connection (the consumer is closing) and return it."""
        link, self.link = self.link, None
        return link

    def link_of(self, generation: int, what: str) -> L | None:
        """The live connection if it is generation `generation`; else None (logged): the connection that
        delivered the message is gone and the broker redelivers it, so there is nothing to `what`."""
        link = self.link
        if link is None or link.generation != generation or link.lost is not None:
            self._log.info(
                "%s of a message from %s connection %d skipped: that connection is gone and the broker "
                "redelivers the message",
                what,
                self.protocol,
                generation,
            )
            return None
        return link

    def usable(self, deadline: float) -> L | None:
        """The live connection, reconnecting when it is gone; None when `deadline` (monotonic) comes first."""
        while not self._stop.is_set():
            link = self.link
            if link is not None and link.lost is None:
                return link
            now = time.monotonic()
            if link is not None:
                self._lost(link, now)
            if self._outage_since is None:
                self._outage_since, self._outage_attempts, self._next_attempt = now, 0, now
            if now - self._outage_since > self.reconnect_deadline:
                since, self._outage_since = self._outage_since, None  # the next receive starts a new budget
                raise BrokerConnectionError(
                    f"{self.protocol} broker {self.address} unreachable for {now - since:.0f} s "
                    f"({self._outage_attempts} reconnect attempts): {self._outage_reason}"
                )
            if now < self._next_attempt:
                self._stop.wait(min(self._next_attempt, deadline) - now)
                if time.monotonic() < self._next_attempt:
                    return None  # the caller's timeout came first
                continue
            if not self._reopen() and time.monotonic() >= deadline:
                return None
        return None

    def _lost(self, link: L, now: float) -> None:
        self.link = None
        link.abort()
        dropped = self._drop_deliveries()
        self._log.warning(
            "%s connection %d to %s lost (%s); %d unacked prefetched message(s) dropped, "
            "the broker redelivers them; reconnecting",
            self.protocol,
            link.generation,
            self.address,
            link.lost,
            dropped,
        )
        self._outage_since, self._outage_attempts, self._next_attempt = link.lost_at or now, 0, now
        self._outage_reason = link.lost or ""

    def _reopen(self) -> bool:
        """One attempt to open a new connection; on failure, the time of the next is set."""
        self._outage_attempts += 1
        self.generation += 1
        try:
            self.link = self._open_link(self.generation)
        except LinkLost as exc:
            self._outage_reason = str(exc)
            self._next_attempt = time.monotonic() + compute_backoff(self._outage_attempts, BACKOFF_BASE, BACKOFF_CAP)
            attempts = self._outage_attempts
            self._log.info("%s reconnect to %s, attempt %d: %s", self.protocol, self.address, attempts, exc)
            return False
        since = self._outage_since if self._outage_since is not None else time.monotonic()
        outage = time.monotonic() - since
        self._log.info("%s consumer reconnected to %s after %.1f s", self.protocol, self.address, outage)
        self._outage_since = None
        return True


class ReconnectingConsumer(Consumer, Generic[C, K]):
    """A consumer's one connection (a `Reconnector`), re-opened by the thread that calls `receive`.

    A subclass opens a connection (`_open_link`), takes a live connection's next delivery (`_take`)
    and forgets the deliveries of a lost one (`_drain`); its `ack` and `release` find the connection
    of a message with `self._conn.link_of`.
    """

    def __init__(self, config: C, *, reconnect_deadline: float, logger: logging.Logger) -> None:
        config.check_files()
        self.config = config
        self._lock = threading.Lock()  # one receive at a time; `close` waits for it
        self._stop = threading.Event()
        self._closed = False
        self._conn: Reconnector[K] = Reconnector(
            protocol=config.protocol,
            address=config.address,
            open_link=self._open_link,
            drop_deliveries=self._drain,
            stop=self._stop,
            reconnect_deadline=reconnect_deadline,
            logger=logger,
        )

    @abstractmethod
    def _open_link(self, generation: int) -> K:
        """Open connection number `generation` and subscribe; LinkLost when another attempt may succeed."""

    @abstractmethod
    def _take(self, link: K, deadline: float) -> Message | None:
        """The next delivery of `link`, waiting until `deadline` (monotonic) at most; None when none came, the
        connection was lost, or the consumer is stopping."""

    @abstractmethod
    def _drain(self) -> int:
        """Forget every prefetched delivery; how many there were."""

    def receive(self, timeout: float) -> Message | None:
        if self._closed:
            raise TransportError(f"{self.config.protocol} consumer for {self.config.address} is closed")
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            while not self._stop.is_set():
                link = self._conn.usable(deadline)
                if link is None:
                    return None
                message = self._take(link, deadline)
                if message is not None:
                    return message
                if link.lost is None and time.monotonic() >= deadline:
                    return None
        return None

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            link = self._conn.take()
            if link is not None:
                link.close()
            self._drain()


class ReconnectingPublisher(Publisher, Generic[C, K]):
    """A publisher's one connection: opened in the constructor, re-opened by the sending thread when lost.

    A subclass opens a connection (`_open_link`) and sends through `_confirmed`, with an action that
    raises LinkLost when the broker did not confirm.
    """

    def __init__(self, config: C, *, exclusive: bool, logger: logging.Logger) -> None:
        """`exclusive`: one send at a time (for a client library whose connections are not thread-safe);
        otherwise only opening a connection is serialised. Lines go to `logger` (the subclass's module)."""
        config.check_files()
        self.config = config
        self._log = logger
        self._lock = threading.Lock()  # the connection, its generation and `_closed`
        self._exclusive: AbstractContextManager[object] = threading.Lock() if exclusive else contextlib.nullcontext()
        self._stop = threading.Event()
        self._closed = False
        self._generation = 1
        self._link: K | None = self._connect(CONNECT_ATTEMPTS)

    @abstractmethod
    def _open_link(self, generation: int) -> K:
        """Open connection number `generation`; LinkLost when another attempt may succeed."""

    def _connect(self, attempts: int, min_seconds: float = 0.0) -> K:
        return connect(
            self._open_link,
            generation=self._generation,
            attempts=attempts,
            min_seconds=min_seconds,
            stop=self._stop,
            protocol=self.config.protocol,
            address=self.config.address,
            logger=self._log,
        )

    def _current_link(self) -> K:
        with self._lock:
            if self._closed:
                raise TransportError(f"{self.config.protocol} publisher for {self.config.address} is closed")
            link = self._link
            if link is not None and link.lost is None:
                return link
            if link is not None:
                link.abort()
                self._link = None
            self._generation += 1
            self._link = self._connect(RECONNECT_ATTEMPTS, RECONNECT_SECONDS)
            return self._link

    def _confirmed(self, action: Callable[[K], None], what: str) -> None:
        """Run `action` on the current connection until the broker took `what`, reconnecting between tries."""
        reason = ""
        with self._exclusive:
            for attempt in range(1, SEND_ATTEMPTS + 1):
                link = self._current_link()
                try:
                    action(link)
                    return
                except LinkLost as exc:
                    # what was sent may or may not have reached the broker: sending again may duplicate it,
                    # which the at-least-once contract allows; not sending could lose it
                    reason = str(exc)
                    link.abort()
                    self._log.warning(
                        "%s send of %s to %s not confirmed (%s), attempt %d/%d",
                        self.config.protocol,
                        what,
                        self.config.address,
                        reason,
                        attempt,
                        SEND_ATTEMPTS,
                    )
                if attempt < SEND_ATTEMPTS:
                    self._stop.wait(compute_backoff(attempt, BACKOFF_BASE, BACKOFF_CAP))  # `close` cuts it short
        raise BrokerConnectionError(
            f"{self.config.protocol} broker {self.config.address} did not confirm {what} "
            f"in {SEND_ATTEMPTS} attempts: {reason}"
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._stop.set()  # ends a wait between attempts: that send then finds the publisher closed
        with self._exclusive, self._lock:
            link, self._link = self._link, None
        if link is not None:
            link.close()
