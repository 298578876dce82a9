"""What a CRM contact does to a local user (CONTRACT.md §3): match, create, update, tags, role.

Runs inside the unit of work :func:`bridge.inbound.service.run_unit` owns: functions add to the
session and flush, never commit. Nothing here calls a CRM (that happened before the transaction
began) or hashes a password slowly (a generated one is hashed cheaply at creation, a chosen one
after the commit); nothing here queues a push (no echo loops).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, literal, select, union_all
from sqlalchemy.orm.util import identity_key

from bridge import crypto
from bridge.accounts import passwords, usernames, users
from bridge.accounts import welcome_mail as mail
from bridge.delivery import outbox
from bridge.extensions import db
from bridge.inbound.request import InboundOptions
from bridge.inbound.runtime import (
    ConnectionRuntime,
    ContactPlan,
    ContactResult,
    Credentials,
    InboundRejected,
    text_value,
)
from bridge.models import ContactLink, User, UserTag
from bridge.raw_statements import RawStatement
from crm_adapters.base import Contact


def make_credentials(runtime: ConnectionRuntime, contact: Contact, *, hash_chosen: bool = False) -> Credentials:
    """The CRM's mapped ``user_pass`` when given (hashed now only with ``hash_chosen``, else
    left for after the commit), else a generated password, hashed cheaply (see
    ``passwords.GENERATED_PASSWORD_METHOD``).

    A generated password is ``password_length`` characters when someone will see it (returned
    to the CRM or in the response); one nobody will ever see is at least
    ``passwords.UNSEEN_PASSWORD_LENGTH`` characters, whose entropy needs only one salted round
    (``passwords.LONG_GENERATED_PASSWORD_METHOD``): a batch import makes thousands."""
    given = text_value(contact.fields.get("user_pass"))
    if given:
        return Credentials(passwords.hash_password(given)) if hash_chosen else Credentials(None, chosen=given)
    settings = runtime.settings
    length = int(settings.get("password_length") or 16)
    if not (text_value(settings.get("return_password_field")) or settings.get("return_password_in_response")):
        length = max(length, passwords.UNSEEN_PASSWORD_LENGTH)
    generated = passwords.generate_password(length)
    return Credentials(passwords.hash_generated_password(generated), generated)


# -- phase 2: the database --------------------------------------------------------------------


_LINKED = (
    ContactLink.connection_id == bindparam("connection_id"),
    ContactLink.contact_id == bindparam("contact_id"),
    ContactLink.unlinked_at.is_(None),
)
_USER_BY_CONTACT = select(User).join(ContactLink, ContactLink.user_id == User.id).where(*_LINKED)
_USER_BY_EMAIL = select(User).where(User.email == bindparam("email"))


def _user_by_contact_or_email() -> Any:
    """Both matches in one round trip (an ``add`` of a new user used to make two): the linked
    user ranks first; each branch keeps its own index."""
    candidates = union_all(
        select(User.id, literal(0).label("rank")).join(ContactLink, ContactLink.user_id == User.id).where(*_LINKED),
        select(User.id, literal(1).label("rank")).where(User.email == bindparam("email")),
    ).subquery()
    return (
        select(User, candidates.c.rank)
        .join(candidates, candidates.c.id == User.id)
        .order_by(candidates.c.rank)
        .limit(1)
    )


_USER_BY_CONTACT_OR_EMAIL = _user_by_contact_or_email()


def match_user(runtime: ConnectionRuntime, contact: Contact) -> tuple[User | None, bool]:
    """(user, matched by the contact link): this connection's contact id first, then email,
    in one statement. Statements are built once (building one per webhook cost as much as
    running it)."""
    email = users.normalise_email(contact.email)
    if contact.contact_id and email:
        params = {"connection_id": runtime.connection_id, "contact_id": contact.contact_id, "email": email}
        row = db.session.execute(_USER_BY_CONTACT_OR_EMAIL, params).first()
        return (row[0], row[1] == 0) if row is not None else (None, False)
    if contact.contact_id:
        params = {"connection_id": runtime.connection_id, "contact_id": contact.contact_id}
        user = db.session.scalar(_USER_BY_CONTACT, params)
        return user, user is not None
    return (db.session.scalar(_USER_BY_EMAIL, {"email": email}) if email else None), False


_USER_ROW_BY_CONTACT = RawStatement(
    select(User.id, User.email, User.role, User.first_name, User.last_name, User.meta, UserTag.name)
    .join(ContactLink, ContactLink.user_id == User.id)
    .outerjoin(UserTag, (UserTag.user_id == User.id) & (UserTag.connection_id == ContactLink.connection_id))
    .where(*_LINKED)
    .order_by(UserTag.id)
)


def linked_user_row(runtime: ConnectionRuntime, contact: Contact) -> users.UserRow | None:
    """The user this connection's contact id is linked to, with its tags on this connection, in
    one statement on the DBAPI cursor (the hot path of ``update``/``update_tags``), or None. A
    user already loaded into the session as an ORM object is left to the ORM path: a Core
    UPDATE would leave that object stale."""
    if not contact.contact_id:
        return None
    params = {"connection_id": runtime.connection_id, "contact_id": contact.contact_id}
    rows = _USER_ROW_BY_CONTACT.rows(params)
    if not rows:
        return None
    if db.session.registry.has() and db.session.identity_map.get(identity_key(User, rows[0][0])) is not None:
        return None
    user_id, email, role, first_name, last_name, meta, _tag = rows[0]
    tags = [row[6] for row in rows if row[6] is not None]
    return users.UserRow(user_id, email, role, first_name, last_name, dict(meta or {}), tags)


def apply_contact(runtime: ConnectionRuntime, action: str, plan: ContactPlan, options: InboundOptions) -> ContactResult:
    """One contact's changes inside the unit of work (matched again: a concurrent request may
    have created the user since :func:`prepare_contacts` looked)."""
    contact = plan.contact
    row = linked_user_row(runtime, contact) if action != "add" else None
    if row is not None:
        return _updated(runtime, action, row, contact, options)
    user, linked = match_user(runtime, contact)
    if user is None:
        if action != "add":
            body = {"success": True, "action": action, "matched": False, "reason": "no matching user"}
            return ContactResult(body, "unmatched")
        return create_from_contact(runtime, contact, options, plan.credentials)
    if action != "add":
        result = _updated(runtime, action, user, contact, options)
        if not linked and contact.contact_id:
            users.link_contact(user, runtime.connection, contact.contact_id)
        return result
    changed, tags, added, removed = update_from_contact(runtime, user, contact, options, tags_only=False)
    if not linked and contact.contact_id:
        users.link_contact(user, runtime.connection, contact.contact_id)
    body = add_body(runtime, contact, user, created=False, tags=tags, notified=False, password_queued=False)
    return ContactResult(body, "updated", user.id, changed=bool(changed or added or removed or not linked))


def _updated(
    runtime: ConnectionRuntime, action: str, user: User | users.UserRow, contact: Contact, options: InboundOptions
) -> ContactResult:
    changed, tags, added, removed = update_from_contact(
        runtime, user, contact, options, tags_only=action == "update_tags"
    )
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
    return ContactResult(body, "updated", user.id)


def update_from_contact(
    runtime: ConnectionRuntime,
    user: User | users.UserRow,
    contact: Contact,
    options: InboundOptions,
    *,
    tags_only: bool,
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Set fields and role (unless ``tags_only``) and replace this connection's tags.
    Returns (changed fields, tags, tags added, tags removed). Never touches the password."""
    changed: list[str] = []
    if not tags_only:
        values, changed = users.field_changes(user, contact.fields)
        requested = text_value(contact.fields.get("role")) or options.role
        # A webhook never gives ``administrator``, and never takes it away either: a CRM
        # automation must not be able to lock the site owner out of the admin console.
        if requested and user.role != users.ADMIN_ROLE:
            role = _resolve_role(requested, runtime)
            if role != user.role:
                values["role"] = role
                changed.append("role")
        users.save_columns(user, values)
    current = user.tags if isinstance(user, users.UserRow) else None
    if contact.tags is None:
        return changed, current if current is not None else users.tag_names_for(user.id, runtime.connection_id), [], []
    added, removed = users.replace_tags_for(user, runtime.connection_id, contact.tags, current=current)
    wanted = list(dict.fromkeys(t.strip() for t in contact.tags if t and t.strip()))
    return changed, wanted, added, removed


