"""Leases: claiming due rows with a lease (and what running them needs, loaded in the same
transaction), and extending leases of rows still running. The worker's bookkeeping
(``bridge.delivery.worker``); everything here runs without a request. Recording attempts is
``bridge.delivery.outcomes``; when a failed row is tried again is ``bridge.delivery.retry_schedule``;
operator actions on deliveries live in ``bridge.delivery.deliveries``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Integer, Select, and_, bindparam, exists, or_, select, update
from sqlalchemy.orm import aliased, make_transient_to_detached

from bridge.database import is_sqlite
from bridge.delivery import outbox
from bridge.delivery.fair_share import ClaimRoom
from bridge.extensions import db
from bridge.models import Connection, Delivery, User, UserTag, utcnow

# -- claiming ---------------------------------------------------------------------------------


# The claim's statements are built once per dialect, with bound parameters: building and
# cache-keying them anew cost more than running them (claims run many times a second).
_EARLIER = aliased(Delivery, name="earlier")
_TABLE = Delivery.__table__
_USERS = User.__table__
_CONNECTIONS = Connection.__table__
_TAGS = UserTag.__table__


def _claimable_condition(now: Any) -> Any:
    """Due rows (pending/failed whose time has come, or in_flight whose lease expired) with no
    earlier unfinished row in their ordering lane, so a user's pushes to one CRM go in order."""
    earlier = _EARLIER
    blocked = exists().where(
        earlier.ordering_key == Delivery.ordering_key,
        earlier.id < Delivery.id,
        outbox.is_open(earlier.status),
    )
    due = or_(
        and_(Delivery.status.in_(("pending", "failed")), Delivery.next_attempt_at <= now),
        and_(Delivery.status == "in_flight", Delivery.lease_until < now),
    )
    return and_(due, or_(Delivery.ordering_key.is_(None), ~blocked))


@dataclass
class ClaimedDelivery:
    """A claimed row with its connection and user, loaded in the claim transaction and
    detached, so running it needs no read transaction of its own."""

    delivery: Delivery
    user: User | None
    # The user's local tags, oldest first, for a registration push (which sends them): read
    # here, because any later read would be a transaction, and on SQLite a transaction holds
    # the write lock. None when the row is another kind.
    local_tags: tuple[str, ...] | None = None


