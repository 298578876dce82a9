"""Read-side helpers for the console pages: small queries that run without a request, so the
views stay thin and the numbers can be tested on their own."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select

from bridge.connections import service as connection_service
from bridge.connections import settings as settings_service
from bridge.delivery.outbox import OPEN_STATUSES, STATUSES
from bridge.extensions import db
from bridge.models import (
    AccessKey,
    Connection,
    ContactLink,
    CrmActivity,
    Delivery,
    User,
    WebhookEvent,
    WorkerHeartbeat,
    utcnow,
)
from bridge.outbound.redaction import redact_body, redact_data

T = TypeVar("T")
PER_PAGE = 25


@dataclass
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    per_page: int = PER_PAGE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def paginate(query: Select[Any], page: int, per_page: int = PER_PAGE) -> Page[Any]:
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    page = max(1, page)
    items = list(db.session.scalars(query.limit(per_page).offset((page - 1) * per_page)))
    return Page(items=items, total=total, page=page, per_page=per_page)


# -- dashboard --------------------------------------------------------------------------------


@dataclass
class Dashboard:
    users: int
    connections: int
    activity: int
    inbound_24h: int
    inbound_errors_24h: int
    deliveries: dict[str, int]
    last_heartbeat: datetime | None
    recent_events: list[WebhookEvent] = field(default_factory=list)
    recent_failures: list[Delivery] = field(default_factory=list)

    @property
    def queue_depth(self) -> int:
        return sum(self.deliveries.get(status, 0) for status in OPEN_STATUSES)

    @property
    def finished(self) -> int:
        return self.deliveries.get("succeeded", 0) + self.deliveries.get("dead", 0)

    @property
    def success_percent(self) -> float | None:
        """Succeeded out of finished deliveries (None before any finished)."""
        return round(100 * self.deliveries.get("succeeded", 0) / self.finished, 1) if self.finished else None

    def status_percent(self, status: str) -> float:
        total = sum(self.deliveries.values())
        return round(100 * self.deliveries.get(status, 0) / total, 1) if total else 0.0


def count(model: type, *criteria: Any) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*criteria)) or 0


def delivery_counts(*criteria: Any) -> dict[str, int]:
    rows = db.session.execute(select(Delivery.status, func.count()).where(*criteria).group_by(Delivery.status))
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: number for status, number in rows})
    return counts


def dashboard() -> Dashboard:
    since = utcnow() - timedelta(hours=24)
    return Dashboard(
        users=count(User),
        connections=count(Connection),
        activity=count(CrmActivity),
        inbound_24h=count(WebhookEvent, WebhookEvent.received_at >= since),
        inbound_errors_24h=count(WebhookEvent, WebhookEvent.received_at >= since, WebhookEvent.status_code >= 400),
        deliveries=delivery_counts(),
        last_heartbeat=db.session.scalar(select(func.max(WorkerHeartbeat.last_seen))),
        recent_events=recent_events(limit=10),
        recent_failures=list(
            db.session.scalars(
                select(Delivery)
                .where(Delivery.status.in_(("failed", "dead")))
                .order_by(Delivery.updated_at.desc(), Delivery.id.desc())
                .limit(10)
            )
        ),
    )


# -- connections ------------------------------------------------------------------------------


@dataclass
class ConnectionSummary:
    connection: Connection
    enabled: bool
    missing: list[str]
    key_hint: str | None
    open_deliveries: int
    unreadable: list[str] = field(default_factory=list)  # secrets this SECRET_KEY cannot decrypt

    @property
    def unreadable_hint(self) -> str:
        return settings_service.unreadable_hint(self.connection.name, self.unreadable)


def current_key_hint(connection: Connection) -> str | None:
    """``cbk_…abcd`` for the newest key without expiry: enough to tell keys apart, no more."""
    hint = db.session.scalar(
        select(AccessKey.hint)
        .where(AccessKey.connection_id == connection.id, AccessKey.expires_at.is_(None))
        .order_by(AccessKey.id.desc())
        .limit(1)
    )
    return f"{connection_service.ACCESS_KEY_PREFIX}…{hint}" if hint else None


def grace_keys(connection: Connection) -> list[AccessKey]:
    """Rotated-out keys still inside their grace period."""
    return list(
        db.session.scalars(
            select(AccessKey)
            .where(AccessKey.connection_id == connection.id, AccessKey.expires_at > utcnow())
            .order_by(AccessKey.expires_at.desc())
        )
    )


def summarise(connection: Connection) -> ConnectionSummary:
    settings, unreadable = settings_service.read_settings(connection)
    return ConnectionSummary(
        connection=connection,
        enabled=bool(settings.get("enabled", True)),
        missing=settings_service.missing_among(connection.type, settings, unreadable),
        key_hint=current_key_hint(connection),
        open_deliveries=count(Delivery, Delivery.connection_id == connection.id, Delivery.status.in_(OPEN_STATUSES)),
        unreadable=unreadable,
    )


def connection_summaries() -> list[ConnectionSummary]:
    return [summarise(c) for c in db.session.scalars(select(Connection).order_by(Connection.name))]


def secret_setting_names(connection: Connection) -> set[str]:
    return {s.name for s in settings_service.settings_for_type(connection.type) if s.secret}


# -- users ------------------------------------------------------------------------------------


def search_users(email: str | None, page: int) -> Page[User]:
    query = select(User).order_by(User.id.desc())
    if email and email.strip():
        query = query.where(User.email.contains(email.strip().lower(), autoescape=True))
    return paginate(query, page)


def links_of(user: User) -> list[tuple[ContactLink, str]]:
    """Every link the user has had, current first: earlier ones explain where old activity came from."""
    rows = db.session.execute(
        select(ContactLink, Connection.name)
        .join(Connection, Connection.id == ContactLink.connection_id)
        .where(ContactLink.user_id == user.id)
        .order_by(ContactLink.unlinked_at.is_not(None), ContactLink.linked_at.desc(), ContactLink.id.desc())
    )
    return [(link, name) for link, name in rows]


@dataclass
class TimelineEntry:
    """One line of a user's timeline: CRM activity, an inbound webhook or a delivery."""

    at: datetime
    source: str  # "crm" | "inbound" | "delivery"
    label: str
    title: str
    detail: str
    status: str
    link: tuple[str, dict[str, Any]] | None = None  # (endpoint, values) of a detail page


