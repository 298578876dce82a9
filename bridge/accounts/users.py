"""Users: matching, creating and updating accounts, their roles and tags (usernames are in
``bridge.accounts.usernames``, passwords in ``bridge.accounts.passwords``).

These rules are shared by the inbound webhook, local registration, the CLI and the worker, so
none of them lives in a view. Functions add to the current session and flush; the caller owns
the transaction (and its retry when a concurrent request won a unique constraint).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, exists, func, select, true, update

from bridge.accounts import passwords
from bridge.accounts.signup_country import SERVER_ONLY_META, client_meta, with_signup_country
from bridge.accounts.user_row import UserRow
from bridge.accounts.user_tags import (  # noqa: F401  (re-exported: callers use users.replace_tags & co.)
    change_local_tags,
    replace_tags,
    replace_tags_for,
    tag_names,
    tag_names_for,
    tag_names_for_users,
)
from bridge.accounts.usernames import first_username, make_username
from bridge.extensions import db
from bridge.models import Connection, ContactLink, Role, User, utcnow
from bridge.raw_statements import RawStatement, RowsInsert

ADMIN_ROLE = "administrator"
DEFAULT_ROLES = {"subscriber": "Subscriber", ADMIN_ROLE: "Administrator"}
USER_COLUMNS = ("first_name", "last_name")
SPECIAL_FIELDS = ("email", "user_login", "user_pass", "role")
_USERS = User.__table__


class UserRuleError(ValueError):
    """A request broke a user rule. ``code`` is the API error code."""

    status = 400
    code = "invalid_parameter"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownRole(UserRuleError):
    code = "unknown_role"


class ForbiddenRole(UserRuleError):
    code = "forbidden_role"


class EmailTaken(UserRuleError):
    status = 409
    code = "email_taken"


# -- roles ------------------------------------------------------------------------------------


def ensure_default_roles() -> None:
    existing = set(db.session.scalars(select(Role.slug)))
    for slug, title in DEFAULT_ROLES.items():
        if slug not in existing:
            db.session.add(Role(slug=slug, title=title))
    db.session.flush()


def role_exists(slug: str) -> bool:
    return db.session.scalar(select(Role.id).where(Role.slug == slug)) is not None


def choose_role(requested: str | None, default: str, *, allow_admin: bool = False) -> str:
    """The role to assign, not yet checked to exist: ``requested`` or ``default``; and
    ``administrator`` is only ever given by the site owner (CLI), never by a webhook or
    registration."""
    role = (requested or default or "subscriber").strip()
    if role == ADMIN_ROLE and not allow_admin:
        raise ForbiddenRole(f"role {role!r} cannot be assigned this way")
    return role


def resolve_role(requested: str | None, default: str, *, allow_admin: bool = False) -> str:
    """``choose_role``, and the role must exist."""
    role = choose_role(requested, default, allow_admin=allow_admin)
    if not role_exists(role):
        raise UnknownRole(f"role {role!r} does not exist")
    return role


# -- lookup -----------------------------------------------------------------------------------


def normalise_email(email: str | None) -> str | None:
    email = (email or "").strip().lower()
    return email or None


def find_by_email(email: str | None) -> User | None:
    email = normalise_email(email)
    if not email:
        return None
    return db.session.scalar(select(User).where(User.email == email))


def current_link(connection: Connection, contact_id: str) -> ContactLink | None:
    return db.session.scalar(
        select(ContactLink).where(
            ContactLink.connection_id == connection.id,
            ContactLink.contact_id == contact_id,
            ContactLink.unlinked_at.is_(None),
        )
    )


def find_by_contact(connection: Connection, contact_id: str | None) -> User | None:
    if not contact_id:
        return None
    link = current_link(connection, contact_id)
    return link.user if link else None


def match_user(connection: Connection, contact_id: str | None, email: str | None) -> User | None:
    """The user for a CRM contact: by this connection's contact id, then by email."""
    return find_by_contact(connection, contact_id) or find_by_email(email)