def claimable_ids_query(now: Any, limit: Any, *, sqlite: bool | None = None, fair: bool = False) -> Select[Any]:
    """The ids of up to ``limit`` claimable rows, oldest due first (locked, skipping rows other
    workers hold, on PostgreSQL). The worker runs it with both values bound (``_statements``).
    ``fair``: (id, connection id) rows, leaving out the connections bound to ``full`` (those
    holding their share of the worker: ``bridge.delivery.fair_share``)."""
    condition = _claimable_condition(now)
    if fair:
        full = Delivery.connection_id.not_in(bindparam("full", expanding=True))
        condition = and_(condition, or_(Delivery.connection_id.is_(None), full))
    query = (
        (select(Delivery.id, Delivery.connection_id) if fair else select(Delivery.id))
        .where(condition)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    if not (is_sqlite() if sqlite is None else sqlite):
        query = query.with_for_update(skip_locked=True, of=Delivery)
    return query


@cache
def _statements(sqlite: bool) -> dict[str, Any]:
    """The claim statements for one dialect family."""
    return {
        "claim": claimable_ids_query(bindparam("now"), bindparam("limit", type_=Integer), sqlite=sqlite),
        "claim_fair": claimable_ids_query(
            bindparam("now"), bindparam("limit", type_=Integer), sqlite=sqlite, fair=True
        ),
        "lease": _TABLE.update()
        .where(_TABLE.c.id.in_(bindparam("ids", expanding=True)))
        .values(
            status="in_flight",
            lease_owner=bindparam("worker"),
            lease_until=bindparam("until"),
            attempts=_TABLE.c.attempts + 1,
            updated_at=bindparam("now"),
        ),
        "rows": select(_TABLE).where(_TABLE.c.id.in_(bindparam("ids", expanding=True))),
        "users": select(_USERS).where(_USERS.c.id.in_(bindparam("ids", expanding=True))),
        "connections": select(_CONNECTIONS).where(_CONNECTIONS.c.id.in_(bindparam("ids", expanding=True))),
        "local_tags": select(_TAGS.c.user_id, _TAGS.c.name)
        .where(_TAGS.c.user_id.in_(bindparam("ids", expanding=True)), _TAGS.c.connection_id.is_(None))
        .order_by(_TAGS.c.id),
    }


def _sql() -> dict[str, Any]:
    return _statements(is_sqlite())


def _detached(model: type[Any], values: Mapping[str, Any]) -> Any:
    """An ORM object from a Core row, as if a query had loaded it and it was then detached:
    handlers get the objects they always got (``db.session.merge(obj, load=False)`` re-attaches
    them without a query), without the ORM's per-query cost in the claim transaction. The
    values go straight into the instance dict, as the ORM's own loading does, so no change
    events fire and the object has no pending changes."""
    obj = model.__mapper__.class_manager.new_instance()
    obj.__dict__.update(values)
    make_transient_to_detached(obj)
    return obj


def _claim_ids(
    worker_id: str, limit: int, lease_seconds: float, now: datetime, room: ClaimRoom | None = None
) -> list[int]:
    connection = db.session.connection()
    sql = _sql()
    if room is None:
        ids = list(connection.execute(sql["claim"], {"now": now, "limit": limit}).scalars())
    else:
        rows = connection.execute(sql["claim_fair"], {"now": now, "limit": limit, "full": room.full})
        ids = room.trim([(row_id, connection_id) for row_id, connection_id in rows])
    if ids:
        connection.execute(
            sql["lease"],
            {"ids": ids, "worker": worker_id, "until": now + timedelta(seconds=lease_seconds), "now": now},
        )
    return ids


def claim_due(worker_id: str, limit: int, lease_seconds: float, *, now: datetime | None = None) -> list[int]:
    """Lease up to ``limit`` claimable rows to ``worker_id`` and commit; returns their ids.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets several workers claim at once without waiting on
    or double-claiming each other's rows. SQLite: every transaction is ``BEGIN IMMEDIATE``
    (bridge/database.py), so this whole read-then-update is exclusive already.
    The attempt counter goes up here, so a worker killed mid-delivery still used its attempt.
    """
    return [claimed.delivery.id for claimed in claim_and_load(worker_id, limit, lease_seconds, now=now)]


def claim_and_load(
    worker_id: str, limit: int, lease_seconds: float, *, now: datetime | None = None, room: ClaimRoom | None = None
) -> list[ClaimedDelivery]:
    """``claim_due``, returning the claimed rows with their connections and users (detached;
    ``db.session.merge(obj, load=False)`` re-attaches them without a query)."""
    if limit <= 0:
        return []
    try:
        claimed = lease_and_load(worker_id, limit, lease_seconds, now or utcnow(), room)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return claimed


def lease_and_load(
    worker_id: str, limit: int, lease_seconds: float, now: datetime, room: ClaimRoom | None = None
) -> list[ClaimedDelivery]:
    """``claim_and_load`` in the caller's transaction (no commit): the worker records its
    finished attempts and claims more in one (``bridge.delivery.outcomes.record_and_claim``)."""
    ids = _claim_ids(worker_id, limit, lease_seconds, now, room)
    if not ids:
        return []
    connection = db.session.connection()
    sql = _sql()
    rows = {row.id: row for row in connection.execute(sql["rows"], {"ids": ids})}
    user_ids = {row.user_id for row in rows.values() if row.user_id is not None}
    connection_ids = {row.connection_id for row in rows.values() if row.connection_id is not None}
    found_users = (
        {row.id: _detached(User, row._mapping) for row in connection.execute(sql["users"], {"ids": list(user_ids)})}
        if user_ids
        else {}
    )
    found_connections = (
        {
            row.id: _detached(Connection, row._mapping)
            for row in connection.execute(sql["connections"], {"ids": list(connection_ids)})
        }
        if connection_ids
        else {}
    )
    local_tags = _local_tags(connection, {row.user_id for row in rows.values() if row.kind == outbox.CONTACT_UPSERT})
    claimed = []
    for delivery_id in ids:
        row = rows[delivery_id]
        values = {**row._mapping, "connection": found_connections.get(row.connection_id)}
        tags = tuple(local_tags.get(row.user_id, ())) if row.kind == outbox.CONTACT_UPSERT else None
        claimed.append(ClaimedDelivery(_detached(Delivery, values), found_users.get(row.user_id), tags))
    return claimed


def _local_tags(connection: Any, user_ids: set[int | None]) -> dict[int, list[str]]:
    """The local tags of ``user_ids``, in one statement (none when there is no user)."""
    wanted = [user_id for user_id in user_ids if user_id is not None]
    tags: dict[int, list[str]] = {}
    if wanted:
        for user_id, name in connection.execute(_sql()["local_tags"], {"ids": wanted}):
            tags.setdefault(user_id, []).append(name)
    return tags


def extend_leases(worker_id: str, ids: Sequence[int], lease_seconds: float) -> int:
    """Push out the lease of rows this worker is still working on (a slow CRM is not a dead
    worker). Returns how many rows were still ours."""
    if not ids:
        return 0
    result = db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(list(ids)), Delivery.lease_owner == worker_id, Delivery.status == "in_flight")
        .values(lease_until=utcnow() + timedelta(seconds=lease_seconds)),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
