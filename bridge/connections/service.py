"""Connections: creating and removing them, access keys (hashed, rotation with a grace period),
building and testing an adapter for a connection. Their settings' rules are in
``bridge.connections.settings``."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from bridge import crypto
from bridge.connections.adapter_registry import adapter_class
from bridge.connections.crm_locks import tag_guard_for
from bridge.connections.rate_limits import throttle_for
from bridge.connections.settings import (
    IncompleteConnection,
    InvalidConnection,
    UnreadableSecrets,
    apply_settings,
    effective_settings,
    missing_among,
    public_from,
    read_settings,
    secret_values,
)
from bridge.connections.token_refresh import guard_for
from bridge.database import end_transaction
from bridge.extensions import db
from bridge.models import AccessKey, Connection, iso, utcnow
from bridge.outbound.client import OutboundClient, outbound_client
from crm_adapters.base import Adapter, HttpClient

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_GRACE_HOURS = 24 * 30  # the longest an old key may keep working after a rotation
ACCESS_KEY_PREFIX = "cbk_"


class ConnectionExists(InvalidConnection):
    """The name is taken (the API answers 409 rather than 422)."""


def store_changed_settings(connection_id: int, adapter: Adapter, *, commit: bool = True) -> list[str]:
    """Store what ``adapter`` changed on its connection (refreshed tokens): at once, so a
    refresh token the CRM rotated is never lost with a failed attempt. With ``commit=False``
    the change joins the session's open transaction. Returns the names stored (never the
    values: they are secrets)."""
    changes = adapter.settings_to_store()
    if not changes:
        return []
    connection = db.session.get(Connection, connection_id)
    if connection is None:
        return []
    apply_settings(connection, changes, judge_connection=False)
    if commit:
        db.session.commit()
    logger.info("connection %s: stored the settings its CRM changed (%s)", connection.name, ", ".join(sorted(changes)))
    return sorted(changes)


def create_connection(name: str, type_slug: str, settings: Mapping[str, Any] | None = None) -> tuple[Connection, str]:
    """Create a connection and its first access key. Returns the key in full: it is shown once."""
    problems = []
    if not NAME_PATTERN.match(name or ""):
        problems.append("name must be a lower-case slug (letters, digits, - and _)")
    elif db.session.scalar(select(Connection.id).where(Connection.name == name)):
        raise ConnectionExists([f"a connection named {name!r} exists"])
    adapter_class(type_slug)  # raises UnknownAdapterType
    if problems:
        raise InvalidConnection(problems)
    connection = Connection(name=name, type=type_slug, settings={})
    apply_settings(connection, settings or {})
    db.session.add(connection)
    key = _add_access_key(connection)
    db.session.flush()
    return connection, key


def _add_access_key(connection: Connection) -> str:
    key = crypto.new_token(ACCESS_KEY_PREFIX)
    connection.access_keys.append(AccessKey(key_hash=crypto.token_hash(key), hint=key[-4:]))
    return key


def rotate_access_key(connection: Connection, grace_hours: float = 24) -> str:
    """A new key; current keys keep working for ``grace_hours`` (0: revoked at once)."""
    now = utcnow()
    until = now + timedelta(hours=grace_hours)
    for key in connection.access_keys:
        if key.expires_at is None or key.expires_at > until:
            key.expires_at = until
    new_key = _add_access_key(connection)
    db.session.flush()
    return new_key


def find_by_access_key(key: str | None) -> Connection | None:
    """The connection this key selects, or None. Looked up by SHA-256, confirmed in constant time."""
    if not key or len(key) > 512:
        return None
    digest = crypto.token_hash(key)
    # One query: the key with its connection (the inbound hot path needs both).
    row = db.session.scalar(
        select(AccessKey).options(joinedload(AccessKey.connection)).where(AccessKey.key_hash == digest)
    )
    if row is None or not crypto.same_secret(row.key_hash, digest):
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return row.connection


def get_connection(name: str) -> Connection | None:
    return db.session.scalar(select(Connection).where(Connection.name == name))


def any_connection_exists() -> bool:
    return db.session.scalar(select(Connection.id).limit(1)) is not None


def adapter_for(type_slug: str, settings: Mapping[str, Any], http: HttpClient, *, connection_id: int) -> Adapter:
    """A connection's adapter with crm-bridge's cross-process guards for OAuth refreshes
    (``bridge.connections.token_refresh``) and tag creation (``bridge.connections.crm_locks``):
    every adapter crm-bridge builds for a connection comes from here."""
    adapter = adapter_class(type_slug)(settings, http)
    adapter.refresh_guard = guard_for(connection_id)
    adapter.tag_guard = tag_guard_for(connection_id)
    adapter.throttle = throttle_for(connection_id, adapter.rate_limit)
    return adapter


def build_adapter(connection: Connection, http: OutboundClient | None = None) -> Adapter:
    """The connection's adapter, with an outbound client that redacts its secrets."""
    client = http or outbound_client(secret_values(connection))
    return adapter_for(connection.type, effective_settings(connection), client, connection_id=connection.id)