def timeline(user: User, limit: int = 100) -> list[TimelineEntry]:
    """CRM activity, inbound webhook events and deliveries for the user, merged, newest first."""
    entries: list[TimelineEntry] = []
    for activity in db.session.scalars(
        select(CrmActivity).where(CrmActivity.user_id == user.id).order_by(CrmActivity.id.desc()).limit(limit)
    ):
        entries.append(
            TimelineEntry(
                at=activity.received_at,
                source="crm",
                label="CRM",
                title=activity.event_type,
                detail=f"contact {activity.contact_id} · " + _short_json(redact_data(activity.payload)),
                status="info",
            )
        )
    for event in db.session.scalars(
        select(WebhookEvent).where(WebhookEvent.user_id == user.id).order_by(WebhookEvent.id.desc()).limit(limit)
    ):
        entries.append(
            TimelineEntry(
                at=event.received_at,
                source="inbound",
                label="Inbound",
                title=f"{event.action or 'request'} from {event.connection_name or 'unknown connection'}",
                detail=f"HTTP {event.status_code} · {event.outcome}" + (f" · {event.message}" if event.message else ""),
                status=status_class(event.status_code),
                link=("admin.webhook_detail", {"event_id": event.id}),
            )
        )
    for delivery in db.session.scalars(
        select(Delivery).where(Delivery.user_id == user.id).order_by(Delivery.id.desc()).limit(limit)
    ):
        entries.append(
            TimelineEntry(
                at=delivery.created_at,
                source="delivery",
                label="Delivery",
                title=f"{delivery.kind} to {delivery.connection.name if delivery.connection else 'site'}",
                detail=f"{delivery.attempts} attempt(s)" + (f" · {delivery.last_error}" if delivery.last_error else ""),
                status=delivery.status,
                link=("admin.delivery_detail", {"delivery_id": delivery.id}),
            )
        )
    entries.sort(key=lambda entry: entry.at, reverse=True)
    return entries[:limit]


