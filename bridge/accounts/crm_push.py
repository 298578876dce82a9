"""Job handlers that push local users out to CRMs: ``contact.upsert`` (registration),
``contact.update`` (profile changes, for connections with ``push_updates``) and
``password.return`` (a generated password sent to the CRM field that receives it).

Each handler reads what it needs, ends its read transaction before the first CRM call
(``bridge.database.end_transaction``: on SQLite every transaction holds the write lock, and a
slow CRM must never block registrations), talks to the CRM through the connection's adapter,
then hands the result (the contact link) to the worker as a deferred write
(``ctx.after_success``), which the worker makes in the transaction that records the attempt,
batched with other deliveries. Handlers never decide to retry: they raise the adapter's typed
errors and the worker reads ``retryable``.

Settings come from the per-process cache (``bridge.connections.settings_cache``): no decryption per push.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, or_, select

from bridge import crypto
from bridge.accounts import users
from bridge.connections.service import adapter_for
from bridge.connections.settings_cache import cached_flag, cached_settings
from bridge.database import end_transaction
from bridge.delivery import outbox
from bridge.delivery.deliveries import DeliveryAbandoned
from bridge.delivery.jobs import JobContext, job_handler
from bridge.extensions import db
from bridge.models import Connection, ContactLink, User, iso, utcnow
from crm_adapters.base import Adapter, OutboundContact, OutboundEvent
from crm_adapters.errors import ContactNotFound

logger = logging.getLogger(__name__)


def require_enabled(ctx: JobContext) -> tuple[Connection, User]:
    if ctx.connection is None:
        raise DeliveryAbandoned("the connection of this delivery no longer exists")
    if ctx.user is None:
        raise DeliveryAbandoned("the user of this delivery no longer exists")
    if not cached_flag(ctx.connection, "enabled", True):
        raise DeliveryAbandoned(f"connection {ctx.connection.name} is disabled")
    return ctx.connection, ctx.user


def _event(ctx: JobContext, event_type: str) -> OutboundEvent:
    """The delivery id is the event id: stable across retries, so receivers can dedupe."""
    return OutboundEvent(id=str(ctx.delivery.id), type=event_type, occurred_at=iso(ctx.delivery.created_at) or "")


def local_fields(user: User) -> dict[str, Any]:
    """The user's data under local keys, before the connection's field map."""
    fields: dict[str, Any] = dict(user.meta or {})
    fields.update({"email": user.email, "first_name": user.first_name, "last_name": user.last_name})
    return fields


def outbound_contact(user: User, adapter: Adapter, *, tags: list[str], event: OutboundEvent) -> OutboundContact:
    return OutboundContact(
        email=user.email,
        fields=adapter.to_crm_fields(local_fields(user)),
        tags=list(tags),
        first_name=user.first_name,
        last_name=user.last_name,
        username=user.username,
        meta=dict(user.meta or {}),
        event=event,
        created_at=iso(user.created_at) or "",
        role=user.role or "",
        user_id=user.id,
    )


def build_adapter(connection: Connection, ctx: JobContext) -> Adapter:
    """The connection's adapter on the delivery's outbound client, from cached settings
    (noted on ``ctx``: the worker stores what the CRM changed, such as a refreshed token)."""
    adapter = adapter_for(connection.type, cached_settings(connection), ctx.http, connection_id=connection.id)
    ctx.adapters.append((connection.id, adapter))
    return adapter


@dataclass(frozen=True)
class LinkContact:
    """A deferred write: make ``contact_id`` the user's current contact on the connection
    (``users.link_contact``). The worker applies all of a turn's links together
    (``apply_all``), which costs two statements instead of four per link."""

    user_id: int
    connection_id: int
    contact_id: str

    def __call__(self) -> None:
        link_contacts([self])

    @staticmethod
    def apply_all(links: Sequence[LinkContact]) -> None:
        link_contacts(links)


def link_contacts(links: Sequence[LinkContact]) -> None:
    """``users.link_contact`` for many links, with its exact rules: a link that is already
    current does nothing; otherwise the user's current link and the contact's current link on
    that connection are closed (kept, with ``unlinked_at``) and a new one is made. Links that
    touch the same contact or user as an earlier one in the batch run one by one, in order."""
    batch: list[LinkContact] = []
    later: list[LinkContact] = []
    seen: set[tuple[int, str | int, str]] = set()
    for link in links:
        keys = {(link.connection_id, link.contact_id, "contact"), (link.connection_id, link.user_id, "user")}
        (later if keys & seen else batch).append(link)
        seen |= keys
    if batch:
        _link_batch(batch)
    for link in later:
        user = db.session.get(User, link.user_id)
        connection = db.session.get(Connection, link.connection_id)
        if user is not None and connection is not None:
            users.link_contact(user, connection, link.contact_id)


_LINKS = ContactLink.__table__
_OPEN_LINKS = select(_LINKS.c.id, _LINKS.c.connection_id, _LINKS.c.user_id, _LINKS.c.contact_id).where(
    _LINKS.c.connection_id.in_(bindparam("connections", expanding=True)),
    _LINKS.c.unlinked_at.is_(None),
    or_(
        _LINKS.c.user_id.in_(bindparam("users", expanding=True)),
        _LINKS.c.contact_id.in_(bindparam("contacts", expanding=True)),
    ),
)
_CLOSE_LINKS = (
    _LINKS.update().where(_LINKS.c.id.in_(bindparam("ids", expanding=True))).values(unlinked_at=bindparam("now"))
)


def _link_batch(batch: Sequence[LinkContact]) -> None:
    """Links that touch distinct users and contacts: one SELECT of the open links involved, one
    UPDATE closing the stale ones, one multi-row INSERT (Core statements built once: the worker
    runs this in every turn)."""
    connection = db.session.connection()
    open_links = connection.execute(
        _OPEN_LINKS,
        {
            "connections": list({link.connection_id for link in batch}),
            "users": list({link.user_id for link in batch}),
            "contacts": list({link.contact_id for link in batch}),
        },
    ).all()
    now = utcnow()
    close: set[int] = set()
    new_links: list[dict[str, Any]] = []
    for link in batch:
        mine = [row for row in open_links if row.connection_id == link.connection_id]
        if any(row.contact_id == link.contact_id and row.user_id == link.user_id for row in mine):
            continue
        close.update(row.id for row in mine if row.user_id == link.user_id or row.contact_id == link.contact_id)
        new_links.append(
            {
                "connection_id": link.connection_id,
                "contact_id": link.contact_id,
                "user_id": link.user_id,
                "linked_at": now,
            }
        )
    if close:  # before the unique indexes see the new links
        connection.execute(_CLOSE_LINKS, {"ids": sorted(close), "now": now})
    if new_links:
        connection.execute(_LINKS.insert(), new_links)


def _link(ctx: JobContext, user: User, connection: Connection, contact_id: str | None) -> str | None:
    """Link the contact once the attempt is recorded as a success (a deferred write)."""
    if contact_id:
        ctx.after_success.append(LinkContact(user.id, connection.id, str(contact_id)))
    return contact_id


@dataclass(frozen=True)
class RecordTags:
    """A deferred write: the tags a push applied become the user's tags for the connection."""

    user_id: int
    connection_id: int
    tags: tuple[str, ...]

    def __call__(self) -> None:
        user = db.session.get(User, self.user_id)
        if user is not None:
            users.replace_tags_for(user, self.connection_id, self.tags)


