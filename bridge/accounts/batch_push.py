"""The ``push`` and ``resync`` batch operations (CONTRACT.md §11).

``push``: every local user not linked to the connection (``all``: every user) is pushed as a
registration is (``bridge.accounts.crm_push``: upsert by email, never a duplicate, link,
``assign_tags``). ``resync``: every local user is linked to its contact (found by email when
unlinked) and gets the contact's tags.

A page takes users in id order from its cursor (the last id done) and works through them for at
most ``PAGE_SECONDS``, so a registration queued meanwhile waits for one short page at most. An
error the CRM will not get over (a refused email) is a failed item and the page goes on; one it
may get over (down, 429) ends the page there and the next page retries that user after the
CRM's ``Retry-After`` (or the usual backoff), ``MAX_ITEM_TRIES`` times in all, then counts it
failed. Each user's CRM calls carry a stable ``Idempotency-Key`` (``batch-B-user-U``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, exists, func, select

from bridge.accounts import users
from bridge.accounts.crm_push import (
    LinkContact,
    build_adapter,
    link_contacts,
    registration_contact,
    upsert_registration,
)
from bridge.connections.settings_cache import cached_flag
from bridge.delivery.batches import PAGE_SIZE, ItemResult, PageContext, PageWork, batch_operation
from bridge.delivery.deliveries import DeliveryAbandoned
from bridge.delivery.retry_schedule import backoff_seconds
from bridge.extensions import db
from bridge.models import Connection, ContactLink, User, iso, utcnow
from crm_adapters.base import Adapter, OutboundContact, OutboundEvent
from crm_adapters.errors import AdapterError

PAGE_SECONDS = 0.5
MAX_ITEM_TRIES = 5


def _users(connection: Connection, after: int, *, unlinked_only: bool) -> Any:
    query = select(User).where(User.id > after)
    if unlinked_only:
        linked = exists().where(
            and_(
                ContactLink.user_id == User.id,
                ContactLink.connection_id == connection.id,
                ContactLink.unlinked_at.is_(None),
            )
        )
        query = query.where(~linked)
    return query


def _current_links(connection: Connection, user_ids: list[int]) -> dict[int, str]:
    rows = db.session.execute(
        select(ContactLink.user_id, ContactLink.contact_id).where(
            ContactLink.connection_id == connection.id,
            ContactLink.unlinked_at.is_(None),
            ContactLink.user_id.in_(user_ids),
        )
    )
    return {row.user_id: row.contact_id for row in rows}


ItemStep = Callable[[Adapter, User, str | None], tuple[str, str | None, list[str] | None]]


def _run_users(
    page: PageContext,
    item_step: ItemStep,
    *,
    unlinked_only: bool,
    before_crm: Callable[[Adapter, list[User]], None] | None = None,
) -> PageWork:
    """Walk a page of users through ``item_step`` (CRM calls only: it returns the outcome, the
    contact id to link and the tags to store), then make the page's links and tag changes.
    ``before_crm`` reads what the steps need while the page's read transaction is open."""
    connection = page.connection
    if connection is None:
        raise DeliveryAbandoned("the connection of this batch was removed")
    if not cached_flag(connection, "enabled", True):
        raise DeliveryAbandoned(f"connection {connection.name} is disabled")
    after = int(page.cursor or 0)
    query = _users(connection, after, unlinked_only=unlinked_only)
    work = PageWork()
    if page.cursor is None:
        work.total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = list(db.session.scalars(query.order_by(User.id).limit(PAGE_SIZE)))
    links = _current_links(connection, [u.id for u in rows]) if rows else {}
    adapter = build_adapter(connection, page.job)
    if before_crm is not None:
        before_crm(adapter, rows)
    db.session.commit()  # no transaction while the CRM answers
    deadline = time.monotonic() + PAGE_SECONDS
    new_links: list[LinkContact] = []
    tag_sets: list[tuple[User, list[str]]] = []
    last = after
    for user in rows:
        if time.monotonic() > deadline and work.items:
            break
        key = f"user:{user.id}"
        page.job.http.session.headers["Idempotency-Key"] = f"batch-{page.batch.id}-user-{user.id}"
        try:
            outcome, contact_id, tags = item_step(adapter, user, links.get(user.id))
        except AdapterError as exc:
            tries = (page.retries if page.retry_key == key else 0) + 1
            if exc.retryable and tries < MAX_ITEM_TRIES:
                work.retry_in = exc.retry_after if exc.retry_after is not None else backoff_seconds(tries)
                work.retry_key, work.retries = key, tries
                break
            work.items.append(ItemResult(key, "failed", user.id, f"{exc.error_class}: {exc.message}"))
            last = user.id
            continue
        if contact_id and links.get(user.id) != contact_id:
            new_links.append(LinkContact(user.id, connection.id, str(contact_id)))
        if tags is not None:
            tag_sets.append((user, tags))
        work.items.append(ItemResult(key, outcome, user.id))
        last = user.id
    if new_links:
        link_contacts(new_links)
    # The pushed users' current tags on the connection in one read, then writes only for changes.
    current = users.tag_names_for_users([user.id for user, _tags in tag_sets], connection.id)
    changed = {
        user.id
        for user, tags in tag_sets
        if any(users.replace_tags_for(user, connection.id, tags, current=current.get(user.id, [])))
    }
    for item in work.items:
        if item.outcome == "unchanged" and item.user_id in changed:
            item.outcome = "updated"
    more = len(rows) == PAGE_SIZE or last != (rows[-1].id if rows else after)
    if more or work.retry_in is not None:
        work.next_cursor = str(last)
    return work


@batch_operation("push")
def push_page(page: PageContext) -> PageWork:
    """Each user as its registration push: the user's local tags and ``assign_tags`` applied,
    linked, and those tags recorded as the user's tags for the connection."""
    contacts: dict[int, OutboundContact] = {}

    def read(adapter: Adapter, rows: list[User]) -> None:
        # The page's local tags in one read: one per user made a PostgreSQL page spend a tenth
        # of its time on round trips, with no push going out meanwhile.
        local = users.tag_names_for_users([user.id for user in rows], None)
        occurred_at = iso(utcnow()) or ""
        for user in rows:
            event_id = f"batch-{page.batch.id}-user-{user.id}"
            event = OutboundEvent(id=event_id, type="user.registered", occurred_at=occurred_at)
            contacts[user.id] = registration_contact(user, adapter, event, local_tags=local.get(user.id, []))

    def push_one(adapter: Adapter, user: User, linked: str | None) -> tuple[str, str | None, list[str] | None]:
        contact = contacts[user.id]
        contact_id = upsert_registration(adapter, contact)
        return ("updated" if linked else "created"), contact_id, (list(contact.tags) if contact_id else None)

    return _run_users(page, push_one, unlinked_only=not page.params.get("all"), before_crm=read)


@batch_operation("resync", lists_crm=True)
def resync_page(page: PageContext) -> PageWork:
    def resync_one(adapter: Adapter, user: User, linked: str | None) -> tuple[str, str | None, list[str] | None]:
        contact_id = linked or adapter.find_contact_id(user.email)
        if not contact_id:
            return "unchanged", None, None
        tags = adapter.load_tags(str(contact_id))
        return ("unchanged" if linked else "updated"), str(contact_id), tags

    return _run_users(page, resync_one, unlinked_only=False)
