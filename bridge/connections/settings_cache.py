"""Decrypted connection settings, cached per process.

Every registration reads every connection's settings (which ones want the push) and every
delivery needs its connection's settings and secret values (for the adapter and for redaction).
``bridge.connections.service.effective_settings`` decrypts each secret and rebuilds the defaults on
each call; here the result is kept, keyed on what it is computed from: the connection's id and
type, its stored settings exactly as stored (serialised) and the ``SECRET_KEY``. Any change to
a connection's settings, in this process or another, changes the key, so a stale entry is
never served; it just ages out of the LRU.

Callers get their own copies: an adapter or a handler may change what it was given.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from flask import current_app

from bridge.connections.settings import UnreadableSecrets, missing_among, read_settings, secret_values_from
from bridge.models import Connection

MAX_ENTRIES = 256

_CacheKey = tuple[int, str, str, str]
# (settings, secret values, names of secrets that cannot be decrypted)
_Entry = tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]
_entries: OrderedDict[_CacheKey, _Entry] = OrderedDict()
_lock = threading.Lock()


def _key(connection: Connection) -> _CacheKey:
    stored = json.dumps(connection.settings or {}, sort_keys=True, default=str)
    return (connection.id, connection.type, stored, str(current_app.config["SECRET_KEY"]))


def _entry(connection: Connection) -> _Entry:
    key = _key(connection)
    with _lock:
        found = _entries.get(key)
        if found is not None:
            _entries.move_to_end(key)
            return found
    settings, unreadable = read_settings(connection)
    computed = (settings, tuple(secret_values_from(connection.type, settings)), tuple(unreadable))
    with _lock:
        _entries[key] = computed
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
    return computed


def cached_settings(connection: Connection) -> dict[str, Any]:
    """``effective_settings(connection)``, decrypted once per settings version (a copy).
    Raises ``UnreadableSecrets`` as it does: an adapter never runs without a secret."""
    settings, _secrets, unreadable = _entry(connection)
    if unreadable:
        raise UnreadableSecrets(connection.name, unreadable)
    return _copied(settings)


def _copied(value: Any) -> Any:
    """A deep copy of JSON-shaped settings (dicts, lists, scalars): ``copy.deepcopy``'s generic
    machinery cost a delivery 37 calls and about 3 % of its CPU for the same result."""
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    return value


def cached_flag(connection: Connection, name: str, default: Any = None) -> Any:
    """One scalar setting without copying the whole dict (for ``enabled``-style checks).
    Flags are never secret, so a secret that cannot be decrypted does not stop a
    registration from queueing its push (the delivery reports it)."""
    return _entry(connection)[0].get(name, default)


def cached_is_complete(connection: Connection) -> bool:
    """Whether every required setting is given (``missing_settings`` is empty): an incomplete
    connection is saved and served inbound, but receives no pushes (CONTRACT §2). A stored
    secret that cannot be decrypted counts as given; the delivery reports it."""
    settings, _secrets, unreadable = _entry(connection)
    return not missing_among(connection.type, settings, unreadable)


def cached_secret_values(connection: Connection) -> tuple[str, ...]:
    """``secret_values(connection)``: the plain secrets to redact from logs and attempts."""
    return _entry(connection)[1]


def clear() -> None:
    """Forget everything (tests that change SECRET_KEY handling, or memory pressure)."""
    with _lock:
        _entries.clear()
