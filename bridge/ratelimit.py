"""Rate limiting of failed access-key attempts (CONTRACT.md §3: more than 20 per address per
minute and every inbound request from that address is refused until the minute is over).

The limit must hold across gunicorn workers and machines, so counters never live in process
memory. We use the ``limits`` library's fixed-window strategy with, by default,
:class:`DatabaseStorage`: a small ``limits`` storage backed by the ``rate_limit_counter`` table,
which works on SQLite and PostgreSQL with no extra service. ``BRIDGE_RATELIMIT_STORAGE_URL``
(e.g. ``redis://127.0.0.1:6379/0``) switches to one of ``limits``' own storages instead.

Reading the counter on every inbound request cost a database round trip per webhook (on
PostgreSQL a quarter of an accepted ``async=true`` webhook's time), though nearly every address
has no failure at all. So a process remembers that an address was *not* refused for
``BRIDGE_FAILED_KEY_CACHE_SECONDS`` (default 1; 0 reads every time). Only that verdict is
remembered, never a refusal, and a failure counted by this process forgets it at once: the
process that counts the failure past the limit refuses the next request immediately, and the
others at most that many seconds later.

Each kind of failure has its own counter (CONTRACT.md §10): failed access keys, failed admin
logins and failed activity-webhook secrets never lock out one another, so a misconfigured CRM
behind the same proxy as the owner cannot lock the owner out of the console. ``/register`` is
limited the same way, counting every attempt. The address is ``request.remote_addr``, which
``BRIDGE_TRUSTED_PROXIES`` (Werkzeug's ``ProxyFix``, applied in the app factory) reads through
that many proxies; a header is never trusted otherwise.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flask import Flask, Request, current_app, request
from limits import RateLimitItemPerMinute
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import case, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from bridge.database import WriteLockHeld, holds_write_lock
from bridge.extensions import db
from bridge.models import RateLimitCounter, utcnow

EXTENSION_KEY = "bridge.failed_key_limiter"
NAMESPACE = "inbound-failed-key"
# The kinds counted apart: a counter namespace each, and the config key of its limit per minute.
ACCESS_KEY = NAMESPACE
ADMIN_LOGIN = "admin-failed-login"
ACTIVITY_SECRET = "activity-failed-secret"  # noqa: S105 (a counter's name, not a secret)
REGISTRATION = "register-attempt"
LIMITS = {
    ACCESS_KEY: ("BRIDGE_FAILED_KEY_LIMIT", 20),
    ADMIN_LOGIN: ("BRIDGE_FAILED_KEY_LIMIT", 20),
    ACTIVITY_SECRET: ("BRIDGE_FAILED_KEY_LIMIT", 20),
    REGISTRATION: ("BRIDGE_REGISTER_LIMIT", 10),
}


class DatabaseStorage(Storage):
    """A ``limits`` storage keeping fixed-window counters in ``rate_limit_counter``.

    Each operation runs on its own short connection from the app's engine (never the request's
    session), so a counter update commits even when the request's own work is rolled back.
    ``incr`` is one atomic upsert (``INSERT … ON CONFLICT DO UPDATE … RETURNING``), so
    concurrent workers never lose a count; an expired window restarts inside the same statement.

    On SQLite that own connection needs the write lock (``bridge.database``), so a thread whose
    session holds a transaction (the lock) must not count: the write would wait the busy timeout
    (30 s) for a lock only that thread can release, hold every other writer back meanwhile, and
    fail. It raises ``WriteLockHeld`` at once instead, naming the mistake: the caller forgot to
    end its transaction (``bridge.database.end_transaction``) before calling a CRM or counting.
    Counting on the held connection instead was rejected: the count would vanish with the
    caller's rollback (a failed key is counted just after one), and the CRM call would still be
    made under the write lock, the very thing to avoid.
    """

    STORAGE_SCHEME = None

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.table = RateLimitCounter.__table__

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def _begin(self) -> AbstractContextManager[Connection]:
        """A transaction on a connection of the storage's own (refused under a held SQLite
        write lock, see the class doc)."""
        if self.engine.dialect.name == "sqlite" and holds_write_lock():
            raise WriteLockHeld(
                "this thread holds SQLite's write lock in an open session transaction, so the"
                " rate-limit counter cannot be written (it would wait for its own thread until the"
                " busy timeout): end the transaction first (bridge.database.end_transaction),"
                " e.g. before calling a CRM"
            )
        return self.engine.begin()

    def _insert(self):  # type: ignore[no-untyped-def]
        return postgresql_insert if self.engine.dialect.name == "postgresql" else sqlite_insert

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = utcnow()
        until = now + timedelta(seconds=expiry)
        column = self.table.c
        expired = column.expires_at <= now
        statement = (
            self._insert()(self.table)
            .values(key=key, count=amount, expires_at=until)
            .on_conflict_do_update(
                index_elements=[column.key],
                set_={
                    "count": case((expired, amount), else_=column.count + amount),
                    "expires_at": case((expired, until), else_=column.expires_at),
                },
            )
            .returning(column.count)
        )
        with self._begin() as connection:
            return int(connection.execute(statement).scalar_one())

    def _read(self, key: str) -> tuple[int, datetime] | None:
        """(count, expires_at) without a transaction: checked on every inbound request, so it
        must not queue for SQLite's write lock (every SQLAlchemy transaction here takes it, see
        ``bridge.database``). A raw DBAPI read in autocommit mode does not."""
        marker = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        sql = f'SELECT "count", expires_at FROM rate_limit_counter WHERE "key" = {marker}'  # noqa: S608 (constant)
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(sql, (key,))
            row = cursor.fetchone()
            cursor.close()
            raw.rollback()  # PostgreSQL opened a transaction for the read; SQLite did not
        finally:
            raw.close()
        if row is None:
            return None
        expires_at = row[1] if isinstance(row[1], datetime) else datetime.fromisoformat(str(row[1]))
        return int(row[0]), expires_at.replace(tzinfo=None)

    def get(self, key: str) -> int:
        found = self._read(key)
        return found[0] if found is not None and found[1] > utcnow() else 0

    def get_expiry(self, key: str) -> float:
        found = self._read(key)
        if found is None:
            return time.time()
        return found[1].replace(tzinfo=UTC).timestamp()

    def check(self) -> bool:
        try:
            with self._begin() as connection:
                connection.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self._begin() as connection:
            return connection.execute(delete(self.table)).rowcount

    def clear(self, key: str) -> None:
        with self._begin() as connection:
            connection.execute(delete(self.table).where(self.table.c.key == key))

    def purge_expired(self) -> int:
        """Delete finished windows (housekeeping; a stale row is harmless, just dead weight)."""
        with self._begin() as connection:
            return connection.execute(delete(self.table).where(self.table.c.expires_at <= utcnow())).rowcount


@dataclass
class FailedKeyLimiter:
    """Counts failed attempts of one kind per source address and says when one is refused."""

    limiter: FixedWindowRateLimiter
    item: RateLimitItemPerMinute
    clear_for_seconds: float = 0.0
    namespace: str = NAMESPACE
    clock: Callable[[], float] = time.monotonic
    _clear_until: dict[str, float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    MAX_REMEMBERED = 10_000

    def is_refused(self, address: str) -> bool:
        """True once an address has made *more than* the allowed failures in its window."""
        if self._clear_until.get(address, 0.0) > self.clock():
            return False
        # cost=0 asks "is the count still <= amount?", i.e. refuse only past the limit.
        refused = not self.limiter.test(self.item, self.namespace, address, cost=0)
        if not refused and self.clear_for_seconds > 0:
            self._remember_clear(address)
        return refused

    def record_failure(self, address: str) -> None:
        with self._lock:
            self._clear_until.pop(address, None)
        self.limiter.hit(self.item, self.namespace, address)

    def hit(self, address: str) -> bool:
        """Count an attempt (not only a failure); False once the address is past the limit."""
        return self.limiter.hit(self.item, self.namespace, address)

    def _remember_clear(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._clear_until) >= self.MAX_REMEMBERED:  # many addresses: drop the stale ones
                self._clear_until = {a: t for a, t in self._clear_until.items() if t > now}
                if len(self._clear_until) >= self.MAX_REMEMBERED:
                    self._clear_until = {}
            self._clear_until[address] = now + self.clear_for_seconds

    def close(self) -> None:
        """Release a network storage's connections (limits' Redis client keeps a pool)."""
        client = getattr(self.limiter.storage, "storage", None)
        if client is not None and hasattr(client, "close"):
            client.close()

    def retry_after(self, address: str) -> int:
        """Whole seconds until the address's window is over (at least 1)."""
        reset_at = self.limiter.get_window_stats(self.item, self.namespace, address).reset_time
        return max(1, math.ceil(reset_at - time.time()))