@dataclass(frozen=True)
class MadeUser:
    """What an ``add`` answer says of a user made set-based (no ORM object to hand)."""

    id: int
    username: str
    role: str


@dataclass
class NewUser:
    """A new user as the rules make it from a contact (before a username is chosen): shared by
    :func:`create_from_contact` and the batch import's set-based path (``bridge.inbound.bulk_add``)."""

    email: str
    first_name: str
    last_name: str
    role: str
    meta: dict[str, Any]
    preferred_username: str | None
    notify: bool


def new_user_for(
    runtime: ConnectionRuntime,
    contact: Contact,
    options: InboundOptions,
    roles: dict[str | None, str] | None = None,
    *,
    check_role: bool = True,
) -> NewUser:
    """Email, names, role, meta and whether to send the welcome mail, by the contact's rules.
    Raises :class:`InboundRejected` (``missing_email``, ``unknown_role``, ``forbidden_role``).
    ``roles`` remembers roles already resolved (a page of contacts asks once per role);
    ``check_role=False`` leaves the role's existence to the caller's insert (one read less)."""
    fields = contact.fields
    email = users.normalise_email(contact.email or text_value(fields.get("email")))
    if not email:
        raise InboundRejected(422, "missing_email", "the contact has no email address, even after loading it")
    requested = text_value(fields.get("role")) or options.role
    role = roles.get(requested) if roles is not None else None
    if role is None:
        role = _resolve_role(requested, runtime) if check_role else _choose_role(requested, runtime)
        if roles is not None:
            roles[requested] = role
    notify = options.send_notification
    if notify is None:
        notify = bool(runtime.settings.get("send_welcome_email"))
    return NewUser(
        email=email,
        first_name=text_value(fields.get("first_name")) or "",
        last_name=text_value(fields.get("last_name")) or "",
        role=role,
        meta={k: v for k, v in fields.items() if k not in (*users.SPECIAL_FIELDS, *users.USER_COLUMNS)},
        preferred_username=text_value(fields.get("user_login")),
        notify=notify,
    )


