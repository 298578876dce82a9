"""The ``batch.page`` job: one page of a batch, run by the delivery worker like any outbox row.

A page reads its batch, ends that read (no transaction is held while the CRM answers), runs
its operation's step (registered by the layers above, ``bridge.delivery.batches``), then, in
the session the worker commits together with the job's attempt: writes the page's item rows
(new ones only), moves the counters by what was new, keeps the first errors, and queues the
next page, or finishes the batch. A worker killed anywhere before that commit leaves the job
to be claimed again when its lease expires, and the page runs again from the same cursor.

Per-item errors are the step's to catch and report as ``failed`` items; an error from the
source itself (the CRM's listing) is the page's: retried by the worker when retryable (the
CRM is down or busy), else the batch ends ``failed`` with the CRM's answer as its message.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from sqlalchemy import select, update

from bridge.connections.rate_limits import batch_calls
from bridge.delivery import batches
from bridge.delivery.batches import BATCH_PAGE, MAX_ERRORS, PageContext, PageWork
from bridge.delivery.deliveries import DeliveryAbandoned
from bridge.delivery.jobs import JobContext, job_handler
from bridge.extensions import db
from bridge.models import Batch, BatchItem, Connection, utcnow
from bridge.raw_statements import RowsInsert
from crm_adapters.errors import AdapterError

log = logging.getLogger(__name__)

COUNTED = ("created", "updated", "unchanged", "failed", "removed")
_ITEMS = BatchItem.__table__


@job_handler(BATCH_PAGE)
def run_page(ctx: JobContext) -> dict[str, Any]:
    payload = ctx.delivery.payload or {}
    batch_id, page = int(payload["batch_id"]), int(payload["page"])
    batch = db.session.get(Batch, batch_id)
    if batch is None:
        raise DeliveryAbandoned(f"batch {batch_id} no longer exists")
    if batches.is_finished(batch):
        db.session.commit()
        return {"batch": batch_id, "page": page, "skipped": batch.status}
    operation = batches.operation_for(batch.operation)
    if batch.status == "queued":
        batch.status, batch.started_at = "running", utcnow()
    connection = db.session.get(Connection, batch.connection_id) if batch.connection_id else None
    db.session.commit()  # end the read (and store "running") before any CRM call
    page_ctx = PageContext(
        batch,
        connection,
        ctx,
        payload.get("cursor"),
        retries=int(payload.get("retries") or 0),
        retry_key=payload.get("retry_key"),
    )
    try:
        with batch_calls():
            work = operation.step(page_ctx)
    except AdapterError as exc:
        if exc.retryable:
            raise  # the source is down or busy: the worker tries this page again later
        db.session.rollback()
        fail_batch(batch_id, f"{exc.error_class}: {exc.message}")
        return {"batch": batch_id, "page": page, "failed": exc.error_class}
    except DeliveryAbandoned as exc:  # its connection was removed or disabled
        db.session.rollback()
        fail_batch(batch_id, str(exc))
        return {"batch": batch_id, "page": page, "failed": DeliveryAbandoned.error_class}
    counts = record_page(batch_id, page, work)
    return {"batch": batch_id, "page": page, "items": len(work.items), **counts}


def record_page(batch_id: int, page: int, work: PageWork) -> dict[str, int]:
    """Write the page's results into the current session (the worker commits them with the
    attempt). Returns the counts that were new."""
    new = _insert_items(batch_id, work)
    counts = Counter(outcome for _key, outcome, _error in new)
    fresh = select(Batch).where(Batch.id == batch_id).with_for_update().execution_options(populate_existing=True)
    batch = db.session.scalar(fresh)  # the row as it is now (a cancel may have come meanwhile)
    if batch is None:
        return {}
    values: dict[str, Any] = {name: getattr(Batch, name) + counts.get(name, 0) for name in COUNTED}
    values["done"] = Batch.done + len(new)
    errors = list(batch.errors or [])
    if len(errors) < MAX_ERRORS:
        fresh = [{"item": key, "error": error or outcome} for key, outcome, error in new if outcome == "failed"]
        if fresh:
            values["errors"] = errors + fresh[: MAX_ERRORS - len(errors)]
    if work.total is not None and batch.total is None:
        values["total"] = work.total
    if work.next_cursor is not None or work.retry_in is not None:
        _queue_next(batch, page, work)
    elif batch.status in batches.OPEN:
        values.update(status="succeeded", listed=True, finished_at=utcnow(), total=batch.done + len(new))
    else:
        values["listed"] = True
    db.session.execute(update(Batch).where(Batch.id == batch_id).values(values))
    return dict(counts)


def _queue_next(batch: Batch, page: int, work: PageWork) -> None:
    """Queue the next page once: only the page that moves ``next_page`` on queues it, so a page
    run twice never forks the chain. A cancelled batch queues nothing more."""
    if batch.status not in batches.OPEN:
        return
    moved = db.session.execute(
        update(Batch).where(Batch.id == batch.id, Batch.next_page == page + 1).values(next_page=page + 2)
    )
    if not moved.rowcount:  # type: ignore[attr-defined]
        return
    batches.queue_page(
        batch.id, page + 1, work.next_cursor, retries=work.retries, retry_key=work.retry_key, delay=work.retry_in or 0
    )


def _insert_items(batch_id: int, work: PageWork) -> list[tuple[str, str, str | None]]:
    """Insert the page's item rows, skipping keys the batch has already; returns the new ones
    as (key, outcome, error)."""
    if not work.items:
        return []
    now = utcnow()
    rows = [
        {
            "batch_id": batch_id,
            "item_key": item.key[:191],
            "user_id": item.user_id,
            "outcome": item.outcome,
            "error": (item.error or None) and item.error[:2000],
            "fingerprint": item.fingerprint,
            "created_at": now,
        }
        for item in {item.key[:191]: item for item in work.items}.values()
    ]
    return _INSERT_ITEMS.run(rows)  # type: ignore[return-value]


# ``INSERT … ON CONFLICT (batch_id, item_key) DO NOTHING RETURNING …``: one statement per page,
# its text the same for every page (``RowsInsert``).
_INSERT_ITEMS = RowsInsert(
    _ITEMS,
    ("batch_id", "item_key", "user_id", "outcome", "error", "fingerprint", "created_at"),
    returning=("item_key", "outcome", "error"),
    skip_conflicts_on=("batch_id", "item_key"),
)


def fail_batch(batch_id: int, message: str) -> None:
    """End a batch as ``failed`` (its source refused: bad credentials, no listing API). Commits."""
    db.session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status.in_(batches.OPEN))
        .values(status="failed", finished_at=utcnow(), message=message[:2000])
    )
    db.session.commit()
    log.warning("batch %s failed: %s", batch_id, message)
