"""Fixtures for the inbound endpoint tests: a FluentCRM connection, posting helpers and a
whole-database row count to prove an error response wrote nothing but its log row."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from bridge.extensions import db

from .payloads import CRM_BASE

FLUENT_SETTINGS = {"base_url": CRM_BASE, "username": "api-user", "app_password": "abcd efgh ijkl mnop"}


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    # responses-mocked CRMs live at crm.example.com: there is no DNS here, so skip resolution.
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True}


@pytest.fixture
def fluent_key(make_connection) -> str:
    """A FluentCRM connection named ``fluent`` with API settings; returns its access key."""
    return make_connection("fluent", "fluentcrm", **FLUENT_SETTINGS)


@pytest.fixture
def table_counts(app) -> Callable[[], dict[str, int]]:
    """Rows per table, for "nothing but the log row was written" checks."""

    def count() -> dict[str, int]:
        with app.app_context():
            return {
                table.name: db.session.scalar(select(func.count()).select_from(table)) or 0
                for table in db.metadata.sorted_tables
            }

    return count


@pytest.fixture
def only_log_row(table_counts):
    """Use as ``with only_log_row():`` around one request that must write only its log row."""
    from contextlib import contextmanager

    @contextmanager
    def check():
        before = table_counts()
        yield
        after = table_counts()
        changed = {name: after[name] - before[name] for name in after if after[name] != before[name]}
        assert changed == {"webhook_event": 1}

    return check


@pytest.fixture
def hook(client):
    """``hook(action, key, body=None, **params)``: POST a webhook; JSON bodies by default."""

    def send(
        action: str | None,
        key: str | None,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
        method: str = "POST",
        **params: Any,
    ):
        query = {k: v for k, v in {"wpf_action": action, "access_key": key, **params}.items() if v is not None}
        data: Any = None
        if body is not None:
            data = body if isinstance(body, str | bytes) else json.dumps(body)
            content_type = content_type or "application/json"
        return client.open(
            "/", method=method, query_string=query, data=data, headers=headers or {}, content_type=content_type
        )

    return send


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """scrypt at production cost takes ~0.5 s a hash; these tests check where hashes go, not
    their cost, so they use a cheap werkzeug method (check_password still verifies it)."""
    from werkzeug.security import generate_password_hash

    from bridge.accounts import passwords

    def cheap(password: str) -> str:
        return generate_password_hash(password, "pbkdf2:sha256:1")

    monkeypatch.setattr(passwords, "hash_password", cheap)


@pytest.fixture
def register_adapter(monkeypatch):
    """``register_adapter(cls)``: make a test adapter class a connection type for this test."""
    from bridge.connections import adapter_registry as adapters

    registry = dict(adapters.adapter_types())
    monkeypatch.setattr(adapters, "adapter_types", lambda: registry)

    def register(adapter_class) -> None:
        registry[adapter_class.type] = adapter_class

    return register
