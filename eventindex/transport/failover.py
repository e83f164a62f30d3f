"""A publisher over several brokers (`--broker` repeated): failover, with bounded attempts.

Policy:
- The URLs are tried in the order given (the first is the preferred broker). The publisher that
  works is kept for every later message; when it fails, the next URL in the list is tried
  (rotation), and so on around the list.
- One *pass* tries every URL once. Each adapter already reconnects on its own, with its own bounded
  attempts (a multi-host STOMP URL, too, fails over inside its adapter), so this layer does not
  retry a URL by itself: it only moves on. With several URLs it makes FAILOVER_PASSES passes,
  waiting `compute_backoff` between passes (a standby broker taking over needs a few seconds);
  with one URL, one pass (the adapter's own loop is the retry layer).
- A URL is given up on after any TransportError from connecting or sending (unreachable, dropped,
  refused). When every attempt failed, the error is BrokerConnectionError if every failure was one
  (nothing reachable: the caller may spool), else TransportError (a broker answered and refused:
  a configuration problem, which spooling would hide). Its one line names each broker's reason.
- A message whose send failed may still have reached that broker: it is sent again to the next one,
  which may duplicate it. The contract is at-least-once; consumers are idempotent.

Every URL is validated when the publisher is built (ConfigError), without connecting: the first
connection is made by the first `send`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from eventindex.backoff import compute_backoff
from eventindex.errors import BrokerConnectionError, ConfigError, TransportError
from eventindex.transport.base import Publisher
from eventindex.transport.schemes import check_broker_url, open_publisher, redacted

log = logging.getLogger(__name__)

#: Passes over the URL list before giving up, when there are several URLs.
FAILOVER_PASSES = 2
#: Base and cap of the wait between passes (seconds).
BACKOFF_BASE = 0.5
BACKOFF_CAP = 5.0
MAX_BROKERS = 16


class FailoverPublisher(Publisher):
    """Sends each message to the first broker of `urls` that takes it (see the module docstring)."""

    def __init__(
        self,
        urls: Sequence[str],
        opener: Callable[[str], Publisher] = open_publisher,
        passes: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        if not urls:
            raise ConfigError("at least one --broker is needed")
        if len(urls) > MAX_BROKERS:
            raise ConfigError(f"at most {MAX_BROKERS} brokers")
        if len(set(urls)) != len(urls):
            raise ConfigError("a broker URL is given twice")
        for url in urls:
            check_broker_url(url)
        self.urls = tuple(urls)
        self.passes = passes if passes is not None else (FAILOVER_PASSES if len(urls) > 1 else 1)
        if self.passes < 1:
            raise ConfigError("failover passes must be at least 1")
        self._opener = opener
        #: every sleep is a wait on this event: setting it ends the waiting (and the attempts) early
        self._stop = stop or threading.Event()
        self._index = 0
        self._current: Publisher | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def current_url(self) -> str:
        """The broker in use (or to be tried next), without options."""
        return redacted(self.urls[self._index])

    def send(self, body: bytes, headers: Mapping[str, str] | None = None, group: str | None = None) -> None:
        self._deliver(lambda publisher: publisher.send(body, headers, group))

    def send_batch(self, messages: Sequence[tuple[bytes, Mapping[str, str]]], group: str | None = None) -> None:
        self._deliver(lambda publisher: publisher.send_batch(messages, group))

    def _deliver(self, action: Callable[[Publisher], None]) -> None:
        with self._lock:
            if self._closed:
                raise TransportError("the broker publisher is closed")
            reasons: dict[str, str] = {}
            all_unreachable = True
            for attempt in range(1, self.passes + 1):
                if attempt > 1 and self._stop.wait(compute_backoff(attempt - 1, BACKOFF_BASE, BACKOFF_CAP)):
                    break
                for _ in self.urls:
                    url = self.urls[self._index]
                    try:
                        if self._current is None:
                            self._current = self._opener(url)
                        action(self._current)
                        return
                    except TransportError as exc:
                        all_unreachable = all_unreachable and isinstance(exc, BrokerConnectionError)
                        reasons[redacted(url)] = str(exc)
                        self._drop()
                        self._index = (self._index + 1) % len(self.urls)
                        if len(self.urls) > 1:
                            log.warning(
                                "broker %s failed (%s); failing over to %s", redacted(url), exc, self.current_url
                            )
                    if self._stop.is_set():
                        break
            detail = "; ".join(f"{url}: {reason}" for url, reason in reasons.items())
            if all_unreachable:
                raise BrokerConnectionError(f"no broker reachable ({len(self.urls)} tried): {detail}")
            raise TransportError(f"no broker took the message: {detail}")

    def _drop(self) -> None:
        current, self._current = self._current, None
        if current is not None:
            with contextlib.suppress(TransportError):
                current.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()
