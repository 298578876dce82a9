"""The retry schedule (``bridge.delivery.retry_schedule``, CONTRACT.md §5): backoff steps, ±20% jitter,
Retry-After, three days."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from bridge.delivery import retry_schedule

STEPS = [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800]


@pytest.mark.parametrize(("attempt", "base"), [*enumerate(STEPS, start=1), (10, 43200), (14, 43200)])
def test_backoff_follows_the_schedule_within_twenty_percent(attempt, base):
    rng = random.Random(attempt)
    delays = [retry_schedule.backoff_seconds(attempt, rng) for _ in range(500)]
    assert min(delays) >= base * 0.8 and max(delays) <= base * 1.2
    # Jitter really spreads retries out (both halves of the band are used).
    assert min(delays) < base * 0.9 and max(delays) > base * 1.1


def test_retry_after_replaces_the_backoff_and_is_capped_at_an_hour():
    assert retry_schedule.retry_delay(1, 2.0) == 2.0
    assert retry_schedule.retry_delay(9, 0) == 0
    assert retry_schedule.retry_delay(1, 7200) == 3600
    assert 4 <= retry_schedule.retry_delay(1, None, random.Random(1)) <= 6


def test_no_retry_is_scheduled_past_three_days_after_creation():
    created = datetime(2030, 1, 1)
    early = retry_schedule.next_attempt_at(attempt=1, created_at=created, now=created, retry_after=None)
    assert early is not None and timedelta(seconds=4) <= early - created <= timedelta(seconds=6)
    late_now = created + timedelta(days=2, hours=20)
    assert retry_schedule.next_attempt_at(attempt=12, created_at=created, now=late_now, retry_after=None) is None
    # A short Retry-After still fits in the window.
    assert retry_schedule.next_attempt_at(attempt=12, created_at=created, now=late_now, retry_after=60) is not None


def test_the_whole_schedule_gives_up_after_about_three_days():
    created = now = datetime(2030, 1, 1)
    attempt = 1
    rng = random.Random(7)
    while True:
        when = retry_schedule.next_attempt_at(attempt=attempt, created_at=created, now=now, retry_after=None, rng=rng)
        if when is None:
            break
        now, attempt = when, attempt + 1
    assert timedelta(days=2, hours=12) < now - created <= timedelta(days=3)
    assert 12 <= attempt <= 16
