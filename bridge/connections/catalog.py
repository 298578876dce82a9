"""The CRM's own field and tag names, for the console's field-map and tag pickers.

Adapters list them (``list_fields``, ``list_tags``); asking the CRM on every page view would be
slow and eat its rate limit, so the answer is kept per process for ``CATALOG_TTL_SECONDS``, keyed
on the connection and its stored settings (new credentials or a new base URL ask again). The
console's refresh button passes ``refresh=True``. A failure is reported, not raised: the form
still works with names typed by hand.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

from bridge.connections.service import build_adapter, store_changed_settings
from bridge.connections.settings import UnreadableSecrets, secret_values
from bridge.database import end_transaction
from bridge.models import Connection
from bridge.outbound.redaction import scrub_text
from crm_adapters.errors import AdapterError

CATALOG_TTL_SECONDS = 3600.0
MAX_NAMES = 1000


@dataclass
class Catalog:
    fields: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    fetched_at: float = 0.0  # time.time() of the answer; 0 when never fetched
    errors: list[str] = field(default_factory=list)

    @property
    def age_minutes(self) -> int:
        return int((time.time() - self.fetched_at) // 60) if self.fetched_at else 0


_cache: dict[tuple[int, str], tuple[float, Catalog]] = {}
_lock = threading.Lock()


def _key(connection: Connection) -> tuple[int, str]:
    return connection.id, json.dumps(connection.settings or {}, sort_keys=True, default=str)


def crm_catalog(connection: Connection, *, refresh: bool = False) -> Catalog:
    """The CRM's field and tag names (cached; ``refresh`` asks the CRM again)."""
    key = _key(connection)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(key)
    if cached and not refresh and now - cached[0] < CATALOG_TTL_SECONDS:
        return cached[1]
    catalog = _fetch(connection)
    if not catalog.errors or not cached:
        with _lock:
            _cache[key] = (now, catalog)
    return catalog


def cached_catalog(connection: Connection) -> Catalog | None:
    """What is cached, without asking the CRM (pages that only offer names they already have)."""
    with _lock:
        cached = _cache.get(_key(connection))
    return cached[1] if cached else None


def _fetch(connection: Connection) -> Catalog:
    catalog = Catalog(fetched_at=time.time())
    try:
        adapter = build_adapter(connection)
    except UnreadableSecrets as exc:
        catalog.errors.append(str(exc))
        return catalog
    secrets = secret_values(connection)
    end_transaction()  # no transaction (on SQLite: the write lock) while the CRM answers
    for what, lister in (("fields", adapter.list_fields), ("tags", adapter.list_tags)):
        try:
            names = [str(n) for n in lister()][:MAX_NAMES]
        except NotImplementedError:
            continue
        except AdapterError as exc:
            catalog.errors.append(f"{what}: {scrub_text(str(exc), secrets)}")
            continue
        setattr(catalog, what, sorted(set(names), key=str.lower))
    store_changed_settings(connection.id, adapter)
    return catalog


def forget(connection_id: int | None = None) -> None:
    with _lock:
        for key in [k for k in _cache if connection_id is None or k[0] == connection_id]:
            _cache.pop(key, None)
