"""The inbound rules (CONTRACT.md §3): what ``add``, ``update`` and ``update_tags`` do to users.

Callable without a request: the view, the async job (``webhook.inbound``) and any CLI share
:func:`process_contacts`. The order is the promise:

1. every CRM call (loading a contact or its tags) happens first, with no database transaction
   held open (on SQLite every transaction takes the write lock), and any CRM failure is a 502
   with nothing written;
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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from bridge import crypto, mail, outbox, users
from bridge.adapters import adapter_class
from bridge.connections import effective_settings, settings_for_type
from bridge.errors import ApiError
from bridge.extensions import db
from bridge.http import OutboundClient, outbound_client
from bridge.inbound.request import InboundOptions, build_call
from bridge.jobs import JobContext, job_handler
from bridge.models import Connection, ContactLink, Delivery, User
from crm_adapters.base import Adapter, Contact, InboundRequest
from crm_adapters.errors import AdapterError, CrmError

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


class InboundRejected(ApiError):
    """A webhook the rules refuse (4xx) or cannot serve now (502). Nothing was written."""


class InboundJobRejected(AdapterError):
    """A queued webhook the rules refuse: final, retrying cannot help."""

    error_class = "inbound_rejected"


@dataclass
class ConnectionRuntime:
    """A connection ready to serve one webhook: settings decrypted once, adapter built once."""

    connection: Connection
    connection_id: int
    name: str
    settings: dict[str, Any]
    adapter: Adapter
    can_call_crm: bool

    @classmethod
    def prepare(cls, connection: Connection, http: OutboundClient | None = None) -> ConnectionRuntime:
        declared = settings_for_type(connection.type)
        settings = effective_settings(connection)
        secrets = [str(settings[s.name]) for s in declared if s.secret and settings.get(s.name)]
        client = http or outbound_client(secrets)
        adapter = adapter_class(connection.type)(settings, client)
        complete = all(settings.get(s.name) not in (None, "") for s in declared if s.required)
        return cls(connection, connection.id, connection.name, settings, adapter, complete)


@dataclass
class InboundOutcome:
    """What a webhook did: the response body plus what the inbound log records."""

    body: dict[str, Any]
    outcome: str
    status: int = 200
    contact_id: str | None = None
    user_id: int | None = None


@dataclass
class _ContactResult:
    body: dict[str, Any]
    outcome: str
    user_id: int | None = None
    generated_password: str | None = field(default=None, repr=False)


# -- the entry point --------------------------------------------------------------------------


def process_contacts(
    runtime: ConnectionRuntime,
    action: str,
    contacts: list[Contact],
    options: InboundOptions,
    *,
    commit: bool = True,
) -> InboundOutcome:
    """Run ``add``/``update``/``update_tags`` for parsed contacts. Raises :class:`InboundRejected`.

    ``commit=False`` (the async job) runs the unit in a savepoint and leaves the commit to the
    caller (the worker, which records the delivery in the same transaction).
    """
    contacts = gather_from_crm(runtime, action, contacts, release_lock=commit)
    results = run_unit(lambda: [apply_contact(runtime, action, c, options) for c in contacts], commit=commit)
    first = results[0] if results else None
    if len(results) == 1 and first is not None:
        body = first.body
    else:
        body = {"success": True, "action": action, "results": [r.body for r in results]}
    outcomes = {r.outcome for r in results}
    return InboundOutcome(
        body=body,
        outcome=outcomes.pop() if len(outcomes) == 1 else "batch",
        contact_id=",".join(c.contact_id or "" for c in contacts)[:191] or None,
        user_id=first.user_id if first is not None else None,
    )


def run_unit(unit: Callable[[], T], *, commit: bool = True) -> T:
    """Run ``unit`` in one transaction, again from the start when a concurrent transaction won a
    unique constraint (or PostgreSQL chose us as a deadlock or serialization victim)."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            if commit:
                result = unit()
                db.session.commit()
                return result
            with db.session.begin_nested():
                return unit()
        except (IntegrityError, DBAPIError) as exc:
            if commit:
                db.session.rollback()
            if attempt == MAX_ATTEMPTS or not _is_race(exc):
                raise
        except BaseException:
            if commit:
                db.session.rollback()
            raise
    raise AssertionError("unreachable")


