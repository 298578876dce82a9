"""The data model (SQLAlchemy 2.0 typed models).

Times are stored as naive UTC (``utcnow()``) so SQLite and PostgreSQL compare them the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bridge.extensions import db


def utcnow() -> datetime:
    """Naive UTC now: what every timestamp column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    """A stored (naive UTC) timestamp as the API shows it: ISO 8601, seconds, ``Z``."""
    return value.isoformat(timespec="seconds") + "Z" if value else None


JsonDict = dict[str, Any]


class Role(db.Model):
    __tablename__ = "role"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(128))


class User(db.Model):
    """A site user account. ``email`` is stored lower-cased and is unique."""

    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    username: Mapped[str] = mapped_column(String(191), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(64), default="subscriber")
    first_name: Mapped[str] = mapped_column(String(191), default="")
    last_name: Mapped[str] = mapped_column(String(191), default="")
    meta: Mapped[JsonDict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    tags: Mapped[list[UserTag]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="UserTag.id"
    )
    links: Mapped[list[ContactLink]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="ContactLink.id"
    )


class Connection(db.Model):
    """One CRM account the site talks to. Secret settings are stored Fernet-encrypted."""

    __tablename__ = "connection"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    settings: Mapped[JsonDict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    access_keys: Mapped[list[AccessKey]] = relationship(
        back_populates="connection", cascade="all, delete-orphan", order_by="AccessKey.id"
    )


class AccessKey(db.Model):
    """An access key, stored only as its SHA-256. A rotated-out key keeps working until
    ``expires_at`` (the grace period); the current key has no expiry."""

    __tablename__ = "access_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)

    connection: Mapped[Connection] = relationship(back_populates="access_keys")


class UserTag(db.Model):
    """A tag on a user: per connection (what that CRM last told us), or local (connection None)."""

    __tablename__ = "user_tag"
    __table_args__ = (UniqueConstraint("user_id", "connection_id", "name", name="uq_user_tag_scope_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[int | None] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(191))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="tags")
    connection: Mapped[Connection | None] = relationship()


class ContactLink(db.Model):
    """User ↔ CRM contact. At most one current link per (connection, contact) and per
    (connection, user); earlier links keep ``unlinked_at`` so activity for an old contact id
    still finds its user."""

    __tablename__ = "contact_link"
    __table_args__ = (
        Index(
            "uq_contact_link_current_contact",
            "connection_id",
            "contact_id",
            unique=True,
            sqlite_where=text("unlinked_at IS NULL"),
            postgresql_where=text("unlinked_at IS NULL"),
        ),
        Index(
            "uq_contact_link_current_user",
            "connection_id",
            "user_id",
            unique=True,
            sqlite_where=text("unlinked_at IS NULL"),
            postgresql_where=text("unlinked_at IS NULL"),
        ),
        Index("ix_contact_link_contact_id", "contact_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(String(191))
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    linked_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    unlinked_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship(back_populates="links")
    connection: Mapped[Connection] = relationship()


class ApiToken(db.Model):
    """Bearer token for ``/api``, stored only as its SHA-256. Names are unique (``token revoke
    NAME`` names one token), by the database too: two concurrent creations cannot both win."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)


class WebhookEvent(db.Model):
    """The inbound log: one row per inbound request, secrets scrubbed, passwords masked."""

    __tablename__ = "webhook_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int | None] = mapped_column(ForeignKey("connection.id", ondelete="SET NULL"))
    connection_name: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(32))
    contact_id: Mapped[str | None] = mapped_column(String(191))
    user_id: Mapped[int | None] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text, default="")
    status_code: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    source_ip: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class CrmActivity(db.Model):
    """An event a CRM posted to ``/webhooks/crm/lead``, on the user's timeline."""

    __tablename__ = "crm_activity"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[str] = mapped_column(String(191))
    event_type: Mapped[str] = mapped_column(String(128), default="updated")
    payload: Mapped[Any] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(32), default="crm")
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


# Unfinished rows with a dedupe key: the predicate of ``uq_delivery_queued_dedupe``, which an
# ``ON CONFLICT`` on that partial index must repeat (``bridge.delivery.outbox``).
OPEN_DEDUPE_PREDICATE = "dedupe_key IS NOT NULL AND status IN ('pending', 'in_flight', 'failed')"


class Delivery(db.Model):
    """An outbound job (transactional outbox row). Written in the same transaction as the
    change that caused it; claimed by workers with a lease."""

    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_due", "status", "next_attempt_at"),
        # The claim's lane check looks for earlier *unfinished* rows of a lane: index only those,
        # so a long history of delivered rows never slows it down.
        Index(
            "ix_delivery_open_lane",
            "ordering_key",
            "id",
            sqlite_where=text("status IN ('pending', 'in_flight', 'failed')"),
            postgresql_where=text("status IN ('pending', 'in_flight', 'failed')"),
        ),
        Index(
            "uq_delivery_queued_dedupe",
            "dedupe_key",
            unique=True,
            sqlite_where=text(OPEN_DEDUPE_PREDICATE),
            postgresql_where=text(OPEN_DEDUPE_PREDICATE),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int | None] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[JsonDict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    ordering_key: Mapped[str | None] = mapped_column(String(128))
    dedupe_key: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[JsonDict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)

    connection: Mapped[Connection | None] = relationship()
    attempt_log: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="delivery", cascade="all, delete-orphan", order_by="DeliveryAttempt.id"
    )


class DeliveryAttempt(db.Model):
    """One try of a delivery: every HTTP exchange it made, secrets and passwords redacted."""

    __tablename__ = "delivery_attempt"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    method: Mapped[str | None] = mapped_column(String(8))
    url: Mapped[str | None] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error_class: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    exchanges: Mapped[list[JsonDict]] = mapped_column(JSON, default=list)
    worker: Mapped[str | None] = mapped_column(String(128))

    delivery: Mapped[Delivery] = relationship(back_populates="attempt_log")


class WorkerHeartbeat(db.Model):
    """Each worker's last sign of life, for ``/healthz``."""

    __tablename__ = "worker_heartbeat"

    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    inline: Mapped[bool] = mapped_column(Boolean, default=False)


class RateLimitCounter(db.Model):
    """Fixed-window counters for the ``limits`` storage backed by this database, so the
    failed-key limit holds across processes with no extra service."""

    __tablename__ = "rate_limit_counter"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class Batch(db.Model):
    """A batch operation (CONTRACT.md §11): an import, push, resync or undo over many contacts or
    users, run page by page by the delivery workers (``bridge.delivery.batches``). The counters
    move only when an item row is first written, so a page that runs twice counts once."""

    __tablename__ = "batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    operation: Mapped[str] = mapped_column(String(16))
    connection_id: Mapped[int | None] = mapped_column(ForeignKey("connection.id", ondelete="SET NULL"))
    connection_name: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    params: Mapped[JsonDict] = mapped_column(JSON, default=dict)
    total: Mapped[int | None] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[JsonDict]] = mapped_column(JSON, default=list)
    # The number of the next page to queue; a page queues its successor only by moving this on
    # (compare-and-set), so a page that runs twice never queues a second successor.
    next_page: Mapped[int] = mapped_column(Integer, default=1)
    listed: Mapped[bool] = mapped_column(Boolean, default=False)
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class BatchItem(db.Model):
    """One contact or user a batch has dealt with. Unique per batch: the first write counts.
    ``fingerprint`` is kept for users an import created, so ``undo`` can tell whether anyone
    changed them since."""

    __tablename__ = "batch_item"
    __table_args__ = (UniqueConstraint("batch_id", "item_key", name="uq_batch_item_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    item_key: Mapped[str] = mapped_column(String(191))
    user_id: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