def create_from_contact(
    runtime: ConnectionRuntime, contact: Contact, options: InboundOptions, credentials: Credentials | None = None
) -> ContactResult:
    """A new user for a contact: username, password and role by the contact's rules."""
    settings = runtime.settings
    # The role's existence, the email and the first username are checked in one statement
    # with the insert (``users.create_user``); only a taken username costs more.
    new = new_user_for(runtime, contact, options, check_role=False)
    credentials = credentials or make_credentials(runtime, contact)
    generated = credentials.generated
    username_format = str(settings.get("username_format") or "email")
    first_username = usernames.first_username(
        username_format, email=new.email, first_name=new.first_name, last_name=new.last_name
    )
    try:
        user = users.create_user(
            email=new.email,
            username=usernames.clean_username(new.preferred_username) or first_username,
            username_format=username_format,
            password_hash=credentials.password_hash,
            first_name=new.first_name,
            last_name=new.last_name,
            role=new.role,
            check_role=True,
            meta=new.meta,
        )
    except users.EmailTaken:
        raise  # a concurrent add won: ``run_unit`` runs the unit again
    except users.UserRuleError as exc:
        raise InboundRejected(exc.status, exc.code, exc.message) from exc
    # A user created in this transaction has no links and no tags yet: no reads before writing.
    if contact.contact_id:
        users.link_new_user(user.id, runtime.connection_id, contact.contact_id)
    tags: list[str] = []
    if contact.tags:
        tags, _removed = users.replace_tags_for(user, runtime.connection_id, contact.tags, current=[])
    if new.notify:
        mail.queue_welcome(user, runtime.connection)
    return_field = text_value(settings.get("return_password_field"))
    password_queued = bool(generated and return_field and runtime.can_call_crm)  # no push to an incomplete one
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
    body = add_body(
        runtime, contact, user, created=True, tags=tags, notified=new.notify, password_queued=password_queued
    )
    if generated and settings.get("return_password_in_response"):
        body["password"] = generated
    return ContactResult(body, "created", user.id, chosen_password=credentials.chosen)


def add_body(
    runtime: ConnectionRuntime,
    contact: Contact,
    user: User | users.UserRow | MadeUser,
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


def check_role_parameter(runtime: ConnectionRuntime, options: InboundOptions) -> None:
    """The ``role`` parameter must name a role a webhook may give, whether or not this contact
    ends up using it: checked before any CRM call (CONTRACT.md §3)."""
    if options.role:
        _resolve_role(options.role, runtime)


def _default_role(runtime: ConnectionRuntime) -> str:
    return text_value(runtime.settings.get("default_role")) or "subscriber"


def _choose_role(requested: str | None, runtime: ConnectionRuntime) -> str:
    try:
        return users.choose_role(requested, _default_role(runtime))
    except users.UserRuleError as exc:
        raise InboundRejected(exc.status, exc.code, exc.message) from exc


def _resolve_role(requested: str | None, runtime: ConnectionRuntime) -> str:
    try:
        return users.resolve_role(requested, _default_role(runtime))
    except users.UserRuleError as exc:
        raise InboundRejected(exc.status, exc.code, exc.message) from exc
