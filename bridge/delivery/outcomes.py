"""Outcomes: recording finished attempts and moving their rows on (succeeded, failed with the
next try's time, dead), many rows in one transaction, and the secrets a finished row must not
keep. The worker's bookkeeping (``bridge.delivery.worker``), beside the claims of
``bridge.delivery.leases``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select

from bridge.database import checkpoint_wal, is_sqlite
from bridge.delivery.fair_share import ClaimRoom
from bridge.delivery.leases import ClaimedDelivery, lease_and_load
from bridge.delivery.retry_schedule import next_attempt_at
from bridge.extensions import db
from bridge.models import Delivery, DeliveryAttempt, utcnow

logger = logging.getLogger(__name__)

# Payload keys holding something secret (an encrypted password waiting to be returned): wiped
# as soon as the row is finished either way, so it does not sit in the database.
SENSITIVE_PAYLOAD_KEYS = ("password",)

_TABLE = Delivery.__table__


@cache
def _statements(sqlite: bool) -> dict[str, Any]:
    """The record statements for one dialect family, built once."""
    held = select(_TABLE.c.id).where(
        _TABLE.c.id.in_(bindparam("ids", expanding=True)),
        _TABLE.c.lease_owner == bindparam("worker"),
        _TABLE.c.status == "in_flight",
    )
    if not sqlite:
        held = held.with_for_update()
    return {"held": held, "attempt": DeliveryAttempt.__table__.insert()}


def _sql() -> dict[str, Any]:
    return _statements(is_sqlite())


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
        claimed = lease_and_load(worker_id, limit, lease_seconds, utcnow(), room) if limit > 0 else []
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    _flush_wiped_secrets(finished, outcomes)
    return outcomes, claimed
