"""Engine tuning per backend.

SQLite: WAL so readers never wait for the writer, foreign keys on, and every transaction
started with ``BEGIN IMMEDIATE``. Python's sqlite3 otherwise opens deferred transactions, and a
deferred transaction that read before writing fails at once with "database is locked" when
another writer got in first (busy_timeout cannot help there); taking the write lock up front
makes concurrent webhooks queue for it instead. This is SQLAlchemy's documented recipe for
controlling SQLite transactions ("Serializable isolation / Savepoints / Transactional DDL").

Writers then wait for each other, and SQLite's own busy handler waits by sleeping in steps of up
to 100 ms, so under a burst of webhooks most of a request's time was spent asleep while the lock
sat free. Every connection therefore also takes an exclusive ``flock`` on ``<database>.writer-lock``
before ``BEGIN IMMEDIATE`` and drops it right after ``COMMIT``/``ROLLBACK``: the kernel wakes the
next writer the moment the lock is free, across threads and processes (gunicorn workers and
``crm-bridge worker`` processes alike). A thread that already holds the lock through another
connection does not take it twice (it falls back to SQLite's busy timeout instead of deadlocking
with itself).

PostgreSQL: a pooled connection may have died while it sat idle (server restart, idle timeout
of a proxy), so it is checked before use; but only one idle for more than
``PING_AFTER_IDLE_SECONDS``. SQLAlchemy's ``pool_pre_ping`` checks every checkout, one more
round trip per request: a tenth of an accepted ``async=true`` webhook's time in a storm, where a
connection is back in use within milliseconds. A connection that fails within that second
fails its request, and SQLAlchemy then replaces the whole pool's connections.
``SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True}`` still checks every checkout.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bridge.extensions import db


def is_sqlite(engine: Engine | None = None) -> bool:
    return (engine or db.engine).dialect.name == "sqlite"


_held = threading.local()


PRIVATE_SUFFIXES = ("", "-wal", "-shm", "-journal", ".writer-lock")


def keep_private(path: str) -> None:
    """The database holds password hashes and encrypted secrets: its files are 0600.

    SQLite creates a new database file with the process's umask (0644 for most), and its WAL,
    shared-memory and journal files with the mode of the database file. So a missing file is
    created here first with 0600 (``O_EXCL``: an existing one is never opened), and files an
    older version left readable are narrowed with ``chmod``. Never open and close an existing
    database file here: closing any descriptor of it drops every POSIX lock this process's
    connections hold on it (sqlite.org/howtocorrupt.html, 2.2), and another process would then
    take itself for the last user and delete the WAL under us.
    """
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:
        return  # no such folder, or no write access: SQLite reports it when it opens the file
    for suffix in PRIVATE_SUFFIXES:
        try:
            if os.stat(path + suffix).st_mode & 0o077:
                os.chmod(path + suffix, 0o600)
        except OSError:
            continue


class SerialisedWriterConnection(sqlite3.Connection):
    """A sqlite3 connection whose write transactions queue on a file lock (see module doc)."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        path = os.fspath(database) if not isinstance(database, bytes) else database.decode()
        self._lock_path = None if path in ("", ":memory:") or path.startswith("file:") else path + ".writer-lock"
        if self._lock_path is not None:
            keep_private(path)
        super().__init__(database, *args, **kwargs)
        self._lock_fd: int | None = None
        self._locked = False

    def take_write_lock(self) -> None:
        if self._lock_path is None or self._locked or getattr(_held, "count", 0):
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._locked = True
        _held.count = getattr(_held, "count", 0) + 1

    def release_write_lock(self) -> None:
        if self._locked and self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            self._locked = False
            _held.count = max(0, getattr(_held, "count", 1) - 1)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_write_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_write_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_write_lock()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


def holds_write_lock() -> bool:
    """True while this thread holds SQLite's write lock through one of its connections (an open
    transaction of its session: every SQLite transaction here takes it, see the module doc).

    A write on any *other* connection from this thread cannot get the lock then: it waits out
    the busy timeout (30 s) for a lock only its own thread can release, and fails."""
    return getattr(_held, "count", 0) > 0


