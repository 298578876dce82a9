"""Decrypted connection settings, cached per process.

Every registration reads every connection's settings (which ones want the push) and every
delivery needs its connection's settings and secret values (for the adapter and for redaction).
``bridge.connections.effective_settings`` decrypts each secret and rebuilds the defaults on
each call; here the result is kept, keyed on what it is computed from: the connection's id and
type, its stored settings exactly as stored (serialised) and the ``SECRET_KEY``. Any change to
a connection's settings, in this process or another, changes the key, so a stale entry is
never served; it just ages out of the LRU.

Callers get their own copies: an adapter or a handler may change what it was given.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import OrderedDict
from typing import Any

from flask import current_app

from bridge.connections import effective_settings, secret_values
from bridge.models import Connection

MAX_ENTRIES = 256

_CacheKey = tuple[int, str, str, str]
_entries: OrderedDict[_CacheKey, tuple[dict[str, Any], tuple[str, ...]]] = OrderedDict()
_lock = threading.Lock()


def _key(connection: Connection) -> _CacheKey:
    stored = json.dumps(connection.settings or {}, sort_keys=True, default=str)
    return (connection.id, connection.type, stored, str(current_app.config["SECRET_KEY"]))


def _entry(connection: Connection) -> tuple[dict[str, Any], tuple[str, ...]]:
    key = _key(connection)
    with _lock:
        found = _entries.get(key)
        if found is not None:
            _entries.move_to_end(key)
            return found
    computed = (effective_settings(connection), tuple(secret_values(connection)))
    with _lock:
        _entries[key] = computed
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
    return computed


def cached_settings(connection: Connection) -> dict[str, Any]:
    """``effective_settings(connection)``, decrypted once per settings version (a copy)."""
    return copy.deepcopy(_entry(connection)[0])


def cached_flag(connection: Connection, name: str, default: Any = None) -> Any:
    """One scalar setting without copying the whole dict (for ``enabled``-style checks)."""
    return _entry(connection)[0].get(name, default)


def cached_secret_values(connection: Connection) -> tuple[str, ...]:
    """``secret_values(connection)``: the plain secrets to redact from logs and attempts."""
    return _entry(connection)[1]


def clear() -> None:
    """Forget everything (tests that change SECRET_KEY handling, or memory pressure)."""
    with _lock:
        _entries.clear()
