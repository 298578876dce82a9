"""Batch operations (CONTRACT.md §11): starting, cancelling, undoing and showing batches.

A batch is one ``batch`` row and a chain of ``batch.page`` outbox jobs (``bridge.delivery.
batch_pages``): each page lists up to a page of contacts (from the CRM) or users (from the
database), deals with them, records one ``batch_item`` row per contact or user and queues the
next page, all in the transaction that records the job's attempt. So a killed worker's page is
simply run again by another worker (its lease expires), and a page that runs twice counts its
items once (item rows are unique per batch and only a new row moves the counters).

One page at a time per batch, each page short (a CRM page of 100, or as many pushes as fit in
``PAGE_SECONDS``), queued behind whatever is already due: a registration or an inbound webhook
waits for at most one page, never for the batch's backlog.

What a page does to users is not this layer's to know: the layers above register each
operation with :func:`batch_operation` (``bridge.inbound.batch_import``,
``bridge.accounts.batch_push``, ``bridge.accounts.batch_undo``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, insert, select, update

from bridge.connections.adapter_registry import adapter_class
from bridge.delivery import jobs, outbox
from bridge.delivery.wakeup import WAKE_FLAG
from bridge.errors import ApiError
from bridge.extensions import db
from bridge.models import Batch, Connection, Delivery, iso, utcnow
from crm_adapters.base import Adapter

BATCH_PAGE = "batch.page"
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
OPEN = ("queued", "running")
STARTABLE = ("import", "push", "resync")
MAX_ERRORS = 100
PAGE_SIZE = 100


class BatchError(ApiError):
    """A batch that cannot be started, cancelled or undone (a 4xx with a code)."""


@dataclass
class ItemResult:
    """What a page did with one contact or user. ``key`` is unique within the batch (the
    contact id, or ``user:ID``); ``outcome`` is created, updated, unchanged, failed or removed.
    ``fingerprint`` is kept for users an import created (``undo`` compares it)."""

    key: str
    outcome: str
    user_id: int | None = None
    error: str | None = None
    fingerprint: str | None = None


@dataclass
class PageWork:
    """What one page did: its items, where the next page starts (None: this was the last), the
    total when the source knows it, and, when the page stopped at an item the CRM could not take
    yet, how long to wait before the next page retries it."""

    items: list[ItemResult] = field(default_factory=list)
    next_cursor: str | None = None
    total: int | None = None
    retry_in: float | None = None
    retry_key: str | None = None
    retries: int = 0


@dataclass
class PageContext:
    """One page's inputs: the batch (read when the page began), its connection, the job's
    context (outbound client, worker), the cursor and the retries of the item it stopped at."""

    batch: Batch
    connection: Connection | None
    job: jobs.JobContext
    cursor: str | None
    retries: int = 0
    retry_key: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.batch.params or {})


PageStep = Callable[[PageContext], PageWork]
ParamsCheck = Callable[[Connection | None, dict[str, Any]], None]


@dataclass(frozen=True)
class Operation:
    name: str
    step: PageStep
    lists_crm: bool = False
    check: ParamsCheck | None = None


_OPERATIONS: dict[str, Operation] = {}


def batch_operation(
    name: str, *, lists_crm: bool = False, check: ParamsCheck | None = None
) -> Callable[[PageStep], PageStep]:
    """Register what a page of ``name`` does (``lists_crm``: it needs the adapter's
    ``list_contacts``; ``check`` refuses bad parameters when the batch is started)."""

    def register(step: PageStep) -> PageStep:
        _OPERATIONS[name] = Operation(name, step, lists_crm, check)
        return step

    return register


def operation_for(name: str) -> Operation:
    if name not in _OPERATIONS:
        jobs.load_handlers()
    try:
        return _OPERATIONS[name]
    except KeyError:
        raise BatchError(400, "unknown_operation", f"unknown batch operation {name!r}") from None


def can_list(adapter: type[Adapter]) -> bool:
    """Whether the adapter implements ``list_contacts`` (the base class's says it cannot)."""
    return adapter.list_contacts is not Adapter.list_contacts


# -- starting ---------------------------------------------------------------------------------


def start_batch(operation: str, connection_name: str, params: dict[str, Any] | None = None) -> Batch:
    """Create a batch and queue its first page (committed). Raises :class:`BatchError`."""
    if operation not in STARTABLE:
        raise BatchError(400, "unknown_operation", f"operation must be one of {', '.join(STARTABLE)}")
    connection = db.session.scalar(select(Connection).where(Connection.name == connection_name))
    if connection is None:
        raise BatchError(404, "connection_not_found", f"no connection named {connection_name!r}")
    chosen = operation_for(operation)
    adapter = adapter_class(connection.type)
    if chosen.lists_crm and not can_list(adapter):
        detail = "supports push only" if connection.type == "custom_webhook" else "has no API to list contacts"
        raise BatchError(
            400, "operation_not_supported", f"{connection.name} ({adapter.label or connection.type}) {detail}"
        )
    clean = clean_params(operation, params or {})
    if chosen.check is not None:
        chosen.check(connection, clean)
    return _create(operation, connection, clean)


PARAMETERS: dict[str, dict[str, type]] = {
    "import": {"tag": str, "role": str, "send_welcome": bool},
    "push": {"all": bool},
    "resync": {},
}


def clean_params(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """The operation's parameters, checked (CONTRACT.md §11); unset ones left out."""
    allowed = PARAMETERS[operation]
    clean: dict[str, Any] = {}
    for name, value in params.items():
        if value in (None, "", False):
            continue
        if name not in allowed:
            raise BatchError(400, "invalid_parameter", f"{operation} takes no parameter {name!r}")
        if not isinstance(value, allowed[name]):
            kind = "true or false" if allowed[name] is bool else "a string"
            raise BatchError(400, "invalid_parameter", f"{name} must be {kind}")
        clean[name] = value.strip() if isinstance(value, str) else value
    return clean


def start_undo(batch_id: int) -> Batch:
    """Queue the undo of an import: a batch of its own (operation ``undo``) that removes the users
    the import created and nobody has changed since. Raises :class:`BatchError`."""
    target = get_batch(batch_id)
    if target.operation != "import":
        raise BatchError(409, "not_undoable", "only an import can be undone")
    if target.status in OPEN:
        raise BatchError(409, "batch_running", "the import is still running: cancel it first")
    connection = db.session.get(Connection, target.connection_id) if target.connection_id else None
    operation_for("undo")
    return _create("undo", connection, {"undoes": target.id}, name=target.connection_name)


def _create(operation: str, connection: Connection | None, params: dict[str, Any], name: str = "") -> Batch:
    batch = Batch(
        operation=operation,
        connection_id=connection.id if connection is not None else None,
        connection_name=connection.name if connection is not None else name,
        status="queued",
        params=params,
        errors=[],
        next_page=2,
    )
    db.session.add(batch)
    db.session.flush()
    queue_page(batch.id, 1, None)
    db.session.commit()
    return batch


def queue_page(
    batch_id: int, page: int, cursor: str | None, *, retries: int = 0, retry_key: str | None = None, delay: float = 0
) -> None:
    """Add a page job to the current transaction (never commits). Pages are queued behind
    what is due now, so registrations and webhooks queued meanwhile go first; ``delay`` holds
    a page back (the CRM asked us to wait)."""
    payload: dict[str, Any] = {"batch_id": batch_id, "page": page, "cursor": cursor}
    if retries:
        payload.update(retries=retries, retry_key=retry_key)
    now = utcnow()
    row = outbox.new_row(BATCH_PAGE, connection_id=None, user_id=None, payload=payload, now=now)
    row.update(dedupe_key=f"batch:{batch_id}:page:{page}", next_attempt_at=now + timedelta(seconds=delay))
    db.session.connection().execute(insert(Delivery.__table__), row)
    db.session.info[WAKE_FLAG] = True


# -- cancelling and reading -------------------------------------------------------------------


def cancel_batch(batch_id: int) -> Batch:
    """Stop a queued or running batch: no further page starts (a page running now finishes and
    is counted). Cancelling a finished batch changes nothing. Commits."""
    batch = get_batch(batch_id)
    db.session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status.in_(OPEN))
        .values(status="cancelled", finished_at=utcnow())
    )
    db.session.commit()
    db.session.refresh(batch)
    return batch


