"""Leases and outcomes: claiming due rows with a lease, and recording attempts. The worker's
bookkeeping (``bridge.delivery.worker`` is the only caller); everything here runs without a request.
When a failed row is tried again is ``bridge.delivery.retry_schedule``; operator actions on deliveries
live in ``bridge.delivery.deliveries``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Integer, Select, and_, bindparam, exists, or_, select, update
from sqlalchemy.orm import aliased, make_transient_to_detached

from bridge.database import checkpoint_wal, is_sqlite
from bridge.delivery import outbox
from bridge.delivery.fair_share import ClaimRoom
from bridge.delivery.retry_schedule import next_attempt_at
from bridge.extensions import db
from bridge.models import Connection, Delivery, DeliveryAttempt, User, UserTag, utcnow

logger = logging.getLogger(__name__)

# Payload keys holding something secret (an encrypted password waiting to be returned): wiped
# as soon as the row is finished either way, so it does not sit in the database.
SENSITIVE_PAYLOAD_KEYS = ("password",)


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
    """The claim and record statements for one dialect family."""
    held = select(_TABLE.c.id).where(
        _TABLE.c.id.in_(bindparam("ids", expanding=True)),
        _TABLE.c.lease_owner == bindparam("worker"),
        _TABLE.c.status == "in_flight",
    )
    if not sqlite:
        held = held.with_for_update()
    return {
        "held": held,
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
        "attempt": DeliveryAttempt.__table__.insert(),
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
        claimed = _claim_and_load(worker_id, limit, lease_seconds, now or utcnow(), room)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return claimed


def _claim_and_load(
    worker_id: str, limit: int, lease_seconds: float, now: datetime, room: ClaimRoom | None = None
) -> list[ClaimedDelivery]:
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


# -- outcomes ---------------------------------------------------------------------------------


@dataclass
class AttemptRecord:
    """What one try did, as the worker observed it."""

    started_at: datetime
    duration_ms: float
    exchanges: list[dict[str, Any]]
    error_class: str | None = None
    error_message: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    result: dict[str, Any] | None = None

    @property
    def succeeded(self) -> bool:
        return self.error_class is None


@dataclass
class Outcome:
    status: str  # succeeded | failed | dead | lease_lost
    next_attempt_at: datetime | None = None


@dataclass
class Finished:
    """A claimed row whose attempt is over, waiting to be recorded. ``writes`` are the
    handler's deferred database writes (``JobContext.after_success``): run in the transaction
    that records a successful attempt, so one transaction can record many deliveries."""

    delivery: Delivery
    attempt: AttemptRecord
    writes: list[Callable[[], Any]] = field(default_factory=list)


def _outcome_values(
    delivery: Delivery, attempt: AttemptRecord, now: datetime, rng: random.Random | None
) -> tuple[dict[str, Any], Outcome]:
    """The row's new column values after this attempt, and what that means."""
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None, "updated_at": now}
    outcome: Outcome
    if attempt.succeeded:
        outcome = Outcome("succeeded")
        values.update(status="succeeded", delivered_at=now, last_error=None, result=attempt.result)
    else:
        values["last_error"] = f"{attempt.error_class}: {attempt.error_message}"
        when = None
        if attempt.retryable:
            when = next_attempt_at(
                attempt=delivery.attempts,
                created_at=delivery.created_at,
                now=now,
                retry_after=attempt.retry_after,
                rng=rng,
            )
        outcome = Outcome("dead") if when is None else Outcome("failed", when)
        values["status"] = outcome.status
        if when is not None:
            values["next_attempt_at"] = when
    if outcome.status in ("succeeded", "dead"):
        payload = dict(delivery.payload or {})
        if any(key in payload for key in SENSITIVE_PAYLOAD_KEYS):
            values["payload"] = {k: v for k, v in payload.items() if k not in SENSITIVE_PAYLOAD_KEYS}
    return values, outcome


def _attempt_row(delivery: Delivery, worker_id: str, attempt: AttemptRecord) -> dict[str, Any]:
    last = attempt.exchanges[-1] if attempt.exchanges else {}
    return {
        "delivery_id": delivery.id,
        "number": delivery.attempts,
        "started_at": attempt.started_at,
        "duration_ms": round(attempt.duration_ms, 2),
        "method": last.get("method"),
        "url": last.get("url"),
        "status_code": last.get("status"),
        "error_class": attempt.error_class,
        "error_message": attempt.error_message,
        "exchanges": attempt.exchanges,
        "worker": worker_id,
    }


