"""One attempt at a claimed delivery: re-attach its rows, run its job handler on the delivery's
outbound client, and turn what happened into an ``AttemptRecord`` (an adapter's typed error says
whether to retry; a handler bug is a retryable ``internal_error``, never fatal to the worker).
Recording the attempt is the worker's (``bridge.delivery.worker``), batched with others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from bridge.connections.settings_cache import cached_secret_values
from bridge.crypto import SecretUnreadable
from bridge.delivery import jobs
from bridge.delivery.deliveries import DeliveryAbandoned
from bridge.delivery.leases import ClaimedDelivery
from bridge.delivery.outcomes import AttemptRecord, Finished
from bridge.extensions import db
from bridge.models import Delivery, User, utcnow
from bridge.outbound.kept_clients import OutboundClients
from bridge.outbound.redaction import scrub_text
from crm_adapters.errors import AdapterError

log = logging.getLogger("bridge.delivery.worker")  # a handler's crash is the worker's to report


def _retryable_error(attempt: AttemptRecord, error_class: str, message: str, secrets: Sequence[str]) -> AttemptRecord:
    """The attempt as a retryable failure; the exchanges made are kept."""
    return AttemptRecord(
        attempt.started_at,
        attempt.duration_ms,
        attempt.exchanges,
        error_class=error_class,
        error_message=scrub_text(message, list(secrets)),
        retryable=True,
    )


def internal_error(attempt: AttemptRecord, exc: Exception, secrets: Sequence[str]) -> AttemptRecord:
    """The attempt as a retryable ``internal_error`` (a handler bug, or its result could not
    be stored)."""
    return _retryable_error(attempt, "internal_error", f"{exc.__class__.__name__}: {exc}", secrets)


def _unreadable_secret(attempt: AttemptRecord, exc: SecretUnreadable, secrets: Sequence[str]) -> AttemptRecord:
    """A retryable ``secret_unreadable``: a secret the attempt needs (a credential, a password
    to return) was encrypted with another SECRET_KEY; the message says which and what to do.

    Retryable because the delivery is fine and the fix is the operator's: restoring the old key
    (or setting the credential again) lets the next try through, so the pushes queued meanwhile
    go out by themselves instead of all ending dead; unfixed, a row is still ``dead`` (visible,
    replayable) after the usual three days. Not a bug, so no traceback is logged."""
    return _retryable_error(attempt, "secret_unreadable", str(exc), secrets)


def run(claimed: ClaimedDelivery, clients: OutboundClients, worker_id: str) -> tuple[Finished, bool]:
    """Run one claimed row's handler (inside an app context). Returns the finished attempt,
    and whether it must be recorded on this thread: a handler that wrote in its own session
    (the queued inbound webhook) has its writes and its attempt in one transaction."""
    # The rows were loaded when they were claimed: re-attach them without a query, so no
    # transaction is open when the handler talks to a CRM (on SQLite every transaction
    # holds the write lock). Nothing expires on commit: handlers end their own reads
    # before CRM calls and keep using the rows they were given.
    db.session().expire_on_commit = False
    delivery = db.session.merge(claimed.delivery, load=False)
    user = db.session.merge(claimed.user, load=False) if claimed.user is not None else None
    started_at = utcnow()
    started = time.perf_counter()
    secret_list: tuple[str, ...] = ()
    ctx: jobs.JobContext | None = None
    in_session = False
    try:
        ctx, secret_list = _context(delivery, user, clients, worker_id)
        ctx.local_tags = claimed.local_tags
        result = jobs.handler_for(delivery.kind)(ctx)
        record = AttemptRecord(started_at, 0.0, [], result=result if isinstance(result, dict) else None)
        # A handler that wrote in its own session: its writes and the attempt are one
        # transaction, recorded on this thread.
        session = db.session()
        in_session = session.in_transaction() or bool(session.new or session.dirty or session.deleted)
        if in_session:
            for write in ctx.after_success:
                write()
    except AdapterError as exc:
        db.session.rollback()
        secret_list = _redaction_secrets(ctx, secret_list)  # an error may quote an echoed credential
        record = AttemptRecord(
            started_at,
            0.0,
            [],
            error_class=exc.error_class,
            error_message=scrub_text(exc.message, secret_list),
            retryable=exc.retryable,
            retry_after=exc.retry_after,
        )
    except (DeliveryAbandoned, jobs.UnknownJobKind) as exc:
        db.session.rollback()
        error_class = DeliveryAbandoned.error_class if isinstance(exc, DeliveryAbandoned) else "unknown_kind"
        record = AttemptRecord(
            started_at, 0.0, [], error_class=error_class, error_message=scrub_text(str(exc), secret_list)
        )
    except SecretUnreadable as exc:
        db.session.rollback()
        record = _unreadable_secret(AttemptRecord(started_at, 0.0, []), exc, secret_list)
    except Exception as exc:  # a handler bug: recorded and retried, never fatal to the worker
        db.session.rollback()
        log.exception("delivery %s (%s): handler error", delivery.id, delivery.kind)
        record = internal_error(AttemptRecord(started_at, 0.0, []), exc, secret_list)
    record.duration_ms = (time.perf_counter() - started) * 1000
    writes: list[Any] = []
    if ctx is not None:
        jobs.store_changed_settings(ctx, joined=in_session and record.succeeded)
        record.exchanges = list(ctx.http.exchanges)
        if record.succeeded and not in_session:
            writes = ctx.after_success
    return Finished(claimed.delivery, record, writes), in_session and record.succeeded


def _redaction_secrets(ctx: jobs.JobContext | None, configured: tuple[str, ...]) -> tuple[str, ...]:
    """The configured secrets and every credential the attempt's client sent, encoded every way."""
    return getattr(ctx.http, "redaction_secrets", configured) if ctx is not None else configured


def _context(
    delivery: Delivery, user: User | None, clients: OutboundClients, worker_id: str
) -> tuple[jobs.JobContext, tuple[str, ...]]:
    connection = delivery.connection
    secret_list = cached_secret_values(connection) if connection is not None else ()
    http = clients.checkout(connection.id if connection is not None else None, secret_list)
    http.session.headers["Idempotency-Key"] = str(delivery.id)
    return jobs.JobContext(delivery, connection, user, http, worker_id), secret_list
