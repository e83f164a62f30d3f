"""The one backoff function of the system: capped exponential backoff with full jitter."""

from __future__ import annotations

import random

DEFAULT_BASE = 0.2
DEFAULT_CAP = 30.0


def compute_backoff(
    attempt: int, base: float = DEFAULT_BASE, cap: float = DEFAULT_CAP, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number `attempt` (1-based): uniform in [0, min(cap, base * 2**(attempt-1))].

    Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads reconnecting
    clients so that a restarted broker does not meet a synchronised storm.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    ceiling = min(cap, base * (2 ** min(attempt - 1, 62)))
    return (rng or random).uniform(0.0, ceiling)
