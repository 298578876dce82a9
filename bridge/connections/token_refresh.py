"""OAuth refreshes coordinated between processes (PostgreSQL).

``crm_adapters.oauth`` makes concurrent deliveries in one process redeem a refresh token once.
Two worker processes (one ``crm-bridge worker`` spread over two cores, or workers on several
machines) can still both get a 401 at once and both redeem it; a provider that rotates refresh
tokens refuses the second, and with reuse detection revokes the first one's new tokens too. So
on PostgreSQL a refresh runs under an advisory lock per connection, and the process that waited
for it first reads the stored tokens: when the stored refresh token is no longer the one it was
about to present, another process has redeemed it and stored the result, which it uses instead.
The process that redeems stores the new tokens before it lets go of the lock.

On SQLite this is not done: writing the tokens from inside a webhook's transaction would wait on
SQLite's single write lock held by that same transaction, and one process (the embedded
default) is already covered by ``crm_adapters.oauth``.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bridge.connections.settings import apply_settings, read_settings
from bridge.database import is_sqlite
from bridge.extensions import db
from bridge.models import Connection
from crm_adapters.oauth import RefreshGuard, Tokens

# First key of the two-key advisory lock (the second is the connection id): a constant of ours,
# so a collision with another application's locks on the same database is unlikely.
LOCK_NAMESPACE = 0x0C4B


def guard_for(connection_id: int) -> RefreshGuard | None:
    """The refresh guard for adapters of this connection, or None where none is needed (SQLite)."""
    if is_sqlite():
        return None
    engine = db.engine

    def guard(refresh_token: str, grant: Callable[[], Tokens | None]) -> Tokens | None:
        with engine.connect() as conn, Session(bind=conn) as session:
            conn.execute(select(func.pg_advisory_lock(LOCK_NAMESPACE, connection_id)))
            conn.commit()
            try:
                connection = session.get(Connection, connection_id)
                if connection is None:
                    return grant()
                stored, _unreadable = read_settings(connection)
                if stored.get("refresh_token") and stored["refresh_token"] != refresh_token:
                    return {
                        "access_token": str(stored.get("access_token") or ""),
                        "refresh_token": str(stored["refresh_token"]),
                    }
                session.commit()  # end the read: no transaction stays open during the CRM call
                tokens = grant()
                if tokens:
                    apply_settings(connection, tokens, judge_connection=False)
                    session.commit()
                return tokens
            finally:
                session.rollback()
                conn.execute(select(func.pg_advisory_unlock(LOCK_NAMESPACE, connection_id)))
                conn.commit()

    return guard
