"""The ``import`` batch operation (CONTRACT.md §11): every contact of a CRM (or those with a
tag) becomes a local user exactly as an inbound ``add`` would make it.

A page lists up to a page of contacts through the adapter's ``list_contacts``, then runs them
through the inbound rules themselves (``bridge.inbound.service.prepare_contacts`` and
``apply_plans``: matching by contact link then email, username format, role, password,
``return_password_field``, welcome mail), never a copy of them, so an import and a webhook can
never disagree. Like a webhook, it pushes nothing back to the CRM (no echo loops).

The whole page is one unit of work (fast: one transaction for a hundred users); when a contact
is refused (no email, say), the page falls back to one unit per contact, so the others still
go through and the refused one is kept as a failed item with the rule's code.
"""

from __future__ import annotations

import threading
from typing import Any

from bridge.accounts import users
from bridge.accounts.user_fingerprint import fingerprints
from bridge.connections.rate_limits import batch_calls
from bridge.delivery.batches import BatchError, ItemResult, PageContext, PageWork, batch_operation
from bridge.delivery.deliveries import DeliveryAbandoned
from bridge.extensions import db
from bridge.inbound import bulk_add
from bridge.inbound.request import InboundOptions
from bridge.inbound.runtime import ConnectionRuntime, ContactPlan, ContactResult, InboundRejected
from bridge.inbound.service import apply_plans, prepare_contacts, run_unit
from bridge.models import Connection
from crm_adapters.base import Adapter, Contact, ContactPage


def check_import(connection: Connection | None, params: dict[str, Any]) -> None:
    """Refuse a role the rules would refuse, before any contact is listed."""
    role = params.get("role")
    if role:
        try:
            users.resolve_role(str(role), "subscriber")
        except users.UserRuleError as exc:
            raise BatchError(exc.status, exc.code, exc.message) from exc


@batch_operation("import", lists_crm=True, check=check_import)
def import_page(page: PageContext) -> PageWork:
    if page.connection is None:
        raise DeliveryAbandoned("the connection of this import was removed")
    runtime = ConnectionRuntime.prepare(page.connection, http=page.job.http)
    page.job.adapters.append((page.connection.id, runtime.adapter))
    params = page.params
    options = InboundOptions(role=params.get("role") or None, send_notification=bool(params.get("send_welcome")))
    tag = params.get("tag") or None
    listing = _listing(runtime.adapter, page.batch.id, tag, page.cursor)
    # Not for a rate-limited CRM: its requests wait for room, which gains nothing here, and the
    # shared counter's write (on SQLite) would wait for this page's own transaction.
    ahead = None
    if listing.next_cursor and runtime.adapter.throttle is None:
        ahead = _Prefetch(runtime.adapter, page.batch.id, tag, listing.next_cursor)
    try:
        return _import(runtime, page, listing, options)
    finally:
        if ahead is not None:
            ahead.join(float(runtime.adapter.setting("timeout", runtime.adapter.default_timeout)) + 1)


def _import(runtime: ConnectionRuntime, page: PageContext, listing: ContactPage, options: InboundOptions) -> PageWork:
    work = PageWork(next_cursor=listing.next_cursor, total=listing.total)
    contacts = [c for c in listing.contacts if c.contact_id]
    fast = [c for c in contacts if bulk_add.fits(runtime, c)]
    rest = [c for c in contacts if not bulk_add.fits(runtime, c)]
    # First the contacts that need the CRM (phase 1, as a webhook's: loads with no transaction
    # held open, which ends any read this page made), then the page's set-based part.
    work.items = _one_by_one(runtime, rest, options, release_lock=True) if rest else []
    if fast:
        try:
            results = run_unit(lambda: bulk_add.add_many(runtime, fast, options), commit=False)
            work.items += _items(fast, results)
        except InboundRejected:  # one contact is refused: the others still go through
            work.items += _one_by_one(runtime, fast, options, release_lock=False)
    _add_fingerprints(work.items)
    return work


# -- listing ahead ----------------------------------------------------------------------------

# Pages listed ahead of their job, by (batch, cursor): process-local and small. A page whose
# listing is not here (another process runs it, or the prefetch failed) lists it itself.
_PREFETCHED: dict[tuple[int, str], ContactPage] = {}
_PREFETCHED_LOCK = threading.Lock()
MAX_PREFETCHED = 8


def _listing(adapter: Adapter, batch_id: int, tag: str | None, cursor: str | None) -> ContactPage:
    with _PREFETCHED_LOCK:
        ready = _PREFETCHED.pop((batch_id, cursor or ""), None)
    return ready if ready is not None else adapter.list_contacts(tag, cursor)


class _Prefetch(threading.Thread):
    """Lists the next page while this one is written (the CRM's answer time overlaps the
    database work): the page's own job then finds it ready. Its exchange is recorded with this
    page's attempt. A failure is dropped: the next page lists again and reports it."""

    def __init__(self, adapter: Adapter, batch_id: int, tag: str | None, cursor: str) -> None:
        super().__init__(name=f"batch-{batch_id}-prefetch", daemon=True)
        self.adapter, self.batch_id, self.tag, self.cursor = adapter, batch_id, tag, cursor
        self.start()

    def run(self) -> None:
        try:
            with batch_calls():
                listing = self.adapter.list_contacts(self.tag, self.cursor)
        except Exception:  # the page's own job lists it again and reports what goes wrong
            return
        with _PREFETCHED_LOCK:
            if len(_PREFETCHED) >= MAX_PREFETCHED:
                _PREFETCHED.clear()
            _PREFETCHED[(self.batch_id, self.cursor)] = listing


def _one_by_one(
    runtime: ConnectionRuntime, contacts: list[Contact], options: InboundOptions, *, release_lock: bool
) -> list[ItemResult]:
    """The per-contact path: the page as one unit, or, when the rules refuse a contact, one unit
    per contact so the refusal is that contact's failed item alone."""
    plans = prepare_contacts(runtime, "add", contacts, options, release_lock=release_lock)
    try:
        results = apply_plans(runtime, "add", plans, options, commit=False)[1]
        return _items([plan.contact for plan in plans], results)
    except InboundRejected:
        return [_one(runtime, plan, options) for plan in plans]


def _one(runtime: ConnectionRuntime, plan: ContactPlan, options: InboundOptions) -> ItemResult:
    try:
        results = apply_plans(runtime, "add", [plan], options, commit=False)[1]
    except InboundRejected as exc:
        return ItemResult(str(plan.contact.contact_id), "failed", error=f"{exc.code}: {exc.message}")
    return _items([plan.contact], results)[0]


def _items(contacts: list[Contact], results: list[ContactResult]) -> list[ItemResult]:
    return [
        ItemResult(str(contact.contact_id), _outcome(result), user_id=result.user_id, fingerprint=result.fingerprint)
        for contact, result in zip(contacts, results, strict=True)
    ]


def _outcome(result: ContactResult) -> str:
    if result.outcome == "created":
        return "created"
    return "updated" if result.changed else "unchanged"


def _add_fingerprints(items: list[ItemResult]) -> None:
    """Created users' fingerprints, taken in the transaction that made them (``undo``); the
    set-based path gave its users' already."""
    created = [item for item in items if item.outcome == "created" and item.user_id and not item.fingerprint]
    if not created:
        return
    db.session.flush()
    found = fingerprints(item.user_id for item in created if item.user_id)
    for item in created:
        item.fingerprint = found.get(item.user_id or 0)