def _short_json(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_class(status_code: int | None) -> str:
    if status_code is None:
        return "pending"
    if status_code < 300:
        return "succeeded"
    if status_code < 500:
        return "failed"
    return "dead"


# -- inbound log ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookFilters:
    connection: str = ""
    action: str = ""
    status: str = ""  # "2xx", "4xx", "5xx" or an exact code
    contact_id: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> WebhookFilters:
        return cls(
            **{name: (args.get(name) or "").strip() for name in ("connection", "action", "status", "contact_id")}
        )

    @property
    def problem(self) -> str | None:
        """What is wrong with the status filter (it is then not applied), else None."""
        if self.status and not (re.fullmatch(r"[1-5]xx", self.status) or re.fullmatch(r"[1-5]\d\d", self.status)):
            return f"There is no status filter {self.status!r}; use 2xx, 4xx, 5xx or a code such as 403."
        return None

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.connection:
            query = query.where(WebhookEvent.connection_name == self.connection)
        if self.action:
            query = query.where(WebhookEvent.action == self.action)
        if self.contact_id:
            query = query.where(WebhookEvent.contact_id == self.contact_id)
        if re.fullmatch(r"[1-5]xx", self.status):
            low = int(self.status[0]) * 100
            query = query.where(WebhookEvent.status_code >= low, WebhookEvent.status_code < low + 100)
        elif self.status.isdigit() and not self.problem:
            query = query.where(WebhookEvent.status_code == int(self.status))
        return query


def recent_events(limit: int = 10, *criteria: Any) -> list[WebhookEvent]:
    return list(
        db.session.scalars(
            select(WebhookEvent)
            .where(*criteria)
            .order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
            .limit(limit)
        )
    )


def webhook_events(filters: WebhookFilters, page: int) -> Page[WebhookEvent]:
    query = filters.apply(select(WebhookEvent)).order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
    return paginate(query, page)


def distinct_values(column: Any) -> list[str]:
    return [v for v in db.session.scalars(select(column).distinct().order_by(column)) if v]


def pretty_payload(text: str | None, secrets: Sequence[str] = ()) -> str:
    """A stored payload for display: redacted once more (defence in depth), JSON indented."""
    redacted = redact_body(text or "", secrets=secrets)
    try:
        return json.dumps(json.loads(redacted), indent=2, ensure_ascii=False)
    except ValueError:
        return redacted


def pretty_json(value: Any, secrets: Sequence[str] = ()) -> str:
    return json.dumps(redact_data(value, secrets), indent=2, ensure_ascii=False, default=str)


# -- deliveries -------------------------------------------------------------------------------


def deliveries(status: str, connection: str, page: int) -> Page[Delivery]:
    query = select(Delivery).order_by(Delivery.id.desc())
    if status in STATUSES:
        query = query.where(Delivery.status == status)
    if connection:
        query = query.join(Connection, Connection.id == Delivery.connection_id).where(Connection.name == connection)
    return paginate(query, page)


def recent_deliveries(limit: int = 10, *criteria: Any) -> list[Delivery]:
    return list(db.session.scalars(select(Delivery).where(*criteria).order_by(Delivery.id.desc()).limit(limit)))


def users_by_id(ids: Sequence[int | None]) -> dict[int, User]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(wanted)))}


def user_id_from(text: str) -> int:
    """A user named in a form by id (``7``, ``#7``) or email; ``ValueError`` when none matches."""
    cleaned = (text or "").strip().lstrip("#")
    if cleaned.isdigit():
        return int(cleaned)
    user_id = db.session.scalar(select(User.id).where(User.email == cleaned.lower())) if cleaned else None
    if user_id is None:
        raise ValueError(f"No user with the id or email {cleaned!r}." if cleaned else "Name a user by id or email.")
    return user_id
