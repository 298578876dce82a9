"""Access key → connection, cached per process for a few seconds (the inbound hot path).

Every webhook presents an access key. Looking it up costs a query plus decrypting the
connection's secret settings, on every request; the answer almost never changes. So each app
keeps, per process, a snapshot of what a key opens (:class:`KeyedConnection`: the connection's
id, name, type, decrypted settings and the key's expiry), keyed by the key's SHA-256 and kept
for ``BRIDGE_ACCESS_KEY_CACHE_SECONDS`` (default 5; 0 turns the cache off).

Invalidation, and its limits (the trade-off):

* In this process a change is seen at once: any ORM insert, update or delete of a
  ``Connection`` or ``AccessKey`` row (rotating or revoking a key, changing settings, removing
  a connection, whether from the CLI, the API or the admin console) empties every cache when
  it is flushed and again when its transaction commits. A lookup that raced with such a change
  does not store its (possibly stale) answer: each store checks a generation counter.
* Other processes (the other gunicorn workers) keep their snapshot until it is
  ``BRIDGE_ACCESS_KEY_CACHE_SECONDS`` old: a key revoked at once (``--grace 0``) or a connection
  removed in one process can keep working in another for at most that long, and a settings
  change reaches it as late. A key's grace-period expiry itself is checked on every request.
* Unknown keys are never cached, so a new key works everywhere at once.

A hit is still confirmed with a constant-time comparison of the stored hash.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session

from bridge import crypto
from bridge.connections.settings import missing_from, read_settings, secret_values_from
from bridge.extensions import db
from bridge.models import AccessKey, Connection, utcnow

EXTENSION_KEY = "bridge.access_key_cache"
DEFAULT_TTL_SECONDS = 5.0
MAX_KEY_LENGTH = 512
_SESSION_FLAG = "bridge.connections_changed"

_LOOKUP = (
    select(
        AccessKey.key_hash,
        AccessKey.expires_at,
        Connection.id,
        Connection.name,
        Connection.type,
        Connection.settings,
    )
    .join(Connection, Connection.id == AccessKey.connection_id)
    .where(AccessKey.key_hash == bindparam("digest"))
)


@dataclass(frozen=True)
class KeyedConnection:
    """What an access key opens, ready to serve a webhook (settings already decrypted).

    ``settings`` is shared by every request that hits the cache: treat it as read-only.
    ``unreadable`` names secrets this SECRET_KEY cannot decrypt (left out of ``settings``):
    such a connection serves no webhook (``ConnectionRuntime.from_keyed`` refuses it).
    """

    connection_id: int
    name: str
    type: str
    settings: Mapping[str, Any]
    secrets: tuple[str, ...]
    can_call_crm: bool
    key_hash: str
    key_expires_at: datetime | None
    loaded_at: float
    unreadable: tuple[str, ...] = ()


class AccessKeyCache:
    """One app's snapshots in this process; thread-safe (threaded servers share it)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.generation = 0
        self._entries: dict[str, KeyedConnection] = {}
        self._lock = threading.Lock()
        _CACHES.add(self)

    def get(self, digest: str) -> KeyedConnection | None:
        entry = self._entries.get(digest)
        if entry is None or time.monotonic() - entry.loaded_at >= self.ttl:
            return None
        return entry

    def put(self, digest: str, entry: KeyedConnection, generation: int) -> None:
        """Store ``entry`` unless a change was flushed since the lookup that built it began."""
        if self.ttl <= 0:
            return
        with self._lock:
            if generation == self.generation:
                self._entries[digest] = entry

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()


_CACHES: weakref.WeakSet[AccessKeyCache] = weakref.WeakSet()


def invalidate_all() -> None:
    """Forget every snapshot in this process (all apps): a connection or key changed."""
    for cache in list(_CACHES):
        cache.clear()


def key_cache() -> AccessKeyCache:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    cache = app.extensions.get(EXTENSION_KEY)
    if cache is None:
        ttl = float(app.config.get("BRIDGE_ACCESS_KEY_CACHE_SECONDS", DEFAULT_TTL_SECONDS))
        cache = app.extensions[EXTENSION_KEY] = AccessKeyCache(ttl)
    return cache


def resolve_access_key(key: str | None) -> KeyedConnection | None:
    """What ``key`` opens now, or None (unknown, expired, or too long to be a key).

    Same answer as :func:`bridge.connections.service.find_by_access_key`, without a query or any
    decryption while the snapshot is fresh. A miss reads inside the session's transaction.
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        return None
    digest = crypto.token_hash(key)
    cache = key_cache()
    entry = cache.get(digest)
    if entry is None:
        generation = cache.generation
        entry = _load(digest)
        if entry is None:
            return None
        cache.put(digest, entry, generation)
    if not crypto.same_secret(entry.key_hash, digest):
        return None
    if entry.key_expires_at is not None and entry.key_expires_at <= utcnow():
        return None
    return entry


def _load(digest: str) -> KeyedConnection | None:
    row = db.session.execute(_LOOKUP, {"digest": digest}).first()
    if row is None:
        return None
    key_hash, expires_at, connection_id, name, type_slug, stored = row
    settings, unreadable = read_settings(Connection(name=name, type=type_slug, settings=stored or {}))
    secrets = tuple(secret_values_from(type_slug, settings))
    complete = not missing_from(type_slug, settings) and not unreadable
    return KeyedConnection(
        connection_id=connection_id,
        name=name,
        type=type_slug,
        settings=settings,
        secrets=secrets,
        can_call_crm=complete,
        key_hash=key_hash,
        key_expires_at=expires_at,
        loaded_at=time.monotonic(),
        unreadable=tuple(unreadable),
    )


# -- invalidation -----------------------------------------------------------------------------


def _changed(_mapper: Any, connection: Any, target: Any) -> None:
    invalidate_all()
    session = Session.object_session(target)
    if session is not None:
        session.info[_SESSION_FLAG] = True


for _model in (Connection, AccessKey):
    for _name in ("after_insert", "after_update", "after_delete"):
        event.listen(_model, _name, _changed)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    """Forget again once the change is visible: a lookup between flush and commit read the
    old row and may have stored it."""
    if session.info.pop(_SESSION_FLAG, False):
        invalidate_all()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_SESSION_FLAG, None)
