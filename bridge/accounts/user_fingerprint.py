"""A user's fingerprint: a digest of everything about the user that anyone could change (the
profile columns, the password hash, the role, meta and every tag). A batch import keeps the
fingerprint of each user it creates, and its ``undo`` removes only users whose fingerprint is
still the same: users nobody has changed since (CONTRACT.md §11)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import bindparam, select

from bridge.extensions import db
from bridge.models import User, UserTag

_USERS = select(
    User.id,
    User.email,
    User.username,
    User.password_hash,
    User.role,
    User.first_name,
    User.last_name,
    User.meta,
    User.updated_at,
).where(User.id.in_(bindparam("ids", expanding=True)))
_TAGS = select(UserTag.user_id, UserTag.connection_id, UserTag.name).where(
    UserTag.user_id.in_(bindparam("ids", expanding=True))
)


def fingerprints(user_ids: Iterable[int]) -> dict[int, str]:
    """Each existing user's fingerprint, by id, in two statements (a page of users at once)."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    tags: dict[int, list[tuple[int | None, str]]] = {}
    for row in db.session.execute(_TAGS, {"ids": ids}):
        tags.setdefault(row.user_id, []).append((row.connection_id, row.name))
    return {row.id: fingerprint(row._mapping, tags.get(row.id, [])) for row in db.session.execute(_USERS, {"ids": ids})}


def fingerprint(user: Mapping[str, Any], tags: Iterable[tuple[int | None, str]]) -> str:
    """The fingerprint of one user from its columns (as stored: ``updated_at`` naive UTC) and
    its tags as (connection id, name): what :func:`fingerprints` reads back, so a batch import
    takes it from the values it has just inserted instead of reading them again."""
    updated_at = user["updated_at"]
    material = [
        user["email"],
        user["username"],
        user["password_hash"],
        user["role"],
        user["first_name"],
        user["last_name"],
        user["meta"] or {},
        updated_at.isoformat() if updated_at else None,
        sorted((connection_id or 0, name) for connection_id, name in tags),
    ]
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
