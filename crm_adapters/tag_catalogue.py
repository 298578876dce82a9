"""A CRM account's tags by name, shared by every adapter of the process, and creation of a
missing tag exactly once.

Adapters are built per delivery and per webhook, so a tag listing kept on the adapter would be
read again for every push. The catalogue keeps one per CRM account (an adapter names it, e.g. by
API URL and user) for the life of the process: it is refreshed when a name is missing from it,
and a tag is created only after a fresh listing under two locks, one per account in this
process (threads) and the host's ``TagGuard`` across processes. Needed because CRMs do not all
create tags atomically: FluentCRM checks the slug and inserts in two steps, so two racing
creates can both succeed and leave two tags with one slug (seen live, issue 16; recorded in
shared/fixtures/fluentcrm/api/create_tag_slug_taken_422.json).

A cached id whose tag was deleted in the CRM stays until the next miss refreshes the listing
(the CRM then ignores it when attaching): deleting tags that automations use is rare, a listing
per push is not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

# Runs a function while holding the host's lock for this connection's tag creation, shared by
# all its processes (crm-bridge: bridge.connections.crm_locks). None: this process only.
TagGuard = Callable[[Callable[[], None]], None]


class TagCatalogue:
    """Tag ids by lower-cased key (slug, title) per account key; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, dict[str, int]] = {}
        self._creating: dict[str, threading.Lock] = {}

    def known(self, account: str) -> dict[str, int]:
        with self._lock:
            return dict(self._ids.get(account, {}))

    def replace(self, account: str, ids: dict[str, int]) -> None:
        """The account's full listing, as just read from the CRM."""
        with self._lock:
            self._ids[account] = dict(ids)

    def add(self, account: str, keys: Iterable[str], tag_id: int) -> None:
        with self._lock:
            known = self._ids.setdefault(account, {})
            for key in keys:
                known.setdefault(key.lower(), tag_id)

    def creation_lock(self, account: str) -> threading.Lock:
        """The lock this process's threads take before creating tags for ``account``."""
        with self._lock:
            return self._creating.setdefault(account, threading.Lock())

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()
            self._creating.clear()


CATALOGUE = TagCatalogue()