def _is_race(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


# -- phase 1: the CRM -------------------------------------------------------------------------


def gather_from_crm(
    runtime: ConnectionRuntime, action: str, contacts: list[Contact], *, release_lock: bool = True
) -> list[Contact]:
    """Complete contacts from the CRM where the payload falls short, before anything is written.

    ``add`` loads the contact when the payload has no email (or ``always_load_from_crm``);
    every action loads tags when the payload carries none. ``update``/``update_tags`` for a
    contact no user matches load nothing (they answer "no matching user"). A connection missing
    its API settings serves payloads as they are. ``release_lock=False`` (the worker owns the
    transaction) keeps the caller's transaction open.
    """
    if not runtime.can_call_crm or action == "test":
        return contacts
    always_load = bool(runtime.settings.get("always_load_from_crm"))
    wanted: list[tuple[int, bool, bool]] = []
    for index, contact in enumerate(contacts):
        load_contact = action != "update_tags" and (always_load or (action == "add" and not contact.email))
        load_tags = contact.tags is None
        if not (load_contact or load_tags) or not contact.contact_id:
            continue
        if action != "add" and match_user(runtime, contact)[0] is None:
            continue
        wanted.append((index, load_contact, load_tags))
    if not wanted:
        return contacts
    if release_lock:
        # On SQLite even a read transaction holds the write lock: never keep it across CRM calls.
        db.session.rollback()
    completed = list(contacts)
    for index, load_contact, load_tags in wanted:
        try:
            completed[index] = _load(runtime.adapter, contacts[index], load_contact, load_tags)
        except AdapterError as exc:
            raise InboundRejected(
                502, "crm_unavailable", f"the CRM could not be reached or refused the request ({exc.error_class})"
            ) from exc
    return completed


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


# -- phase 2: the database --------------------------------------------------------------------


def match_user(runtime: ConnectionRuntime, contact: Contact) -> tuple[User | None, bool]:
    """(user, matched by the contact link): this connection's contact id first, then email."""
    if contact.contact_id:
        user = db.session.scalar(
            select(User)
            .join(ContactLink, ContactLink.user_id == User.id)
            .where(
                ContactLink.connection_id == runtime.connection_id,
                ContactLink.contact_id == contact.contact_id,
                ContactLink.unlinked_at.is_(None),
            )
        )
        if user is not None:
            return user, True
    return users.find_by_email(contact.email), False


def apply_contact(runtime: ConnectionRuntime, action: str, contact: Contact, options: InboundOptions) -> _ContactResult:
    user, linked = match_user(runtime, contact)
    if user is None:
        if action != "add":
            body = {"success": True, "action": action, "matched": False, "reason": "no matching user"}
            return _ContactResult(body, "unmatched")
        return create_from_contact(runtime, contact, options)
    changed, tags, added, removed = update_from_contact(
        runtime, user, contact, options, tags_only=action == "update_tags"
    )
    if not linked and contact.contact_id:
        users.link_contact(user, runtime.connection, contact.contact_id)
    if action == "add":
        body = _add_body(runtime, contact, user, created=False, tags=tags, notified=False, password_queued=False)
        return _ContactResult(body, "updated", user.id)
    body = {
        "success": True,
        "action": action,
        "connection": runtime.name,
        "contact_id": contact.contact_id,
        "user_id": user.id,
        "matched": True,
        "updated_fields": changed,
        "tags": tags,
        "tags_added": added,
        "tags_removed": removed,
    }
    return _ContactResult(body, "updated", user.id)


def update_from_contact(
    runtime: ConnectionRuntime, user: User, contact: Contact, options: InboundOptions, *, tags_only: bool
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Set fields and role (unless ``tags_only``) and replace this connection's tags.
    Returns (changed fields, tags, tags added, tags removed). Never touches the password."""
    changed: list[str] = []
    if not tags_only:
        changed = users.apply_fields(user, contact.fields)
        requested = _text(contact.fields.get("role")) or options.role
        if requested:
            role = _resolve_role(requested, runtime)
            if role != user.role:
                user.role = role
                changed.append("role")
    if contact.tags is None:
        return changed, users.tag_names(user, runtime.connection), [], []
    added, removed = users.replace_tags(user, runtime.connection, contact.tags)
    wanted = list(dict.fromkeys(t.strip() for t in contact.tags if t and t.strip()))
    return changed, wanted, added, removed


def create_from_contact(runtime: ConnectionRuntime, contact: Contact, options: InboundOptions) -> _ContactResult:
    """A new user for a contact: username, password and role by the contact's rules."""
    settings = runtime.settings
    fields = contact.fields
    email = users.normalise_email(contact.email or _text(fields.get("email")))
    if not email:
        raise InboundRejected(422, "missing_email", "the contact has no email address, even after loading it")
    role = _resolve_role(_text(fields.get("role")) or options.role, runtime)
    generated = None
    password = _text(fields.get("user_pass"))
    if not password:
        generated = password = users.generate_password(int(settings.get("password_length") or 16))
    first_name, last_name = _text(fields.get("first_name")) or "", _text(fields.get("last_name")) or ""
    username = users.make_username(
        str(settings.get("username_format") or "email"),
        email=email,
        first_name=first_name,
        last_name=last_name,
        preferred=_text(fields.get("user_login")),
    )
    user = users.create_user(
        email=email,
        username=username,
        password=password,
        first_name=first_name,
        last_name=last_name,
        role=role,
        meta={k: v for k, v in fields.items() if k not in (*users.SPECIAL_FIELDS, *users.USER_COLUMNS)},
    )
    if contact.contact_id:
        users.link_contact(user, runtime.connection, contact.contact_id)
    tags: list[str] = []
    if contact.tags:
        users.replace_tags(user, runtime.connection, contact.tags)
        tags = users.tag_names(user, runtime.connection)
    notify = options.send_notification
    if notify is None:
        notify = bool(settings.get("send_welcome_email"))
    if notify:
        mail.queue_welcome(user, runtime.connection)
    return_field = _text(settings.get("return_password_field"))
    password_queued = bool(generated and return_field)
    if password_queued:
        outbox.enqueue(
            outbox.PASSWORD_RETURN,
            connection=runtime.connection,
            user=user,
            payload={
                "field": return_field,
                "password": crypto.encrypt(str(generated)),
                "contact_id": contact.contact_id,
            },
        )
    body = _add_body(runtime, contact, user, created=True, tags=tags, notified=notify, password_queued=password_queued)
    if generated and settings.get("return_password_in_response"):
        body["password"] = generated
    return _ContactResult(body, "created", user.id, generated)


def _add_body(
    runtime: ConnectionRuntime,
    contact: Contact,
    user: User,
    *,
    created: bool,
    tags: list[str],
    notified: bool,
    password_queued: bool,
) -> dict[str, Any]:
    return {
        "success": True,
        "action": "add",
        "connection": runtime.name,
        "contact_id": contact.contact_id,
        "user_id": user.id,
        "created": created,
        "username": user.username,
        "role": user.role,
        "tags": tags,
        "notification_sent": notified,
        "password_returned": "queued" if password_queued else "off",
    }


def _resolve_role(requested: str | None, runtime: ConnectionRuntime) -> str:
    default = _text(runtime.settings.get("default_role")) or "subscriber"
    try:
        return users.resolve_role(requested, default)
    except users.UserRuleError as exc:
        raise InboundRejected(exc.status, exc.code, exc.message) from exc


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


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


def queue_webhook(runtime: ConnectionRuntime, action: str, inbound: InboundRequest) -> int:
    """Queue the webhook for the worker; an identical one still queued gives the same job id."""
    payload = job_payload(runtime.connection_id, action, inbound)
    key = dedupe_key(payload)
    for _ in range(MAX_ATTEMPTS):
        existing = db.session.scalar(
            select(Delivery.id).where(Delivery.dedupe_key == key, Delivery.status.in_(outbox.OPEN_STATUSES))
        )
        if existing is not None:
            db.session.rollback()
            return existing
        try:
            job = outbox.enqueue(outbox.WEBHOOK_INBOUND, connection=runtime.connection, payload=payload, dedupe_key=key)
            job_id = job.id
            db.session.commit()
            return job_id
        except IntegrityError:  # an identical request queued it a moment ago: answer with its id
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
