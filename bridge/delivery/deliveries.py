"""Deliveries: the operator actions (list, retry, replay) and the JSON shared by the API, the
CLI and the admin console.

Claiming and recording are the worker's (``bridge.delivery.leases``, ``bridge.delivery.outcomes``);
their names are re-exported here, where callers have always found them. The retry schedule is
``bridge.delivery.retry_schedule``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from bridge.delivery import outbox
from bridge.delivery.leases import ClaimedDelivery, claim_and_load, claim_due, claimable_ids_query, extend_leases
from bridge.delivery.outcomes import (
    SENSITIVE_PAYLOAD_KEYS,
    AttemptRecord,
    Finished,
    Outcome,
    record_and_claim,
    record_outcome,
    record_outcomes,
)
from bridge.delivery.wakeup import WAKE_FLAG
from bridge.extensions import db
from bridge.models import Connection, Delivery, DeliveryAttempt, iso, utcnow

__all__ = [
    "PAGE_SIZE",
    "SENSITIVE_PAYLOAD_KEYS",
    "WAKE_FLAG",
    "AttemptRecord",
    "ClaimedDelivery",
    "DeliveryAbandoned",
    "DeliveryNotFound",
    "DeliveryNotRetryable",
    "Finished",
    "Outcome",
    "attempt_to_json",
    "claim_and_load",
    "claim_due",
    "claimable_ids_query",
    "delivery_to_json",
    "extend_leases",
    "get_delivery",
    "list_deliveries",
    "public_payload",
    "queue_counts",
    "record_and_claim",
    "record_outcome",
    "record_outcomes",
    "replay",
    "retry_delivery",
]

PAGE_SIZE = 50


class DeliveryNotFound(LookupError):
    """No delivery with that id."""


class DeliveryNotRetryable(ValueError):
    """Only a ``dead`` or ``failed`` delivery can be retried by hand."""


class DeliveryAbandoned(Exception):
    """Raised by a job handler when the job can never succeed as queued (its user or
    connection is gone, the connection is disabled, the password to return was wiped): the row
    goes ``dead`` at once, visible and replayable, without a CRM call."""

    error_class = "abandoned"


# -- operator actions -------------------------------------------------------------------------


def get_delivery(delivery_id: int) -> Delivery:
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None:
        raise DeliveryNotFound(f"delivery {delivery_id} does not exist")
    return delivery


def _requeue(delivery: Delivery, now: datetime) -> None:
    delivery.status = "pending"
    delivery.next_attempt_at = now
    delivery.lease_owner = None
    delivery.lease_until = None
    delivery.updated_at = now


def retry_delivery(delivery_id: int) -> Delivery:
    """Queue a ``dead`` or ``failed`` delivery to be tried now (not committed: the caller
    commits). Its attempt history is kept. The three-day limit still counts from creation, so
    a row replayed after it gets one try per replay."""
    delivery = get_delivery(delivery_id)
    if delivery.status not in ("dead", "failed"):
        raise DeliveryNotRetryable(f"delivery {delivery_id} is {delivery.status}; only dead or failed can be retried")
    _requeue(delivery, utcnow())
    db.session.info[WAKE_FLAG] = True
    db.session.flush()
    return delivery


def replay(status: str = "dead", since: datetime | None = None) -> int:
    """Queue every delivery in ``status`` (``dead`` or ``failed``) created at or after ``since``
    to be tried now; returns how many (not committed: the caller commits)."""
    if status not in ("dead", "failed"):
        raise DeliveryNotRetryable("only dead or failed deliveries can be replayed")
    now = utcnow()
    conditions = [Delivery.status == status]
    if since is not None:
        conditions.append(Delivery.created_at >= since)
    result = db.session.execute(
        update(Delivery)
        .where(*conditions)
        .values(status="pending", next_attempt_at=now, lease_owner=None, lease_until=None, updated_at=now),
        execution_options={"synchronize_session": False},
    )
    db.session.info[WAKE_FLAG] = True
    db.session.flush()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def list_deliveries(
    *,
    status: str | None = None,
    connection: str | None = None,
    user_id: int | None = None,
    kind: str | None = None,
    page: int = 1,
    per_page: int = PAGE_SIZE,
) -> tuple[list[Delivery], int]:
    """Newest first, filtered; returns (page of rows, total)."""
    conditions = []
    if status:
        conditions.append(Delivery.status == status)
    if connection:
        conditions.append(Delivery.connection.has(Connection.name == connection))
    if user_id is not None:
        conditions.append(Delivery.user_id == user_id)
    if kind:
        conditions.append(Delivery.kind == kind)
    total = db.session.scalar(select(func.count(Delivery.id)).where(*conditions)) or 0
    rows = db.session.scalars(
        select(Delivery)
        .where(*conditions)
        .order_by(Delivery.id.desc())
        .offset((max(page, 1) - 1) * per_page)
        .limit(per_page)
    )
    return list(rows), int(total)


def queue_counts() -> dict[str, int]:
    """Rows per status (every status present, zero when none)."""
    counts = dict.fromkeys(outbox.STATUSES, 0)
    for status, count in db.session.execute(select(Delivery.status, func.count(Delivery.id)).group_by(Delivery.status)):
        counts[status] = int(count)
    return counts


def died_since(when: datetime) -> int:
    """Rows that went ``dead`` at or after ``when`` (a dead row's ``updated_at`` is when it died:
    nothing but a retry or replay changes it again, and those take it out of ``dead``)."""
    return int(
        db.session.scalar(select(func.count(Delivery.id)).where(Delivery.status == "dead", Delivery.updated_at >= when))
        or 0
    )


def oldest_due_wait_seconds(now: datetime | None = None) -> float | None:
    """How long the longest-waiting due row (pending or failed, its time come) has waited past
    its time; None when nothing is due. A queue nobody works grows this without bound."""
    now = now or utcnow()
    oldest = db.session.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.status.in_(("pending", "failed")), Delivery.next_attempt_at <= now
        )
    )
    return None if oldest is None else round(max(0.0, (now - oldest).total_seconds()), 3)


# -- JSON -------------------------------------------------------------------------------------


def public_payload(payload: dict[str, Any] | None) -> dict[str, Any]:
    """The payload as shown to operators: a password waiting to be returned is never shown."""
    shown = dict(payload or {})
    for key in SENSITIVE_PAYLOAD_KEYS:
        if key in shown:
            shown[key] = "********"
    return shown


def attempt_to_json(attempt: DeliveryAttempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "started_at": iso(attempt.started_at),
        "duration_ms": attempt.duration_ms,
        "method": attempt.method,
        "url": attempt.url,
        "status_code": attempt.status_code,
        "error_class": attempt.error_class,
        "error_message": attempt.error_message,
        "worker": attempt.worker,
        "exchanges": attempt.exchanges or [],
    }


def delivery_to_json(delivery: Delivery, *, with_attempts: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": delivery.id,
        "kind": delivery.kind,
        "status": delivery.status,
        "connection": delivery.connection.name if delivery.connection is not None else None,
        "user_id": delivery.user_id,
        "attempts": delivery.attempts,
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.status in ("pending", "failed") else None,
        "last_error": delivery.last_error,
        "payload": public_payload(delivery.payload),
        "result": delivery.result,
        "created_at": iso(delivery.created_at),
        "updated_at": iso(delivery.updated_at),
        "delivered_at": iso(delivery.delivered_at),
    }
    if with_attempts:
        data["attempt_log"] = [attempt_to_json(a) for a in delivery.attempt_log]
    return data