def webhook_urls(base_url: str, access_key: str) -> dict[str, str]:
    base = base_url.rstrip("/") + "/"
    actions = ("add", "update", "update_tags")
    return {action: f"{base}?wpf_action={action}&access_key={access_key}" for action in actions}


# -- shared by the CLI, the API and the admin console -----------------------------------------

DEFAULT_BASE_URL = "http://127.0.0.1:5000"


def base_url(fallback: str | None = None) -> str:
    """Where this service is reachable, for webhook URLs: ``BRIDGE_BASE_URL``, else ``fallback``
    (the API passes the request's host), else the embedded default."""
    configured = current_app.config.get("BRIDGE_BASE_URL") if has_app_context() else None
    return (configured or fallback or DEFAULT_BASE_URL).rstrip("/")


def list_connections() -> list[Connection]:
    return list(db.session.scalars(select(Connection).order_by(Connection.name)))


def active_access_keys(connection: Connection) -> list[AccessKey]:
    """Keys that still open the connection (the current one and any in their grace period)."""
    now = utcnow()
    return [key for key in connection.access_keys if key.expires_at is None or key.expires_at > now]


def connection_to_json(connection: Connection) -> dict[str, Any]:
    """A connection as the CLI, API and admin console show it: secrets masked, and of each
    access key only its last four characters (the key itself is shown once, when made).
    ``unreadable_settings`` names the secrets this SECRET_KEY cannot decrypt."""
    settings, unreadable = read_settings(connection)
    return {
        "name": connection.name,
        "type": connection.type,
        "enabled": bool(settings.get("enabled", True)),
        "settings": public_from(connection.type, dict(settings), unreadable),
        "missing_settings": missing_among(connection.type, settings, unreadable),
        "unreadable_settings": unreadable,
        "access_keys": [
            {"hint": "…" + key.hint, "created_at": iso(key.created_at), "expires_at": iso(key.expires_at)}
            for key in active_access_keys(connection)
        ],
        "created_at": iso(connection.created_at),
        "updated_at": iso(connection.updated_at),
    }


def remove_connection(connection: Connection) -> None:
    """Delete a connection. Its keys, tags, contact links and queued deliveries go with it
    (``ON DELETE CASCADE``); the inbound log keeps its rows with the name only."""
    db.session.delete(connection)
    db.session.flush()


def check_connection(connection: Connection, http: OutboundClient | None = None) -> str | None:
    """One cheap authenticated CRM call through the adapter. Returns None when the CRM was
    reached, else the adapter's sentence on what was checked instead (nothing was sent).

    Raises ``UnreadableSecrets`` when a stored secret cannot be decrypted and
    ``IncompleteConnection`` when required settings are missing (no request is made in either
    case), else whatever typed ``AdapterError`` the adapter raises.
    """
    settings, unreadable = read_settings(connection)
    if unreadable:
        raise UnreadableSecrets(connection.name, unreadable)
    missing = missing_among(connection.type, settings, unreadable)
    if missing:
        raise IncompleteConnection([f"missing required setting {name!r}" for name in missing])
    adapter = build_adapter(connection, http)
    end_transaction()  # no transaction (on SQLite: the write lock) is held while the CRM answers
    try:
        return adapter.check()
    finally:
        store_changed_settings(connection.id, adapter)