def link_contact(user: User, connection: Connection, contact_id: str) -> bool:
    """Make ``contact_id`` the user's current contact on ``connection``. Earlier links (of this
    user, or of this contact to another user) are closed, not deleted. True if anything changed."""
    existing = current_link(connection, contact_id)
    if existing is not None and existing.user_id == user.id:
        return False
    now = utcnow()
    stale = db.session.scalars(
        select(ContactLink).where(
            ContactLink.connection_id == connection.id,
            ContactLink.unlinked_at.is_(None),
            (ContactLink.user_id == user.id) | (ContactLink.contact_id == contact_id),
        )
    )
    for link in stale:
        link.unlinked_at = now
    db.session.flush()
    db.session.add(ContactLink(connection_id=connection.id, contact_id=contact_id, user_id=user.id, linked_at=now))
    db.session.flush()
    return True


def link_new_user(user_id: int, connection_id: int, contact_id: str) -> None:
    """Link a user created in this transaction: it has no links to close, and a concurrent
    link of the same contact fails the unique index on current links (the caller's unit runs
    again, as for any creation race), so nothing is read first (``link_contact`` reads twice)."""
    db.session.add(ContactLink(connection_id=connection_id, contact_id=contact_id, user_id=user_id, linked_at=utcnow()))


def contact_id_for(user: User, connection: Connection) -> str | None:
    return db.session.scalar(
        select(ContactLink.contact_id).where(
            ContactLink.connection_id == connection.id,
            ContactLink.user_id == user.id,
            ContactLink.unlinked_at.is_(None),
        )
    )


def user_for_any_contact(contact_id: str) -> User | None:
    """The user linked to a contact id on any connection: current link first, then the most
    recent earlier link (so activity for a contact id that was re-linked still lands)."""
    link = db.session.scalar(
        select(ContactLink)
        .where(ContactLink.contact_id == contact_id)
        .order_by(ContactLink.unlinked_at.is_not(None), ContactLink.linked_at.desc(), ContactLink.id.desc())
        .limit(1)
    )
    return link.user if link else None


# -- creating and updating --------------------------------------------------------------------


@dataclass(frozen=True)
class NewUserChecks:
    """What inserting a user depends on, read in one statement (a registration made one round
    trip for each: the role, the email, the username)."""

    role_exists: bool
    email_taken: bool
    username_taken: bool


def _new_user_checks_statement(with_role: bool) -> Select[Any]:
    return select(
        exists().where(Role.slug == bindparam("role")) if with_role else true(),
        exists().where(User.email == bindparam("email")),
        exists().where(func.lower(User.username) == bindparam("username")),
    )


# Built once: constructing the statement cost more than running it on SQLite.
_NEW_USER_CHECKS = {with_role: _new_user_checks_statement(with_role) for with_role in (False, True)}


def new_user_checks(*, email: str, username: str, role: str | None = None) -> NewUserChecks:
    """Whether ``role`` exists (True when not asked), ``email`` (normalised) and ``username``
    are taken; the same conditions as ``role_exists``, ``find_by_email`` and ``username_taken``."""
    params = {"email": email, "username": username.lower()}
    if role is not None:
        params["role"] = role
    row = db.session.execute(_NEW_USER_CHECKS[role is not None], params).one()
    return NewUserChecks(bool(row[0]), bool(row[1]), bool(row[2]))


def create_user(
    *,
    email: str,
    username: str | None = None,
    password: str | None = None,
    password_hash: str | None = None,
    first_name: str = "",
    last_name: str = "",
    role: str = "subscriber",
    meta: Mapping[str, Any] | None = None,
    signup_country: str | None = None,
    username_format: str = "email",
    check_role: bool = False,
) -> User:
    """Insert a user (flushed, not committed). Raises ``EmailTaken`` when the email exists and,
    with ``check_role``, ``UnknownRole`` when ``role`` does not (checked first, as
    ``resolve_role`` would). The role, the email and the first username candidate are read in
    one statement; only a taken username costs more. A ``signup_country`` in ``meta`` (from a
    client or a CRM) is dropped: the one kept is the trusted ``signup_country`` argument."""
    email_normalised = normalise_email(email)
    if not email_normalised:
        raise UserRuleError("email is required")
    names = {"first_name": first_name, "last_name": last_name}
    candidate = username or first_username(username_format, email=email_normalised, **names)
    checks = new_user_checks(email=email_normalised, username=candidate, role=role if check_role else None)
    if not checks.role_exists:
        raise UnknownRole(f"role {role!r} does not exist")
    if checks.email_taken:
        raise EmailTaken(f"a user with email {email_normalised} exists")
    if checks.username_taken:
        candidate = make_username(username_format, email=email_normalised, preferred=username, **names)
    user = User(
        email=email_normalised,
        username=candidate,
        password_hash=password_hash or (passwords.hash_password(password) if password else None),
        role=role,
        first_name=first_name or "",
        last_name=last_name or "",
        meta=with_signup_country(meta or {}, signup_country),
    )
    db.session.add(user)
    db.session.flush()
    return user