def build_storage(app: Flask) -> Storage:
    url = app.config.get("BRIDGE_RATELIMIT_STORAGE_URL")
    if url:
        return storage_from_string(url)
    with app.app_context():
        return DatabaseStorage(db.engine)


def close_limiter(app: Flask) -> None:
    limiters = app.extensions.pop(EXTENSION_KEY, None)
    if limiters:
        next(iter(limiters.values())).close()  # one storage, shared by every kind


def failed_attempt_limiter(kind: str = ACCESS_KEY) -> FailedKeyLimiter:
    """The running app's limiter of one kind (:data:`LIMITS`), built once per app; every kind
    shares one storage (a Redis pool, or the database) and keeps its own counters."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    limiters: dict[str, FailedKeyLimiter] = app.extensions.setdefault(EXTENSION_KEY, {})
    limiter = limiters.get(kind)
    if limiter is None:
        config_key, default = LIMITS[kind]
        storage = next(iter(limiters.values())).limiter.storage if limiters else build_storage(app)
        limiter = FailedKeyLimiter(
            FixedWindowRateLimiter(storage),
            RateLimitItemPerMinute(int(app.config.get(config_key, default))),
            clear_for_seconds=float(app.config.get("BRIDGE_FAILED_KEY_CACHE_SECONDS", 1.0)),
            namespace=kind,
        )
        limiters[kind] = limiter
    return limiter


def failed_key_limiter() -> FailedKeyLimiter:
    """The failed access-key limiter (the inbound endpoint's)."""
    return failed_attempt_limiter(ACCESS_KEY)


def client_address(current: Request | None = None) -> str:
    """The client's address as the limits count it (see the module docstring), of ``current``
    (a caller holding the request itself) or else of the request in context."""
    return (current if current is not None else request).remote_addr or "unknown"
