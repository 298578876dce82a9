"""Local registration and profile changes, with their pushes written in the same transaction.

This is the outbox's producer side for users: ``register_user`` creates the user and one
``contact.upsert`` row per enabled connection with ``push_on_register``; nothing here talks to a
CRM, so a registration never waits for one. The caller commits.

Registration is the hot path of local sign-ups, so it reads connection settings through the
per-process cache (``bridge.connections.settings_cache``: no decryption per request) and writes its outbox
rows with one bulk insert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bridge.accounts import users
from bridge.connections.settings_cache import cached_flag, cached_is_complete
from bridge.delivery import outbox
from bridge.extensions import db
from bridge.models import Connection, User


def connections_with(flag: str) -> list[Connection]:
    """Enabled, complete connections whose boolean setting ``flag`` is on. An incomplete one
    (``make serve``'s ``default`` before its credentials are set) gets no push: each would die
    at once (CONTRACT §2)."""
    return [
        connection
        for connection in db.session.scalars(select(Connection).order_by(Connection.id))
        if cached_flag(connection, "enabled", True) and cached_flag(connection, flag) and cached_is_complete(connection)
    ]


@dataclass
class Registered:
    """A registered user (flushed, not committed) and the local tags it was given."""

    user: User
    local_tags: list[str]


def register_user(**fields: Any) -> User:
    """Create a local user and queue its registration push to every connection that wants it.

    Takes the keyword arguments of :func:`register`. Raises ``users.EmailTaken``,
    ``users.UnknownRole``, ``users.ForbiddenRole``.
    """
    return register(**fields).user


def register(
    *,
    email: str,
    username: str | None = None,
    password: str | None = None,
    first_name: str = "",
    last_name: str = "",
    role: str | None = None,
    meta: Mapping[str, Any] | None = None,
    signup_country: str | None = None,
    tags: Iterable[str] = (),
) -> Registered:
    """``register_user``, also returning the local tags as stored (so a caller can answer
    with the new user's JSON without reading it back). ``meta.signup_country`` is
    ``signup_country`` (trusted), never one in ``meta`` (``users.create_user``)."""
    user = users.create_user(
        email=email,
        username=username,
        password=password,
        first_name=first_name,
        last_name=last_name,
        role=users.choose_role(role, "subscriber"),
        meta=meta,
        signup_country=signup_country,
        check_role=True,
    )
    local_tags = list(tags)
    added: list[str] = []
    if local_tags:
        added, _ = users.replace_tags(user, None, local_tags)
    outbox.enqueue_many(
        outbox.CONTACT_UPSERT,
        connections=connections_with("push_on_register"),
        user=user,
        payload={"reason": "register"},
    )
    return Registered(user, added)


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
