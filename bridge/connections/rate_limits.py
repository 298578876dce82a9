"""CRM rate limits kept by all of crm-bridge's processes together (CONTRACT.md §11).

Each adapter declares its CRM's documented limit (``Adapter.rate_limit``: HubSpot 100 requests
per 10 s, ActiveCampaign 5 per second, Mailchimp 10 connections at once). Every request an
adapter makes enters :meth:`CrmRateLimits.throttle` first, which counts it in the same ``limits``
storage as the failed-key limit (``bridge.ratelimit.build_storage``: the database by default,
Redis with ``BRIDGE_RATELIMIT_STORAGE_URL``), so web processes and workers on any machine share
one count per connection, and waits for room rather than earning a 429.

With the database storage on SQLite the count is a write needing the database's write lock, so
CRMs are called with no transaction of the caller's session open (``end_transaction`` in
``bridge.database``; a transaction held across a CRM call would stall every writer anyway):
the storage refuses to count under a lock its own thread holds (``WriteLockHeld``) rather than
wait out the busy timeout for it.

Priority: a batch (``batch_calls()``) may use only ``BATCH_SHARE`` of a window, so registrations,
profile pushes and inbound webhooks always find room next to a running batch. Windows are
fixed, so at a window's edge two windows' worth can fall within one rolling period: a batch on
its own, at half a window each, still stays under the CRM's limit then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar

from flask import current_app, has_app_context
from limits.storage import Storage

from bridge.ratelimit import build_storage
from crm_adapters.base import RateLimit

EXTENSION_KEY = "bridge.crm_rate_limits"
BATCH_SHARE = 0.5
CONCURRENCY_EXPIRY_SECONDS = 60  # a slot a killed process held frees itself after this
CONCURRENCY_POLL_SECONDS = 0.02

_batch_call: ContextVar[bool] = ContextVar("bridge_batch_call", default=False)


@contextmanager
def batch_calls() -> Iterator[None]:
    """CRM requests made inside are a batch's: they get ``BATCH_SHARE`` of each window."""
    token = _batch_call.set(True)
    try:
        yield
    finally:
        _batch_call.reset(token)


class CrmRateLimits:
    """Shared counters per connection: requests per fixed window, or requests in flight."""

    def __init__(
        self,
        storage: Storage,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.sleep = sleep

    def allowance(self, limit: RateLimit) -> int:
        """How many requests of this caller's kind fit in one window (or at once)."""
        full = limit.requests or limit.concurrent
        return max(1, int(full * BATCH_SHARE)) if _batch_call.get() else full

    @contextmanager
    def throttle(self, connection_id: int, limit: RateLimit) -> Iterator[None]:
        """Wait until the request fits under ``limit``, then let it through."""
        if limit.concurrent:
            yield from self._in_flight(connection_id, limit)
            return
        allowed = self.allowance(limit)
        while True:
            now = self.clock()
            window = int(now // limit.seconds)
            key = f"crm-rate:{connection_id}:{window}"
            if self.storage.incr(key, limit.seconds * 2) <= allowed:
                break
            self.storage.incr(key, limit.seconds * 2, -1)  # not sent: leave room for others
            self.sleep(max(0.001, (window + 1) * limit.seconds - now))
        yield

    def _in_flight(self, connection_id: int, limit: RateLimit) -> Iterator[None]:
        allowed = self.allowance(limit)
        key = f"crm-concurrent:{connection_id}"
        while self.storage.incr(key, CONCURRENCY_EXPIRY_SECONDS) > allowed:
            self.storage.incr(key, CONCURRENCY_EXPIRY_SECONDS, -1)
            self.sleep(CONCURRENCY_POLL_SECONDS)
        try:
            yield
        finally:
            self.storage.incr(key, CONCURRENCY_EXPIRY_SECONDS, -1)


_lock = threading.Lock()


def crm_rate_limits() -> CrmRateLimits:
    """The running app's shared counters (one storage per app, as for the failed-key limit)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    limits = app.extensions.get(EXTENSION_KEY)
    if limits is None:
        with _lock:
            limits = app.extensions.get(EXTENSION_KEY)
            if limits is None:
                limits = app.extensions[EXTENSION_KEY] = CrmRateLimits(build_storage(app))
    return limits


def throttle_for(connection_id: int, limit: RateLimit | None) -> Callable[[], AbstractContextManager[None]] | None:
    """The ``Adapter.throttle`` hook for a connection (None when its CRM declares no limit or
    there is no app to share counters through)."""
    if limit is None or not has_app_context():
        return None
    limits = crm_rate_limits()
    return lambda: limits.throttle(connection_id, limit)