def registration_tags(user: User, adapter: Adapter, local_tags: Sequence[str] | None = None) -> list[str]:
    """What a registration push applies: the user's local tags, then the connection's
    ``assign_tags`` (CONTRACT.md §5), each once. The worker passes the local tags it read
    when it claimed the row; reading them here would open a transaction (on SQLite: the write
    lock) on every push."""
    local = users.tag_names(user, None) if local_tags is None else local_tags
    assign = [str(t) for t in (adapter.config.get("assign_tags") or []) if t]
    return list(dict.fromkeys(t.strip() for t in [*local, *assign] if t and t.strip()))


def on_linked_contact(
    ctx: JobContext,
    adapter: Adapter,
    connection: Connection,
    user: User,
    contact_id: str,
    operation: Callable[[str], str | None],
) -> tuple[str, str | None]:
    """Run ``operation`` on the user's linked contact, recovering a stale link once.

    A contact merged (HubSpot), deleted and re-created (ActiveCampaign, FluentCRM) or re-keyed
    (Mailchimp) leaves the stored id answering "not found", and every later push would die on
    it. As WP Fusion does since 3.47.3 (``WPF_CRM_Base::handle_not_found_error``), the contact
    is looked up again by the user's email; when that finds another id, the operation is retried
    on it once and the user is relinked to it (the old link is closed, kept in the history).
    A contact the CRM no longer has under any id stays a ``ContactNotFound``.

    Returns the contact id the operation ended on and the stale id it replaced (or None). An
    operation may return a new id of its own (Mailchimp after an email change): it is linked too.
    """
    linked, stale = contact_id, None
    try:
        changed = operation(contact_id)
    except ContactNotFound:
        found = adapter.find_contact_id(user.email)
        if not found or str(found) == contact_id:
            raise
        logger.info(
            "delivery %s: contact %s of connection %s not found; relinked to %s by email",
            ctx.delivery.id,
            contact_id,
            connection.name,
            found,
        )
        stale, contact_id = contact_id, str(found)
        changed = operation(contact_id)
    final = str(changed) if changed else contact_id
    if final != linked:
        _link(ctx, user, connection, final)
    return final, stale