def insert_users(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Insert many new users in one statement (no ORM objects; not committed): a batch
    import's page. Each row has the columns ``create_user`` sets; emails must be normalised and
    free, usernames free (``usernames.make_usernames``): a conflict raises ``IntegrityError``
    like a concurrent ``create_user`` does; a ``signup_country`` in a row's meta is dropped, as
    ``create_user`` drops it. Returns each user's columns as written, ``id`` included, in the
    rows' order (a batch import takes its undo fingerprints from them: the meta as stored)."""
    if not rows:
        return []
    now = utcnow()
    stamps = {"created_at": now, "updated_at": now}
    values = [{"password_hash": None, **row, "meta": client_meta(row.get("meta") or {}), **stamps} for row in rows]
    # RETURNING gives the rows in no promised order: matched back by email (unique).
    ids = dict(_INSERT_USERS.run(values))
    return [{**row, "id": ids[row["email"]]} for row in values]


# One statement per page, its text the same for every page (``RowsInsert``).
_INSERT_USERS = RowsInsert(
    User.__table__,
    ("email", "username", "password_hash", "role", "first_name", "last_name", "meta", "created_at", "updated_at"),
    returning=("email", "id"),
)


def field_changes(user: User | UserRow, fields: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(column → new value, keys whose value changed) for setting ``fields`` on ``user``.

    ``first_name``/``last_name`` are columns, ``email`` changes only when the new one is free,
    the special keys ``user_login``/``user_pass``/``role`` are handled by the caller, keys only
    the server writes (``signup_country``) are dropped, and every other key lands in ``meta``.
    """
    changed: list[str] = []
    values: dict[str, Any] = {}
    meta = dict(user.meta or {})
    for key, value in fields.items():
        if key in ("user_login", "user_pass", "role") or key in SERVER_ONLY_META:
            continue
        if key == "email":
            email = normalise_email(value if isinstance(value, str) else None)
            if email and email != user.email and find_by_email(email) is None:
                values["email"] = email
                changed.append("email")
            continue
        if key in USER_COLUMNS:
            text = "" if value is None else str(value)
            if getattr(user, key) != text:
                values[key] = text
                changed.append(key)
            continue
        if meta.get(key) != value:
            meta[key] = value
            changed.append(key)
    if meta != (user.meta or {}):
        values["meta"] = meta
    return values, changed


def save_columns(user: User | UserRow, values: Mapping[str, Any]) -> None:
    """Set column values on a user (``updated_at`` too); a ``UserRow`` is written at once with
    one Core UPDATE, an ORM ``User`` when the session flushes."""
    if not values:
        return
    values = {**values, "updated_at": utcnow()}
    for key, value in values.items():
        setattr(user, key, value)
    if isinstance(user, UserRow):
        _update_statement(frozenset(values)).execute({"user_id": user.id, **{f"new_{c}": v for c, v in values.items()}})


@functools.cache
def _update_statement(columns: frozenset[str]) -> RawStatement:
    """``UPDATE user_account SET <columns> WHERE id = :user_id``, built once per column set, run
    on the DBAPI cursor (``bridge.raw_statements``: the inbound hot path)."""
    statement = update(_USERS).where(_USERS.c.id == bindparam("user_id"))
    return RawStatement(statement.values({c: bindparam(f"new_{c}") for c in sorted(columns)}))


def apply_fields(user: User | UserRow, fields: Mapping[str, Any]) -> list[str]:
    """Set local fields on a user (see :func:`field_changes`); returns the keys that changed."""
    values, changed = field_changes(user, fields)
    save_columns(user, values)
    return changed
