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

from typing import Any

from bridge.accounts import users
from bridge.accounts.user_fingerprint import fingerprints
from bridge.delivery.batches import BatchError, ItemResult, PageContext, PageWork, batch_operation
from bridge.delivery.deliveries import DeliveryAbandoned
from bridge.extensions import db
from bridge.inbound.request import InboundOptions
from bridge.inbound.runtime import ConnectionRuntime, ContactPlan, ContactResult, InboundRejected
from bridge.inbound.service import apply_plans, prepare_contacts
from bridge.models import Connection


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
    listing = runtime.adapter.list_contacts(params.get("tag") or None, page.cursor)
    options = InboundOptions(role=params.get("role") or None, send_notification=bool(params.get("send_welcome")))
    work = PageWork(next_cursor=listing.next_cursor, total=listing.total)
    contacts = [c for c in listing.contacts if c.contact_id]
    if not contacts:
        return work
    # Phase 1, as a webhook's: contacts and tags the listing lacks are loaded from the CRM,
    # with no transaction held open meanwhile.
    plans = prepare_contacts(runtime, "add", contacts, options)
    try:
        results = apply_plans(runtime, "add", plans, options, commit=False)[1]
        work.items = _items(plans, results)
    except InboundRejected:
        work.items = [_one(runtime, plan, options) for plan in plans]
    _add_fingerprints(work.items)
    return work


def _one(runtime: ConnectionRuntime, plan: ContactPlan, options: InboundOptions) -> ItemResult:
    try:
        results = apply_plans(runtime, "add", [plan], options, commit=False)[1]
    except InboundRejected as exc:
        return ItemResult(str(plan.contact.contact_id), "failed", error=f"{exc.code}: {exc.message}")
    return _items([plan], results)[0]


def _items(plans: list[ContactPlan], results: list[ContactResult]) -> list[ItemResult]:
    items = []
    for plan, result in zip(plans, results, strict=True):
        items.append(ItemResult(str(plan.contact.contact_id), _outcome(result), user_id=result.user_id))
    return items


def _outcome(result: ContactResult) -> str:
    if result.outcome == "created":
        return "created"
    return "updated" if result.changed else "unchanged"


def _add_fingerprints(items: list[ItemResult]) -> None:
    """Created users' fingerprints, taken in the transaction that made them (``undo``)."""
    created = [item for item in items if item.outcome == "created" and item.user_id]
    if not created:
        return
    db.session.flush()
    found = fingerprints(item.user_id for item in created if item.user_id)
    for item in created:
        item.fingerprint = found.get(item.user_id or 0)
