"""Local registration and profile changes, with their pushes written in the same transaction.

This is the outbox's producer side for users: ``register_user`` creates the user and one
``contact.upsert`` row per enabled connection with ``push_on_register``; nothing here talks to a
CRM, so a registration never waits for one. The caller commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select

from bridge import outbox, users
from bridge.connections import effective_settings
from bridge.extensions import db
from bridge.models import Connection, User


def connections_with(flag: str) -> list[Connection]:
    """Enabled connections whose boolean setting ``flag`` is on."""
    found = []
    for connection in db.session.scalars(select(Connection).order_by(Connection.id)):
        settings = effective_settings(connection)
        if settings.get("enabled", True) and settings.get(flag):
            found.append(connection)
    return found


def register_user(
    *,
    email: str,
    username: str | None = None,
    password: str | None = None,
    first_name: str = "",
    last_name: str = "",
    role: str | None = None,
    meta: Mapping[str, Any] | None = None,
    tags: Iterable[str] = (),
) -> User:
    """Create a local user and queue its registration push to every connection that wants it.

    Raises ``users.EmailTaken``, ``users.UnknownRole``, ``users.ForbiddenRole``.
    """
    resolved_role = users.resolve_role(role, "subscriber")
    user = users.create_user(
        email=email,
        username=username,
        password=password,
        first_name=first_name,
        last_name=last_name,
        role=resolved_role,
        meta=meta,
    )
    local_tags = list(tags)
    if local_tags:
        users.replace_tags(user, None, local_tags)
    for connection in connections_with("push_on_register"):
        outbox.enqueue(outbox.CONTACT_UPSERT, connection=connection, user=user, payload={"reason": "register"})
    return user


def queue_profile_update(user: User, changed: Iterable[str]) -> list[int]:
    """Queue a ``contact.update`` to every connection with ``push_updates``; returns row ids."""
    changed_fields = sorted(set(changed))
    if not changed_fields:
        return []
    rows = [
        outbox.enqueue(outbox.CONTACT_UPDATE, connection=connection, user=user, payload={"changed": changed_fields})
        for connection in connections_with("push_updates")
    ]
    return [row.id for row in rows]