def _record(worker_id: str, finished: Sequence[Finished], rng: random.Random | None) -> list[Outcome]:
    """Store the attempts and move the rows on, in the current transaction (no commit).

    Statement count does not grow with the batch: one SELECT of the rows this worker still
    holds (locked on PostgreSQL), the handlers' deferred writes, one multi-row INSERT of the
    attempts, and one executemany UPDATE per shape of outcome. A row whose lease was lost (it
    expired and another worker claimed it) gets its attempt recorded and is left to its owner.
    """
    if not finished:
        return []
    connection = db.session.connection()
    sql = _sql()
    ids = [item.delivery.id for item in finished]
    still_ours = set(connection.execute(sql["held"], {"ids": ids, "worker": worker_id}).scalars())
    _apply_writes([write for item in finished if item.attempt.succeeded for write in item.writes])
    connection.execute(sql["attempt"], [_attempt_row(i.delivery, worker_id, i.attempt) for i in finished])
    now = utcnow()
    outcomes: list[Outcome] = []
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for item in finished:
        values, outcome = _outcome_values(item.delivery, item.attempt, now, rng)
        if item.delivery.id not in still_ours:
            outcomes.append(Outcome("lease_lost"))
            continue
        outcomes.append(outcome)
        params = {"row_id": item.delivery.id, **{f"new_{key}": value for key, value in values.items()}}
        by_shape.setdefault(tuple(sorted(values)), []).append(params)
    for shape, rows in by_shape.items():
        connection.execute(_outcome_update(shape), rows)
    return outcomes


@cache
def _outcome_update(shape: tuple[str, ...]) -> Any:
    """``UPDATE delivery SET <shape> WHERE id = :row_id``, built once per set of columns."""
    return (
        _TABLE.update()
        .where(_TABLE.c.id == bindparam("row_id"))
        .values({key: bindparam(f"new_{key}") for key in shape})
    )


def _apply_writes(writes: Sequence[Callable[[], Any]]) -> None:
    """Run deferred writes in order; a write with an ``apply_all`` (a batchable kind, like
    ``bridge.accounts.crm_push.LinkContact``) is applied together with the others of its kind."""
    batched: dict[Callable[[Sequence[Any]], None], list[Any]] = {}
    for write in writes:
        apply_all = getattr(write, "apply_all", None)
        if apply_all is None:
            write()
        else:
            batched.setdefault(apply_all, []).append(write)
    for apply_all, group in batched.items():
        apply_all(group)


def record_outcome(
    delivery: Delivery, worker_id: str, attempt: AttemptRecord, *, rng: random.Random | None = None
) -> Outcome:
    """Store the attempt and move the row on: succeeded, failed (with its next time) or dead.
    Commits, together with whatever the handler wrote in this session.

    ``delivery`` is the row as claimed (its ``attempts`` already counts this try). The update
    only applies while this worker still holds the lease; when the lease was lost (it expired
    and another worker claimed the row) the attempt is recorded and the row left to its owner.
    """
    return record_outcomes(worker_id, [Finished(delivery, attempt)], rng=rng)[0]


def record_outcomes(worker_id: str, finished: Sequence[Finished], *, rng: random.Random | None = None) -> list[Outcome]:
    """``record_outcome`` for many rows in one transaction (with their deferred writes)."""
    try:
        outcomes = _record(worker_id, finished, rng)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    _flush_wiped_secrets(finished, outcomes)
    return outcomes


def _flush_wiped_secrets(finished: Sequence[Finished], outcomes: Sequence[Outcome]) -> None:
    """After a commit that wiped a secret from a payload, make the wipe reach the disk: on
    SQLite the old page stays in the WAL until a checkpoint (issue 16), so checkpoint now."""
    wiped = any(
        outcome.status in ("succeeded", "dead")
        and any(key in (item.delivery.payload or {}) for key in SENSITIVE_PAYLOAD_KEYS)
        for item, outcome in zip(finished, outcomes, strict=True)
    )
    if wiped and not checkpoint_wal():
        logger.warning("a wiped password may stay in the SQLite WAL until the next checkpoint: readers were busy")


def record_and_claim(
    worker_id: str,
    finished: Sequence[Finished],
    *,
    limit: int,
    lease_seconds: float,
    rng: random.Random | None = None,
    room: ClaimRoom | None = None,
) -> tuple[list[Outcome], list[ClaimedDelivery]]:
    """Record finished attempts and lease up to ``limit`` more rows in ONE transaction: the
    worker's whole bookkeeping for a turn of its loop. A recorded row unblocks the next row in
    its lane, which the claim in the same transaction already sees. ``room``: the claim keeps to
    each connection's share of the worker (``bridge.delivery.fair_share``)."""
    try:
        outcomes = _record(worker_id, finished, rng)
        claimed = _claim_and_load(worker_id, limit, lease_seconds, utcnow(), room) if limit > 0 else []
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    _flush_wiped_secrets(finished, outcomes)
    return outcomes, claimed