class WriteLockHeld(RuntimeError):
    """A thread holding SQLite's write lock in its session's transaction tried to write through
    a connection of its own (``bridge.ratelimit.DatabaseStorage``): that write could only wait
    out the busy timeout and fail, holding every other writer back meanwhile. A programming
    error, raised at once: end the session's transaction first (:func:`end_transaction`)."""


def end_transaction(session: Session | None = None) -> None:
    """Commit the session's transaction, if it has one, keeping every object it loaded usable.

    For work that needs no database and may be slow, above all a CRM call: a transaction held
    across it holds SQLite's write lock, so every writer waits (registrations, webhooks, workers),
    and a CRM whose rate limit is counted in the database cannot count its request: the count's
    own connection would wait for that lock (``WriteLockHeld``). Commit, not rollback: what the
    caller wrote so far is kept. Objects are not expired (as with ``expire_on_commit=False``), so
    the caller goes on using what it read without a query; its next statement opens a new, short
    transaction."""
    session = session if session is not None else db.session()
    if not session.in_transaction() and not (session.new or session.dirty or session.deleted):
        return
    expire = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Deleted and overwritten content is zeroed, not left in free space: a wiped secret
        # (a password waiting to be returned) must not stay readable in the file.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        begin_immediate(conn.connection.dbapi_connection, conn.exec_driver_sql)


def begin_immediate(dbapi_connection: Any, execute: Callable[[str], Any]) -> None:
    """Begin a SQLite write transaction: the writer ``flock`` first, then ``BEGIN IMMEDIATE``
    through ``execute`` (the engine's, so listeners see it; or a cursor's, for a transaction
    run without the session, ``bridge.raw_statements.raw_transaction``)."""
    if isinstance(dbapi_connection, SerialisedWriterConnection):
        dbapi_connection.take_write_lock()
    try:
        execute("BEGIN IMMEDIATE")
    except BaseException:
        if isinstance(dbapi_connection, SerialisedWriterConnection):
            dbapi_connection.release_write_lock()
        raise


def checkpoint_wal(engine: Engine | None = None) -> bool:
    """SQLite: copy the WAL into the database and truncate it to zero bytes, so content
    overwritten since (a wiped secret) is gone from ``<database>-wal`` too, not only from the
    database (``secure_delete``). Run outside any transaction (a raw connection in autocommit
    mode); readers still using older pages make it wait (busy timeout). True when the WAL was
    reset; nothing to do (True) on PostgreSQL."""
    engine = engine or db.engine
    if not is_sqlite(engine):
        return True
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        busy, _frames, _copied = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        cursor.close()
        return not busy
    finally:
        raw.close()


PING_AFTER_IDLE_SECONDS = 1.0
IDLE_SINCE_KEY = "bridge.idle_since"


def ping_after_idle(
    engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS, clock: Callable[[], float] = time.monotonic
) -> None:
    """Check a connection on checkout only when it sat in the pool longer than ``idle_seconds``;
    a dead one is replaced (``DisconnectionError`` makes the pool reconnect and retry)."""

    @event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[IDLE_SINCE_KEY] = clock()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(IDLE_SINCE_KEY, None)
        if idle_since is None or clock() - idle_since <= idle_seconds:
            return  # new, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.DisconnectionError(f"idle connection is gone: {error}") from error


def init_app(app: Flask) -> None:
    from bridge import models  # noqa: F401  (registers the tables on the metadata)

    db.init_app(app)
    with app.app_context():
        engine = db.engine
        if is_sqlite(engine):
            _tune_sqlite(engine)
        elif not app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("pool_pre_ping"):  # else: every checkout
            ping_after_idle(engine)


def upgrade_schema() -> None:
    """Bring the schema to the newest Alembic revision (creates it on an empty database)."""
    from flask_migrate import upgrade

    upgrade()
