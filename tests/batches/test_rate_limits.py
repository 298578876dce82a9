"""CRM rate limits kept by every process together (``bridge.connections.rate_limits``): counts
live in the shared ``limits`` storage (the database here), a batch gets half of each window, and
a request that does not fit waits for the next window instead of earning a 429."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.connections.rate_limits import CrmRateLimits, batch_calls, throttle_for
from bridge.extensions import db
from bridge.ratelimit import DatabaseStorage
from crm_adapters.base import RateLimit


class Clock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def limits(app) -> Any:
    """Two "processes": two limiters on one database storage, with one clock."""
    clock = Clock()
    with app.app_context():
        storage = DatabaseStorage(db.engine)
        yield (
            clock,
            CrmRateLimits(storage, clock=clock, sleep=clock.sleep),
            CrmRateLimits(storage, clock=clock, sleep=clock.sleep),
        )


def test_processes_share_one_window(limits):
    clock, first, second = limits
    limit = RateLimit(requests=5, seconds=1)
    for limiter in (first, second, first, second, first):
        with limiter.throttle(1, limit):
            pass
    assert clock.slept == []
    with second.throttle(1, limit):  # the sixth in this second waits for the next one
        pass
    assert clock.slept == [pytest.approx(1.0)]


def test_a_batch_leaves_half_of_each_window_to_registrations_and_webhooks(limits):
    clock, limiter, _ = limits
    limit = RateLimit(requests=100, seconds=10)
    with batch_calls():
        for _ in range(50):
            with limiter.throttle(7, limit):
                pass
    assert clock.slept == []
    for _ in range(50):  # a registration's push still fits at once
        with limiter.throttle(7, limit):
            pass
    assert clock.slept == []
    with batch_calls(), limiter.throttle(7, limit):  # the batch waits for the next window
        pass
    assert clock.slept == [pytest.approx(10.0)]


def test_connections_are_counted_apart(limits):
    clock, limiter, _ = limits
    limit = RateLimit(requests=1, seconds=1)
    with limiter.throttle(1, limit), limiter.throttle(2, limit):
        pass
    assert clock.slept == []


def test_at_most_n_requests_at_once(limits):
    clock, first, second = limits
    limit = RateLimit(concurrent=2)
    with first.throttle(3, limit), second.throttle(3, limit):
        entered = second.throttle(3, limit)
        released: list[bool] = []

        def release_one(seconds: float) -> None:  # the third waits until a slot frees
            released.append(True)
            first.storage.incr("crm-concurrent:3", 60, -1)

        first.sleep = second.sleep = release_one
        with entered:
            pass
        assert released == [True]
    assert clock.slept == []


def test_an_adapter_without_a_limit_is_not_throttled(app):
    with app.app_context():
        assert throttle_for(1, None) is None
        assert throttle_for(1, RateLimit(requests=5)) is not None