def get_batch(batch_id: int) -> Batch:
    batch = db.session.get(Batch, batch_id)
    if batch is None:
        raise BatchError(404, "batch_not_found", f"no batch {batch_id}")
    return batch


def list_batches(*, status: str | None = None, page: int = 1, per_page: int = 50) -> tuple[list[Batch], int]:
    query = select(Batch)
    if status:
        query = query.where(Batch.status == status)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(query.order_by(Batch.id.desc()).limit(per_page).offset((page - 1) * per_page)).all()
    return list(rows), int(total)


def batch_to_json(batch: Batch) -> dict[str, Any]:
    """The batch JSON of CONTRACT.md §11 (plus ``tag``/``undoes`` and, for an undo, ``removed``)."""
    params = dict(batch.params or {})
    body: dict[str, Any] = {
        "id": batch.id,
        "operation": batch.operation,
        "connection": batch.connection_name,
        "status": batch.status,
        "total": batch.total,
        "done": batch.done,
        "created": batch.created,
        "updated": batch.updated,
        "unchanged": batch.unchanged,
        "failed": batch.failed,
        "errors": list(batch.errors or [])[:MAX_ERRORS],
        "created_at": iso(batch.created_at),
        "started_at": iso(batch.started_at),
        "finished_at": iso(batch.finished_at),
        "params": params,
    }
    if batch.operation == "undo":
        body["removed"] = batch.removed
    if batch.message:
        body["message"] = batch.message
    return body


def is_finished(batch: Batch) -> bool:
    return batch.status not in OPEN
