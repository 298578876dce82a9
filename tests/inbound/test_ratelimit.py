"""The failed-key limit: the database-backed ``limits`` storage, limits' Redis storage (when
``BRIDGE_TEST_REDIS_URL`` is set, as CI does), and that the limit holds across app instances
(separate processes share nothing but the storage)."""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from bridge import create_app
from bridge.extensions import db
from bridge.models import RateLimitCounter, utcnow
from bridge.ratelimit import DatabaseStorage, close_limiter, failed_key_limiter

REDIS_URL = os.environ.get("BRIDGE_TEST_REDIS_URL")
STORAGES = ["database"] + (["redis"] if REDIS_URL else [])


@pytest.fixture(params=STORAGES)
def storage_kind(request) -> str:
    return request.param


@pytest.fixture(autouse=True)
def close_storage(app):
    yield
    close_limiter(app)


@pytest.fixture
def app_config(app_config, storage_kind):
    if storage_kind == "redis":
        return {**app_config, "BRIDGE_RATELIMIT_STORAGE_URL": REDIS_URL}
    return app_config


def test_database_storage_counts_expires_and_restarts(app):
    with app.app_context():
        storage = DatabaseStorage(db.engine)
        assert storage.check()
        assert [storage.incr("k", 60) for _ in range(3)] == [1, 2, 3]
        assert storage.get("k") == 3
        assert 55 < storage.get_expiry("k") - time.time() <= 60
        with db.engine.begin() as connection:
            connection.execute(update(RateLimitCounter).values(expires_at=utcnow() - timedelta(seconds=1)))
        assert storage.get("k") == 0  # the window is over
        assert storage.incr("k", 60) == 1  # and a new one starts
        storage.clear("k")
        assert storage.get("k") == 0
        storage.incr("a", 60)
        assert storage.reset() == 1


def test_refused_only_past_the_limit_with_a_retry_after(app, storage_kind):
    address = f"198.51.100.{uuid.uuid4().int % 250}-{uuid.uuid4().hex[:6]}"
    with app.app_context():
        limiter = failed_key_limiter()
        for _ in range(20):
            assert not limiter.is_refused(address)
            limiter.record_failure(address)
        assert not limiter.is_refused(address)
        limiter.record_failure(address)
        assert limiter.is_refused(address)
        assert 1 <= limiter.retry_after(address) <= 60
        assert not limiter.is_refused(address + "-other")


def test_the_limit_holds_across_app_instances(app, app_config, storage_kind, client, fluent_key):
    """A second app on the same database (another gunicorn worker or machine) sees the failures."""
    address = f"203.0.113.{uuid.uuid4().int % 250}"
    environ = {"REMOTE_ADDR": address}
    other_app = create_app(app_config)
    other = other_app.test_client()
    for _ in range(21):
        response = other.get("/", query_string={"wpf_action": "test", "access_key": "cbk_wrong"}, environ_base=environ)
        assert response.status_code == 403
    refused = client.get("/", query_string={"wpf_action": "test", "access_key": fluent_key}, environ_base=environ)
    assert refused.status_code == 429
    assert refused.get_json()["error"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    elsewhere = client.get("/", query_string={"wpf_action": "test", "access_key": fluent_key})
    assert elsewhere.status_code == 200
    _close(other_app)


def _close(other_app) -> None:
    """Release a second app's limiter storage and database connections."""
    close_limiter(other_app)
    with other_app.app_context():
        db.session.remove()
        db.engine.dispose()


class StepClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(other_app, address: str, times: int) -> None:
    with other_app.app_context():
        other = failed_key_limiter()
        for _ in range(times):
            other.record_failure(address)


def test_a_clear_address_is_read_again_once_its_cache_time_is_over(app, app_config, storage_kind):
    """Another process's refusal reaches this one at most BRIDGE_FAILED_KEY_CACHE_SECONDS late."""
    address = f"192.0.2.{uuid.uuid4().int % 250}-{uuid.uuid4().hex[:6]}"
    other_app = create_app(app_config)
    with app.app_context():
        limiter = failed_key_limiter()
        assert limiter.clear_for_seconds == 1.0  # the default
        limiter.clock = clock = StepClock()
        assert not limiter.is_refused(address)  # read, and remembered as clear
        _fail(other_app, address, 21)
        clock.now += 0.5
        assert not limiter.is_refused(address)  # still inside this process's second
        clock.now += 0.6
        assert limiter.is_refused(address)  # read again: refused
        assert limiter.is_refused(address)  # and a refusal is never remembered as clear
    _close(other_app)


def test_a_failure_counted_here_is_seen_here_at_once(app, storage_kind):
    address = f"192.0.2.{uuid.uuid4().int % 250}-{uuid.uuid4().hex[:6]}"
    with app.app_context():
        limiter = failed_key_limiter()
        limiter.clock = StepClock()  # never moves: only record_failure can end the clear verdict
        assert not limiter.is_refused(address)
        for _ in range(21):
            limiter.record_failure(address)
        assert limiter.is_refused(address)


def test_cache_seconds_zero_reads_the_counter_every_time(app, app_config, storage_kind, monkeypatch):
    monkeypatch.setenv("BRIDGE_FAILED_KEY_CACHE_SECONDS", "0")
    address = f"192.0.2.{uuid.uuid4().int % 250}-{uuid.uuid4().hex[:6]}"
    uncached_app = create_app(app_config)
    other_app = create_app(app_config)
    with uncached_app.app_context():
        limiter = failed_key_limiter()
        assert limiter.clear_for_seconds == 0.0  # read from the environment
        limiter.clock = StepClock()
        assert not limiter.is_refused(address)
        _fail(other_app, address, 21)
        assert limiter.is_refused(address)
    _close(uncached_app)
    _close(other_app)


def test_many_addresses_do_not_grow_the_cache_without_bound(app):
    with app.app_context():
        limiter = failed_key_limiter()
        limiter.clock = clock = StepClock()
        limiter.MAX_REMEMBERED = 5
        for n in range(5):
            limiter.is_refused(f"198.18.0.{n}")
        clock.now += 2  # all five are stale now
        limiter.is_refused("198.18.1.1")
        assert list(limiter._clear_until) == ["198.18.1.1"]
