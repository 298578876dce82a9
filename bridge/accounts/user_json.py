"""A user as the API and the CLI show it (CONTRACT §4): profile, tags per connection, current
CRM links and the CRM activity timeline. Read-only; the rules that change users are in
``bridge.accounts.users``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bridge.extensions import db
from bridge.models import Connection, ContactLink, CrmActivity, User, UserTag, iso


def tags_by_scope(user: User) -> dict[str, list[str]]:
    """``{"fluent": ["vip"], "": ["local"]}``: per connection name, local tags under ``""``."""
    rows = db.session.execute(
        select(Connection.name, UserTag.name)
        .select_from(UserTag)
        .outerjoin(Connection, Connection.id == UserTag.connection_id)
        .where(UserTag.user_id == user.id)
        .order_by(UserTag.id)
    )
    result: dict[str, list[str]] = {}
    for connection_name, tag in rows:
        result.setdefault(connection_name or "", []).append(tag)
    return result


def activity_json(user: User, limit: int = 100) -> list[dict[str, Any]]:
    rows = db.session.scalars(
        select(CrmActivity)
        .where(CrmActivity.user_id == user.id)
        .order_by(CrmActivity.received_at.desc(), CrmActivity.id.desc())
        .limit(limit)
    )
    return [
        {
            "id": row.id,
            "event_type": row.event_type,
            "contact_id": row.contact_id,
            "payload": row.payload,
            "received_at": iso(row.received_at),
            "source": row.source,
        }
        for row in rows
    ]


def profile_json(user: User) -> dict[str, Any]:
    """The user's own columns: what every user JSON starts with."""
    return {
        "id": user.id,
        "email": user.email,
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "role": user.role,
        "meta": dict(user.meta or {}),
        "created_at": iso(user.created_at),
        "updated_at": iso(user.updated_at),
    }


def user_to_json(user: User, *, with_activity: bool = True) -> dict[str, Any]:
    links = db.session.execute(
        select(Connection.name, ContactLink.contact_id, ContactLink.linked_at)
        .join(Connection, Connection.id == ContactLink.connection_id)
        .where(ContactLink.user_id == user.id, ContactLink.unlinked_at.is_(None))
        .order_by(ContactLink.id)
    )
    data: dict[str, Any] = {
        **profile_json(user),
        "tags": tags_by_scope(user),
        "crm_links": [
            {"connection": name, "contact_id": contact_id, "linked_at": iso(linked_at)}
            for name, contact_id, linked_at in links
        ],
    }
    if with_activity:
        data["crm_activity"] = activity_json(user)
    return data
