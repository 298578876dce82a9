"""The inbound rules (CONTRACT.md §3): what ``add``, ``update`` and ``update_tags`` do to users.

Callable without a request: the view, the async job (``webhook.inbound``) and any CLI share
:func:`process_contacts`. The order is the promise:

1. the parameters are checked (``role``: 400 ``unknown_role``/``forbidden_role``), then every
   CRM call (loading a contact and its tags) happens, with no database transaction held open
   (on SQLite every transaction takes the write lock). A contact the CRM does not have is a
   404 ``contact_not_found`` (a retry cannot help), unless the payload carries the email: then
   the payload stands. Any other CRM failure is a 502. Either refusal writes nothing;
2. then one transaction makes all changes. Concurrent identical ``add`` requests are settled by
   the unique constraints (user email and username, one current link per contact): the loser's
   transaction fails, is rolled back and the whole unit runs again, now matching the winner's
   user, so exactly one user exists and every request answers with its id.

Inbound changes never queue pushes to CRMs (no echo loops); the only outbox rows written here are
the welcome mail, the password return and async webhook jobs.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from bridge.accounts import passwords, users
from bridge.connections import service as connections
from bridge.database import end_transaction
from bridge.delivery import outbox
from bridge.delivery.jobs import JobContext, job_handler
from bridge.extensions import db
from bridge.inbound import log
from bridge.inbound.changes import apply_contact, check_role_parameter, make_credentials, match_user
from bridge.inbound.request import InboundOptions, build_call
from bridge.inbound.runtime import (
    ConnectionRuntime,
    ContactPlan,
    ContactResult,
    InboundJobRejected,
    InboundOutcome,
    InboundRejected,
    text_value,
)
from bridge.models import Connection, Delivery
from bridge.raw_statements import SessionNeeded, raw_transaction, session_is_idle
from crm_adapters.base import Adapter, Contact, InboundRequest
from crm_adapters.errors import AdapterError, ContactNotFound, CrmError

__all__ = [
    "ConnectionRuntime",
    "InboundOutcome",
    "InboundRejected",
    "process_contacts",
    "queue_webhook",
    "run_queued_webhook",
]

MAX_ATTEMPTS = 5
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
SIGNATURE_HEADERS = (
    "content-type",
    "user-agent",
    "x-hubspot-signature",
    "x-hubspot-signature-v3",
    "x-hubspot-signature-version",
    "x-hubspot-request-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-mautic-signature",
    "mautic-signature",
)
T = TypeVar("T")


# -- the entry point --------------------------------------------------------------------------


def process_contacts(
    runtime: ConnectionRuntime,
    action: str,
    contacts: list[Contact],
    options: InboundOptions,
    *,
    commit: bool = True,
    before_commit: Callable[[InboundOutcome], None] | None = None,
) -> InboundOutcome:
    """Run ``add``/``update``/``update_tags`` for parsed contacts. Raises :class:`InboundRejected`.

    ``before_commit`` runs inside the unit of work with its outcome, so the caller can add rows
    that belong to the same transaction (the view's inbound log row: one commit per webhook).
    ``commit=False`` (the async job) runs the unit in a savepoint and leaves the commit to the
    caller (the worker, which records the delivery in the same transaction).
    """
    if action == "test":
        return InboundOutcome({"success": True, "connection": runtime.name}, "tested")
    try:
        plans = prepare_contacts(runtime, action, contacts, options, release_lock=commit)
    finally:
        if commit:  # nothing is written yet; the async job's worker stores them itself
            connections.store_changed_settings(runtime.connection_id, runtime.adapter)
    return apply_plans(runtime, action, plans, options, commit=commit, before_commit=before_commit)[0]


def apply_plans(
    runtime: ConnectionRuntime,
    action: str,
    plans: list[ContactPlan],
    options: InboundOptions,
    *,
    commit: bool = True,
    before_commit: Callable[[InboundOutcome], None] | None = None,
) -> tuple[InboundOutcome, list[ContactResult]]:
    """Phase 2 of :func:`process_contacts` for contacts already prepared (the batch import
    prepares a whole page first): the outcome, and each contact's result."""
    results: list[ContactResult] = []

    chosen: list[tuple[int, str]] = []  # (user id, password) of users this request created

    def unit() -> InboundOutcome:
        results[:] = [apply_contact(runtime, action, plan, options) for plan in plans]
        chosen[:] = [(r.user_id, r.chosen_password) for r in results if r.user_id and r.chosen_password]
        outcome = _summarise(action, plans, results)
        if before_commit is not None:
            before_commit(outcome)
        return outcome

    # ``update``/``update_tags`` of linked users are raw statements only: no session needed.
    outcome = run_unit(unit, commit=commit, without_session=action != "add")
    for user_id, password in chosen:  # after the race: only the request that created the user hashes
        passwords.set_password_hash_if_unset(user_id, passwords.hash_password(password))
    if chosen and commit:
        db.session.commit()
    return outcome, results


def _summarise(action: str, plans: list[ContactPlan], results: list[ContactResult]) -> InboundOutcome:
    first = results[0] if results else None
    if len(results) == 1 and first is not None:
        body = first.body
    else:
        body = {"success": True, "action": action, "results": [r.body for r in results]}
    outcomes = {r.outcome for r in results}
    return InboundOutcome(
        body=body,
        outcome=outcomes.pop() if len(outcomes) == 1 else "batch",
        contact_id=",".join(p.contact.contact_id or "" for p in plans)[:191] or None,
        user_id=first.user_id if first is not None else None,
    )


def run_unit(unit: Callable[[], T], *, commit: bool = True, without_session: bool = False) -> T:
    """Run ``unit`` in one transaction, again from the start when a concurrent transaction won a
    unique constraint (or PostgreSQL chose us as a deadlock or serialization victim). Under
    PostgreSQL's READ COMMITTED the winner may also show up between our match and our insert
    (``EmailTaken``): the same race, settled the same way.

    ``without_session`` first tries the unit in a raw transaction (``bridge.raw_statements``:
    the session's begin and commit cost as much CPU as an update's statements); a unit that
    reaches for the session there (an unlinked contact, a role to look up) is rolled back and
    run through the session instead, with the same rules."""
    use_raw = commit and without_session and session_is_idle()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            if use_raw:
                try:
                    with raw_transaction():
                        return unit()
                except SessionNeeded:
                    use_raw = False
                    db.session.rollback()  # the transaction the session had just begun
            if commit:
                result = unit()
                db.session.commit()
                return result
            with db.session.begin_nested():
                return unit()
        except (IntegrityError, DBAPIError, users.EmailTaken) as exc:
            if commit:
                db.session.rollback()
            if attempt == MAX_ATTEMPTS or not _is_race(exc):
                raise
        except BaseException:
            if commit:
                db.session.rollback()
            raise
    raise AssertionError("unreachable")


def _is_race(exc: Exception) -> bool:
    if isinstance(exc, IntegrityError | users.EmailTaken):
        return True
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


# -- phase 1: the CRM -------------------------------------------------------------------------


def prepare_contacts(
    runtime: ConnectionRuntime,
    action: str,
    contacts: list[Contact],
    options: InboundOptions,
    *,
    release_lock: bool = True,
) -> list[ContactPlan]:
    """Everything slow, before anything is written: CRM calls (and, for a queued webhook, the
    hash of a password the CRM chose; a direct one hashes after its commit, see ``Credentials``).

    ``add`` and ``update`` load the contact (fields and tags: one read where the CRM allows)
    when the payload has no email (or with ``always_load_from_crm``); every action loads tags
    when the payload carries none. ``update``/``update_tags`` for a contact no user matches
    load nothing (they answer "no matching user"). A connection missing its API settings serves
    payloads as they are. ``release_lock=False`` (the worker owns the transaction, which holds
    no write yet) does not roll the caller's reads back: they are committed before a CRM call,
    the loaded rows staying usable, and the unit after runs in the caller's next transaction.
    """
    check_parameters(runtime, options)
    always_load = bool(runtime.settings.get("always_load_from_crm"))
    plans = [ContactPlan(contact) for contact in contacts]
    loads: list[tuple[ContactPlan, bool, bool]] = []
    creates: list[ContactPlan] = []
    for plan in plans:
        contact = plan.contact
        load_contact = action != "update_tags" and (always_load or not contact.email)
        load_tags = contact.tags is None
        wants_crm = runtime.can_call_crm and bool(contact.contact_id) and (load_contact or load_tags)
        if not wants_crm and action != "add":
            continue
        if action == "add":  # a direct add matches (and creates) inside its transaction only
            if not release_lock and match_user(runtime, contact)[0] is None:
                creates.append(plan)
            if wants_crm:
                loads.append((plan, load_contact, load_tags))
        elif match_user(runtime, contact)[0] is not None:  # wants_crm: an unmatched update loads nothing
            loads.append((plan, load_contact, load_tags))
    if loads:
        # On SQLite even a read transaction holds the write lock: never keep it across slow work
        # (a rate-limited CRM's request counter could not even be written, ``WriteLockHeld``).
        if release_lock:
            db.session.rollback()
        else:  # the worker's session: end its reads, keep what it loaded for the unit after
            end_transaction()
    for plan, load_contact, load_tags in loads:
        try:
            plan.contact = _load(runtime.adapter, plan.contact, load_contact, load_tags)
        except ContactNotFound as exc:
            if plan.contact.email:  # the payload's data stands; tags it lacks stay as they are
                continue
            raise InboundRejected(404, "contact_not_found", "the CRM has no such contact") from exc
        except AdapterError as exc:
            raise InboundRejected(
                502, "crm_unavailable", f"the CRM could not be reached or refused the request ({exc.error_class})"
            ) from exc
    if creates:  # a queued webhook: hash now; a chosen password's slow hash holds no transaction,
        if any(text_value(plan.contact.fields.get("user_pass")) for plan in creates):
            end_transaction()  # so the match's reads end first (on SQLite they hold the writer lock)
        for plan in creates:
            plan.credentials = make_credentials(runtime, plan.contact, hash_chosen=True)
    return plans


def check_parameters(runtime: ConnectionRuntime, options: InboundOptions) -> None:
    """The webhook's parameters, checked before any CRM call or queueing (CONTRACT.md §3):
    the flags were parsed already (``InboundOptions``); the ``role`` must exist and may not be
    ``administrator``."""
    check_role_parameter(runtime, options)


def _load(adapter: Adapter, contact: Contact, load_contact: bool, load_tags: bool) -> Contact:
    contact_id = str(contact.contact_id)
    if load_contact:
        loaded = adapter.load_contact(contact_id)
        merged = replace(
            contact,
            email=loaded.email or contact.email,
            fields={**contact.fields, **loaded.fields},
            tags=contact.tags if contact.tags is not None else loaded.tags,
        )
        if merged.tags is not None or not load_tags:
            return merged
        contact = merged
    return replace(contact, tags=adapter.load_tags(contact_id))


# -- async: the webhook.inbound job -----------------------------------------------------------


def job_payload(connection_id: int, action: str, inbound: InboundRequest) -> dict[str, Any]:
    """What the worker needs to run the webhook later (the access key is never part of it)."""
    try:
        body, encoding = inbound.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(inbound.body).decode("ascii"), "base64"
    return {
        "connection_id": connection_id,
        "action": action,
        "method": inbound.method,
        "query": dict(inbound.query),
        "content_type": inbound.content_type,
        "body": body,
        "body_encoding": encoding,
        "headers": {name: value for name, value in inbound.headers.items() if name in SIGNATURE_HEADERS},
    }


def dedupe_key(payload: dict[str, Any]) -> str:
    material = json.dumps(
        [payload["connection_id"], payload["action"], sorted(payload["query"].items()), payload["body"]],
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()


_QUEUED_JOB = select(Delivery.id).where(Delivery.dedupe_key == bindparam("key"), outbox.is_open(Delivery.status))


def webhook_lane(connection_id: int, contacts: Sequence[Contact]) -> str:
    """The ordering lane of a queued webhook: its connection and the contacts it is about, so
    two updates of one contact are applied in the order they arrived (the last one wins, as
    it would synchronously), while other contacts' jobs run in parallel."""
    keys = sorted({str(c.contact_id or (c.email or "").lower()) for c in contacts})
    lane = f"webhook:{connection_id}:{','.join(keys)}"
    return lane if len(lane) <= 128 else f"webhook:{connection_id}:#{hashlib.sha256(lane.encode()).hexdigest()}"


def queue_webhook(
    runtime: ConnectionRuntime,
    action: str,
    inbound: InboundRequest,
    *,
    contacts: Sequence[Contact] = (),
    log_row: Callable[[InboundOutcome], dict[str, Any]],
) -> InboundOutcome:
    """Queue the webhook for the worker (202 with its ``job_id``); an identical one still
    queued gives the same job id. ``log_row`` gives the inbound log's row for the outcome,
    written in the same atomic write as the job (``outbox.commit_job``). Jobs about the same
    contacts run in the order they were accepted (``webhook_lane``)."""
    payload = job_payload(runtime.connection_id, action, inbound)
    key = dedupe_key(payload)
    lane = webhook_lane(runtime.connection_id, contacts) if contacts else None
    body: dict[str, Any] = {"success": True, "queued": True, "job_id": None, "action": action}
    outcome = InboundOutcome(body, "queued", status=202)
    along: tuple[Table, dict[str, Any]] | None = (log.EVENTS, log_row(outcome))
    job: dict[str, Any] = {
        "connection_id": runtime.connection_id,
        "payload": payload,
        "dedupe_key": key,
        "ordering": lane,
    }
    for _ in range(MAX_ATTEMPTS):
        try:
            if along is not None:
                job_id = outbox.commit_job(outbox.WEBHOOK_INBOUND, **job, along=along)
                along = None  # the log row is written
            else:
                job_id = outbox.enqueue_job(outbox.WEBHOOK_INBOUND, **job)
                db.session.commit()
            if job_id is None:  # an identical webhook is still queued: answer with its id
                job_id = db.session.connection().execute(_QUEUED_JOB, {"key": key}).scalar()
                db.session.rollback()
            if job_id is None:  # it finished in between: queue this one after all
                continue
            body["job_id"] = job_id
            return outcome
        except IntegrityError:  # e.g. its connection deleted meanwhile: try again, then answer busy
            db.session.rollback()
    raise InboundRejected(503, "busy", "could not queue the webhook, try again")


def inbound_from_payload(payload: dict[str, Any]) -> tuple[str, InboundRequest, InboundOptions]:
    raw = payload.get("body") or ""
    body = base64.b64decode(raw) if payload.get("body_encoding") == "base64" else raw.encode("utf-8")
    call = build_call(
        method=payload.get("method", "POST"),
        query=payload.get("query") or {},
        headers=payload.get("headers") or {},
        body=body,
        content_type=payload.get("content_type") or "",
    )
    return str(payload["action"]), call.inbound, call.options()


@job_handler(outbox.WEBHOOK_INBOUND)
def run_queued_webhook(ctx: JobContext) -> dict[str, Any]:
    """Run a webhook accepted with ``async=true`` through the same rules as a direct one.

    The signature was verified when the request arrived, so it is not checked again (its
    timestamp would be stale by now). A CRM failure re-raises the adapter's error so the
    worker retries; a rule failure (e.g. ``missing_email``) is final.
    """
    payload = ctx.delivery.payload or {}
    connection = ctx.connection or db.session.get(Connection, payload.get("connection_id"))
    if connection is None:
        raise InboundJobRejected("the connection of this webhook was removed")
    runtime = ConnectionRuntime.prepare(connection, http=ctx.http)
    ctx.adapters.append((connection.id, runtime.adapter))
    action, inbound, options = inbound_from_payload(payload)
    try:
        contacts = runtime.adapter.parse(inbound)
        outcome = process_contacts(runtime, action, contacts, options, commit=False)
    except InboundRejected as exc:
        if isinstance(exc.__cause__, CrmError):
            raise exc.__cause__ from exc
        raise InboundJobRejected(f"{exc.code}: {exc.message}", status=exc.status) from exc
    return _without_passwords(outcome.body)


def _without_passwords(body: dict[str, Any]) -> dict[str, Any]:
    """A job's result is stored on its delivery row: a generated password must not be."""
    cleaned = {key: value for key, value in body.items() if key != "password"}
    if isinstance(body.get("results"), list):
        cleaned["results"] = [_without_passwords(item) for item in body["results"]]
    return cleaned
