"""Fixtures for the CRM activity webhook: a configured secret, users linked to contacts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bridge.extensions import db

SECRET = "activity-secret-0123456789"


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "CRM_WEBHOOK_SECRET": SECRET}


@pytest.fixture
def make_lead(app, make_connection) -> Callable[..., int]:
    """``make_lead(email, *contact_ids, connection="fluent") -> user id``: a user linked to each
    contact id in turn (so all but the last are earlier links), committed."""
    from bridge.accounts.users import create_user, link_contact
    from bridge.connections.service import get_connection

    created: set[str] = set()

    def factory(email: str, *contact_ids: str, connection: str = "fluent") -> int:
        # Created before our own session opens a transaction: on SQLite every transaction takes
        # the write lock (BEGIN IMMEDIATE), so a nested session would wait for ours.
        if connection not in created:
            make_connection(connection, "fluentcrm")
            created.add(connection)
        with app.app_context():
            row = get_connection(connection)
            user = create_user(email=email)
            for contact_id in contact_ids:
                link_contact(user, row, contact_id)
            db.session.commit()
            return user.id

    return factory