def _relinked(stale: str | None) -> dict[str, str]:
    """The delivery result names the stale id a push recovered from (nothing when none)."""
    return {"relinked_from": stale} if stale else {}


@job_handler(outbox.CONTACT_UPSERT)
def push_registration(ctx: JobContext) -> dict[str, Any]:
    """Registration push: create or update the contact by email (never a duplicate), link it,
    then apply the user's local tags and the connection's ``assign_tags`` and record them as
    the user's tags for the connection.

    The link is written as soon as the contact exists: when the tag step fails (and the push is
    retried), the user is already linked to its contact, in a short transaction of its own."""
    connection, user = require_enabled(ctx)
    adapter = build_adapter(connection, ctx)
    tags = registration_tags(user, adapter, ctx.local_tags)
    contact = outbound_contact(user, adapter, tags=tags, event=_event(ctx, "user.registered"))
    end_transaction()
    contact_id = adapter.upsert_contact(contact)
    if contact_id and tags:
        try:
            adapter.apply_tags(str(contact_id), tags)
        except Exception:
            _link_now(LinkContact(user.id, connection.id, str(contact_id)))
            raise
    _link(ctx, user, connection, contact_id)
    if tags:
        ctx.after_success.append(RecordTags(user.id, connection.id, tuple(tags)))
    return {"contact_id": contact_id, "tags_applied": tags if contact_id else []}


def _link_now(link: LinkContact) -> None:
    """Write a link at once, in its own transaction (the attempt is about to fail, and deferred
    writes are made only for successes). Never hides the attempt's own error."""
    try:
        link()
        db.session.commit()
    except Exception:
        db.session.rollback()
        logger.exception("could not link user %s to contact %s", link.user_id, link.contact_id)


def registration_contact(
    user: User, adapter: Adapter, event: OutboundEvent, *, local_tags: list[str] | None = None
) -> OutboundContact:
    """What a registration push sends: the user, with its local tags and ``assign_tags``
    (reads the user's tags unless given: call it before the first CRM call)."""
    return outbound_contact(user, adapter, tags=registration_tags(user, adapter, local_tags), event=event)


def upsert_registration(adapter: Adapter, contact: OutboundContact) -> str | None:
    """A registration push's CRM calls, for the batch ``push``: create or update the contact by
    email, never a duplicate, then apply its tags. Returns the contact id."""
    contact_id = adapter.upsert_contact(contact)
    if contact_id and contact.tags:
        adapter.apply_tags(str(contact_id), contact.tags)
    return contact_id


@job_handler(outbox.CONTACT_UPDATE)
def push_profile_update(ctx: JobContext) -> dict[str, Any]:
    """Profile change: update the linked contact's fields; with no link yet, upsert by email
    (and link) so an update never creates a duplicate either."""
    connection, user = require_enabled(ctx)
    adapter = build_adapter(connection, ctx)
    contact_id = users.contact_id_for(user, connection)
    contact = outbound_contact(user, adapter, tags=[], event=_event(ctx, "user.updated"))
    end_transaction()
    if contact_id:
        current, stale = on_linked_contact(
            ctx, adapter, connection, user, contact_id, lambda target: adapter.update_fields(target, contact.fields)
        )
        return {"contact_id": current, "fields": sorted(contact.fields), **_relinked(stale)}
    new_id = adapter.upsert_contact(contact)
    _link(ctx, user, connection, new_id)
    return {"contact_id": new_id, "fields": sorted(contact.fields)}


@job_handler(outbox.PASSWORD_RETURN)
def return_password(ctx: JobContext) -> dict[str, Any]:
    """Send a generated password to the connection's ``return_password_field``. The encrypted
    password is wiped from the row once it is delivered or given up (bridge.delivery.deliveries)."""
    connection, user = require_enabled(ctx)
    payload = ctx.delivery.payload or {}
    field = payload.get("field")
    encrypted = payload.get("password")
    if not field:
        raise DeliveryAbandoned("no CRM field to return the password to")
    if not encrypted:
        raise DeliveryAbandoned("the password to return was already wiped")
    contact_id = payload.get("contact_id") or users.contact_id_for(user, connection)
    if not contact_id:
        raise DeliveryAbandoned("the user has no contact on this connection")
    password = crypto.decrypt(str(encrypted))
    # The field may have any name, so masking password-like keys is not enough: redact the
    # value itself from every recorded exchange.
    ctx.http.secrets = (*ctx.http.secrets, password)
    adapter = build_adapter(connection, ctx)
    end_transaction()
    current, stale = on_linked_contact(
        ctx,
        adapter,
        connection,
        user,
        str(contact_id),
        lambda target: adapter.update_fields(target, {str(field): password}),
    )
    return {"contact_id": current, "field": field, **_relinked(stale)}
