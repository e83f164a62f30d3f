"""A consumer's one broker connection, re-opened from the receiving thread when it is lost.

Shared by the STOMP and AMQP consumers. One connection at a time (no reconnect storm): a lost
connection is aborted, the prefetched deliveries it leaves are dropped (the broker redelivers
them), and a new one is opened with capped exponential backoff and jitter, never past the
caller's receive deadline. An outage longer than `reconnect_deadline` raises
BrokerConnectionError once; the next receive starts a new budget.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from eventindex.backoff import compute_backoff
from eventindex.errors import BrokerConnectionError

log = logging.getLogger(__name__)

#: How long a consumer keeps reconnecting through one outage before `receive` raises.
RECONNECT_DEADLINE = 300.0
#: Cap and base of the wait between reconnection attempts (seconds), for consumers and publishers.
BACKOFF_BASE = 0.2
BACKOFF_CAP = 10.0


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


L = TypeVar("L", bound=Link)


class Reconnector(Generic[L]):
    """The current connection of a consumer (`link`), and the outage it may be in."""

    def __init__(
        self,
        protocol: str,
        address: str,
        first: L,
        open_link: Callable[[int], L],
        drop_deliveries: Callable[[], int],
        stop: threading.Event,
        reconnect_deadline: float,
        retry_on: type[BrokerConnectionError],
        logger: logging.Logger = log,
    ) -> None:
        """`open_link(generation)` opens a connection or raises `retry_on` (worth another attempt; any
        other error goes to the caller); `drop_deliveries()` forgets the prefetched deliveries of a
        lost connection and returns how many. Its lines go to `logger` (the consumer's module)."""
        self.protocol = protocol
        self.address = address
        self.link: L | None = first
        self.generation = first.generation
        self.reconnect_deadline = reconnect_deadline
        self._open_link = open_link
        self._drop_deliveries = drop_deliveries
        self._stop = stop
        self._retry_on = retry_on
        self._log = logger
        self._outage_since: float | None = None
        self._outage_attempts = 0
        self._outage_reason = ""
        self._next_attempt = 0.0

    def take(self) -> L | None:
        """Forget the current connection (the consumer is closing) and return it."""
        link, self.link = self.link, None
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
        except self._retry_on as exc:
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
