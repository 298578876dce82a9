"""When a failed delivery is tried again (CONTRACT.md §5).

An error whose ``retryable`` is true is tried again after an exponential backoff with ±20%
jitter (about 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h, then every 12 h) until three
days after the row was created; a ``Retry-After`` replaces the delay, capped at one hour.
Anything else is final: the row is ``dead`` until replayed.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

BACKOFF_SECONDS: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800)
STEADY_BACKOFF_SECONDS = 12 * 3600
JITTER = 0.2
RETRY_AFTER_CAP_SECONDS = 3600
GIVE_UP_AFTER = timedelta(days=3)


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """The delay after failed attempt number ``attempt`` (1-based), jittered by ±20% so a CRM
    that comes back is not hit by every queued row in the same second."""
    base = BACKOFF_SECONDS[attempt - 1] if 1 <= attempt <= len(BACKOFF_SECONDS) else STEADY_BACKOFF_SECONDS
    spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return base * spread


def retry_delay(attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
    """The CRM's ``Retry-After`` (capped at an hour) when it sent one, else the backoff."""
    if retry_after is not None:
        return min(max(0.0, float(retry_after)), RETRY_AFTER_CAP_SECONDS)
    return backoff_seconds(attempt, rng)


def next_attempt_at(
    *, attempt: int, created_at: datetime, now: datetime, retry_after: float | None, rng: random.Random | None = None
) -> datetime | None:
    """When to try again, or None when that would be past the three-day limit (→ ``dead``)."""
    when = now + timedelta(seconds=retry_delay(attempt, retry_after, rng))
    if when > created_at + GIVE_UP_AFTER:
        return None
    return when
