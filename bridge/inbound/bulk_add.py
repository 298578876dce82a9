"""``add`` for a page of contacts at once (the batch import), set-based.

The rules are the inbound ones (``bridge.inbound.changes``: ``new_user_for`` gives each new
user's email, names, role, meta and welcome mail; ``usernames.make_usernames`` chooses usernames
as ``make_username`` does), only written in a few statements for the whole page instead of a
dozen per contact: one look-up of the page's contact links, one of its emails, one insert each
of users, links, tags and welcome mails. Contacts that match a user go through
``apply_contact`` one by one, exactly as a webhook's ``add``.

Each new user gets a generated password hashed as an ``add`` hashes it
(``changes.make_credentials``: cheaply, it is random). It applies only where no password has to
be returned or chosen by the CRM (hashed slowly, after the commit) and the listing gave every
contact's email and tags (:func:`fits`); the import runs any other contact through the
per-contact path. Runs inside the caller's unit of work (``service.apply_plans``' retry on a
concurrent insert covers it too): flushes, never commits.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select

from bridge.accounts import usernames, users
from bridge.accounts import welcome_mail as mail
from bridge.accounts.user_fingerprint import fingerprint
from bridge.extensions import db
from bridge.inbound.changes import MadeUser, add_body, apply_contact, make_credentials, new_user_for
from bridge.inbound.request import InboundOptions
from bridge.inbound.runtime import ConnectionRuntime, ContactPlan, ContactResult, text_value
from bridge.models import ContactLink, User, UserTag
from bridge.raw_statements import RowsInsert
from crm_adapters.base import Contact

_LINKED = select(ContactLink.contact_id, ContactLink.user_id).where(
    ContactLink.connection_id == bindparam("connection_id"),
    ContactLink.contact_id.in_(bindparam("contact_ids", expanding=True)),
    ContactLink.unlinked_at.is_(None),
)
_BY_EMAIL = select(User.email, User.id).where(User.email.in_(bindparam("emails", expanding=True)))
# One statement per page each, its text the same for every page (``RowsInsert``).
_INSERT_LINKS = RowsInsert(ContactLink.__table__, ("connection_id", "contact_id", "user_id", "linked_at"))
_INSERT_TAGS = RowsInsert(UserTag.__table__, ("user_id", "connection_id", "name", "created_at"))


def fits(runtime: ConnectionRuntime, contact: Contact) -> bool:
    """Whether the contact can take the set-based path: nothing to load from the CRM (email and
    tags given, no ``always_load_from_crm``) and no password but a generated one, which is not
    returned (no mapped ``user_pass``, no ``return_password_field``)."""
    settings = runtime.settings
    return bool(
        contact.contact_id
        and contact.email
        and contact.tags is not None
        and not settings.get("always_load_from_crm")
        and not text_value(settings.get("return_password_field"))
        and not text_value(contact.fields.get("user_pass"))
    )


def add_many(runtime: ConnectionRuntime, contacts: list[Contact], options: InboundOptions) -> list[ContactResult]:
    """``add`` for every contact (all :func:`fits`), in order. Raises ``InboundRejected`` like
    ``add`` for the first contact the rules refuse (nothing of the page is kept then)."""
    linked = dict(
        db.session.execute(
            _LINKED, {"connection_id": runtime.connection_id, "contact_ids": [c.contact_id for c in contacts]}
        ).all()
    )
    emails = {users.normalise_email(c.email) for c in contacts} - {None}
    known = set(dict(db.session.execute(_BY_EMAIL, {"emails": sorted(emails)}).all())) if emails else set()
    results: dict[int, ContactResult] = {}
    fresh: list[tuple[int, Contact]] = []
    claimed: set[str] = set()
    for index, contact in enumerate(contacts):
        email = users.normalise_email(contact.email) or ""
        if contact.contact_id in linked or email in known or email in claimed:
            continue  # matched: after the new users exist (a repeated email then matches its user)
        claimed.add(email)
        fresh.append((index, contact))
    for (index, _contact), result in zip(fresh, _create(runtime, [c for _i, c in fresh], options), strict=True):
        results[index] = result
    for index, contact in enumerate(contacts):
        if index not in results:
            results[index] = apply_contact(runtime, "add", ContactPlan(contact), options)
    return [results[index] for index in range(len(contacts))]


def _create(runtime: ConnectionRuntime, contacts: list[Contact], options: InboundOptions) -> list[ContactResult]:
    if not contacts:
        return []
    roles: dict[str | None, str] = {}
    new_users = [new_user_for(runtime, contact, options, roles) for contact in contacts]
    username_format = str(runtime.settings.get("username_format") or "email")
    names = usernames.make_usernames(
        [
            usernames.UsernameWanted(username_format, n.email, n.first_name, n.last_name, n.preferred_username)
            for n in new_users
        ]
    )
    written = users.insert_users(
        [
            {
                "email": n.email,
                "username": name,
                "role": n.role,
                "first_name": n.first_name,
                "last_name": n.last_name,
                "meta": n.meta,
                "password_hash": make_credentials(runtime, contact).password_hash,
            }
            for contact, n, name in zip(contacts, new_users, names, strict=True)
        ]
    )
    ids = [row["id"] for row in written]
    now = written[0]["created_at"]
    connection_id = runtime.connection_id
    _INSERT_LINKS.run(
        [
            {"connection_id": connection_id, "contact_id": c.contact_id, "user_id": user_id, "linked_at": now}
            for c, user_id in zip(contacts, ids, strict=True)
        ]
    )
    tag_lists = [list(dict.fromkeys(t.strip() for t in c.tags or [] if t and t.strip())) for c in contacts]
    tag_rows = [
        {"user_id": user_id, "connection_id": connection_id, "name": name, "created_at": now}
        for user_id, names_ in zip(ids, tag_lists, strict=True)
        for name in names_
    ]
    _INSERT_TAGS.run(tag_rows)
    welcome = [user_id for user_id, n in zip(ids, new_users, strict=True) if n.notify]
    if welcome:
        mail.queue_welcome_many(welcome, connection_id)
    results = []
    for contact, new, row, tags in zip(contacts, new_users, written, tag_lists, strict=True):
        made = MadeUser(row["id"], row["username"], new.role)
        body = add_body(runtime, contact, made, created=True, tags=tags, notified=new.notify, password_queued=False)
        # What ``undo`` will compare: taken from the values just written (no read back).
        stamp = fingerprint(row, [(connection_id, tag) for tag in tags])  # the columns as written
        results.append(ContactResult(body, "created", row["id"], fingerprint=stamp))
    return results
