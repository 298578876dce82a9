"""Creating a CRM's missing tag once across processes: the host's ``tag_guard`` for adapters.

``crm_adapters.tag_catalogue`` serialises tag creation between the threads of one process. Two
processes (gunicorn workers serving webhooks, ``bridge worker`` processes pushing registrations)
could still both find a tag missing and both create it, and FluentCRM's creation is not atomic
(two tags of one slug, issue 16). So the creation runs under a lock per connection that every
process sees: on PostgreSQL an advisory lock on a connection of its own (no transaction stays
open during the CRM call); on SQLite an exclusive ``flock`` on a file beside the database (the
database's own write lock must not be held across a CRM call: it would stop every other write).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable

from sqlalchemy import func, select

from bridge.database import is_sqlite
from bridge.extensions import db
from crm_adapters.tag_catalogue import TagGuard

# First key of the two-key advisory lock (the second is the connection id); OAuth refreshes
# use 0x0C4B (bridge.connections.token_refresh).
TAG_LOCK_NAMESPACE = 0x0C4C


def tag_guard_for(connection_id: int) -> TagGuard | None:
    """The guard for this connection's adapters, or None where only one process can exist
    (an SQLite database in memory)."""
    engine = db.engine
    if is_sqlite(engine):
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        path = f"{database}.tags-{connection_id}.lock"

        def file_guard(create: Callable[[], None]) -> None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                create()
            finally:
                os.close(fd)  # closing drops the lock

        return file_guard

    def advisory_guard(create: Callable[[], None]) -> None:
        with engine.connect() as conn:
            conn.execute(select(func.pg_advisory_lock(TAG_LOCK_NAMESPACE, connection_id)))
            conn.commit()
            try:
                create()
            finally:
                conn.execute(select(func.pg_advisory_unlock(TAG_LOCK_NAMESPACE, connection_id)))
                conn.commit()

    return advisory_guard
