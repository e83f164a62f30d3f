"""Whole-write retries: a chunk or manifest write that failed because the store was unavailable is
retried whole, with backoff, until the store has been down longer than `--store-outage`.

botocore retries each S3 request a few times (`--store-attempts`), which covers blips. It cannot
cover an outage: its retry quota is shared by every thread of a client (500 tokens, 14 per retry,
so ~35 retries in all), and once spent, requests fail at their first error. A grid job that ran
for hours should not fail because the store restarted, so a write that failed with
StoreUnavailableError is retried here, with capped exponential backoff and full jitter, until the
store has been unavailable for `outage_seconds` since this write first failed. Writes are
write-once and compared on conflict (`producer.job.store_once`), so repeating one is safe.
Other errors (a conflict, a refused certificate, missing credentials) fail at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from eventindex.backoff import compute_backoff
from eventindex.errors import ConfigError, StoreUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds of store outage a job rides out before it fails (exit 4).
DEFAULT_OUTAGE_SECONDS = 120.0
MAX_OUTAGE_SECONDS = 24 * 3600.0
#: Backoff between whole-object retries: first waits up to 0.5 s, then doubling, at most 10 s.
RETRY_BASE = 0.5
RETRY_CAP = 10.0


@dataclass(frozen=True)
class WriteRetryPolicy:
    """How long a store outage one write rides out (`--store-outage`), and the backoff between its retries."""

    outage_seconds: float = DEFAULT_OUTAGE_SECONDS
    base: float = RETRY_BASE
    cap: float = RETRY_CAP

    def __post_init__(self) -> None:
        if not 0 <= self.outage_seconds <= MAX_OUTAGE_SECONDS:
            raise ConfigError(f"--store-outage must be in 0..{MAX_OUTAGE_SECONDS:.0f} seconds")


class WriteRetrier:
    """Retries whole writes for one job (see the module docstring); thread-safe. Says once, on
    stderr via logging, that the store is unavailable and the job is waiting for it."""

    def __init__(
        self,
        policy: WriteRetryPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._cancelled = threading.Event()
        self._sleep = sleep or self._cancelled.wait
        self._warned = threading.Event()
        #: whole-object retries made (all threads), for the job summary
        self.retries = 0
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """The job is stopping (an error elsewhere, an interrupt): no more waiting; writes that fail give up."""
        self._cancelled.set()

    def __call__(self, what: str, action: Callable[[], T]) -> T:
        """Run `action`; while it raises StoreUnavailableError, wait and run it again, for at most
        `outage_seconds` after its first failure. Then the last error propagates, saying for how
        long the store was unavailable."""
        policy = self.policy
        first_failure: float | None = None
        attempt = 0
        while True:
            try:
                return action()
            except StoreUnavailableError as exc:
                now = self._clock()
                if first_failure is None:
                    first_failure = now
                down = now - first_failure
                left = policy.outage_seconds - down
                if self._cancelled.is_set():
                    raise StoreUnavailableError(f"{exc}; not retried: the job is stopping") from exc
                if left <= 0:
                    raise StoreUnavailableError(
                        f"{exc}; store unavailable for {down:.0f} s (--store-outage {policy.outage_seconds:g})"
                    ) from exc
                attempt += 1
                with self._lock:
                    self.retries += 1
                if not self._warned.is_set():
                    self._warned.set()
                    log.warning(
                        "store unavailable (writing %s), retrying each write for up to %g s: %s",
                        what,
                        policy.outage_seconds,
                        exc,
                    )
                self._sleep(min(compute_backoff(attempt, policy.base, policy.cap), left))
