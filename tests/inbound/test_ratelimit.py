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
    close_limiter(other_app)
    with other_app.app_context():
        db.session.remove()
        db.engine.dispose()
