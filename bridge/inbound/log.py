"""The inbound log: one ``WebhookEvent`` row per inbound request, errors included.

The row is what an operator reads to see what a CRM sent and what we answered, so it keeps the
payload, but redacted: the access key never appears (not in the path, not in the body, not in
a header), and password-like fields are masked. Error responses write this row and nothing
else, so it is written in its own transaction after the request's work was committed or rolled
back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select

from bridge.extensions import db
from bridge.models import WebhookEvent, iso, utcnow
from bridge.outbound.redaction import redact_body, redact_url, scrub_text
from bridge.raw_statements import RawStatement
from crm_adapters.untrusted import storable

PAYLOAD_CHARS = 65_536
MESSAGE_CHARS = 2_000
EVENTS = WebhookEvent.__table__


@dataclass
class InboundLogEntry:
    """Filled in as the request is handled; :func:`record` writes it."""

    method: str
    path: str
    source_ip: str | None
    started: float = field(default_factory=time.perf_counter)
    connection_id: int | None = None
    connection_name: str | None = None
    action: str | None = None
    contact_id: str | None = None
    user_id: int | None = None
    status_code: int = 500
    outcome: str = "error"
    message: str | None = None
    payload: str | None = None  # redacted and storable (``redact_request``)
    recorded: bool = False
    # (the secrets, the path scrubbed of them), made by ``redact_request``
    redacted_path: tuple[tuple[str, ...], str | None] | None = None

    def redact_request(self, body: bytes, content_type: str, secrets: Iterable[str]) -> None:
        """Keep the path and the body redacted: password fields masked, key-like parameters and
        the given secret values (the request's access key) replaced. Done as soon as the
        request is read, so the row written later inside the webhook's transaction (on SQLite
        under the writer lock every other process waits for) is only assembled there.

        Only the first PAYLOAD_CHARS of the body are kept, so a long form is cut at a field
        boundary first: redacting all of a 300 KB form to keep 64 KB of it cost a wrong-key
        request most of its time."""
        secrets = tuple(s for s in secrets if s)
        self.redacted_path = (secrets, storable(scrubbed_path(self.path, secrets)))
        if body:
            if len(body) > PAYLOAD_CHARS and body.lstrip()[:1] not in (b"{", b"[") and b"&" in body:
                body = body[: body.rfind(b"&", 0, PAYLOAD_CHARS) + 1 or PAYLOAD_CHARS]
            self.payload = storable(redact_body(body, content_type, secrets)[:PAYLOAD_CHARS])

    def path_without(self, secrets: tuple[str, ...]) -> str | None:
        """The path scrubbed of ``secrets`` (non-empty ones), storable: the one ``redact_request``
        made when it was given the same secrets."""
        if self.redacted_path is not None and self.redacted_path[0] == secrets:
            return self.redacted_path[1]
        return storable(scrubbed_path(self.path, secrets))


def scrubbed_path(full_path: str, secrets: Iterable[str] = ()) -> str:
    """The request path and query with ``access_key`` (and any given secret) removed."""
    return redact_url(full_path.rstrip("?"), tuple(s for s in secrets if s))


_ROW_KEYS = (
    "connection_id",
    "connection_name",
    "action",
    "contact_id",
    "user_id",
    "method",
    "path",
    "status_code",
    "outcome",
    "message",
    "duration_ms",
    "source_ip",
    "payload",
    "received_at",
)
_INSERT_EVENT = RawStatement(insert(EVENTS), column_keys=_ROW_KEYS)


def add(entry: InboundLogEntry, secrets: Iterable[str] = ()) -> None:
    """Insert the log row in the current transaction (the caller commits it with its own work).

    A prebuilt INSERT on the DBAPI cursor (``bridge.raw_statements``) rather than an ORM object:
    nothing reads the row back in this request, and the ORM's bookkeeping, then Core's
    execution layer, were a visible share of a webhook's cost.
    """
    _INSERT_EVENT.execute(row_values(entry, secrets))
    entry.recorded = True


def row_values(entry: InboundLogEntry, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The ``webhook_event`` row of ``entry``, scrubbed of ``secrets``, for a caller that
    writes it itself (``add``; the async accept writes it with its job). Strings that quote the
    request are made storable (no NUL, no lone surrogate): the row of a hostile request is kept."""
    secrets = tuple(s for s in secrets if s)
    message = scrub_text(entry.message, secrets)[:MESSAGE_CHARS] if entry.message else None
    return {
        "connection_id": entry.connection_id,
        "connection_name": entry.connection_name,
        "action": storable((entry.action or None) and entry.action[:32]),
        "contact_id": storable(entry.contact_id),
        "user_id": entry.user_id,
        "method": entry.method[:8],
        "path": entry.path_without(secrets),
        "status_code": entry.status_code,
        "outcome": entry.outcome[:64],
        "message": storable(message),
        "duration_ms": round((time.perf_counter() - entry.started) * 1000, 3),
        "source_ip": (entry.source_ip or None) and entry.source_ip[:64],
        "payload": entry.payload,
        "received_at": utcnow(),
    }


def record(entry: InboundLogEntry, secrets: Iterable[str] = ()) -> None:
    """Write the log row in its own transaction (the caller's work is already settled)."""
    add(entry, secrets)
    db.session.commit()


# -- reading ----------------------------------------------------------------------------------


def event_to_json(row: WebhookEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "connection": row.connection_name,
        "action": row.action,
        "contact_id": row.contact_id,
        "user_id": row.user_id,
        "status": row.status_code,
        "outcome": row.outcome,
        "message": row.message,
        "duration_ms": row.duration_ms,
        "source_ip": row.source_ip,
        "method": row.method,
        "path": row.path,
        "payload": row.payload,
        "received_at": iso(row.received_at),
    }


def list_events(
    *,
    connection: str | None = None,
    status: str | None = None,
    action: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> tuple[list[WebhookEvent], int]:
    """Newest first. ``status`` is an HTTP status (``403``) or an outcome (``created``)."""
    query = select(WebhookEvent)
    if connection:
        query = query.where(WebhookEvent.connection_name == connection)
    if action:
        query = query.where(WebhookEvent.action == action)
    if status:
        if status.isdigit():
            query = query.where(WebhookEvent.status_code == int(status))
        else:
            query = query.where(WebhookEvent.outcome == status)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(
        query.order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return list(rows), int(total)
