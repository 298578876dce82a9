"""Tags on users: per connection (what that CRM last told us) or local (connection None).

Split from :mod:`bridge.accounts.users` (which re-exports these names) because the inbound ``update``
path runs them on every webhook: they use prebuilt Core statements, never ORM ``UserTag``
objects, and write nothing when the tag set is unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, insert, select

from bridge.extensions import db
from bridge.models import Connection, User, UserTag, utcnow
from bridge.raw_statements import RawStatement

if TYPE_CHECKING:
    from bridge.accounts.user_row import UserRow

_TAGS = UserTag.__table__


def _scope(connection_scoped: bool) -> tuple[Any, Any]:
    column = _TAGS.c.connection_id
    return _TAGS.c.user_id == bindparam("user_id"), (
        column == bindparam("connection_id") if connection_scoped else column.is_(None)
    )


_READ_TAGS = {scoped: select(_TAGS.c.name).where(*_scope(scoped)).order_by(_TAGS.c.id) for scoped in (True, False)}
# Writes of up to this many names are one statement with a bind per name (``name IN (…)``, a
# multi-row VALUES), built once per count; larger ones go in chunks. One statement instead of
# an executemany: psycopg runs an executemany as a pipeline, about 0.1 ms of CPU more each.
NAMES_PER_STATEMENT = 16


@functools.cache
def _delete_names(connection_scoped: bool, count: int) -> RawStatement:
    names = [bindparam(f"name_{i}") for i in range(count)]
    return RawStatement(delete(_TAGS).where(*_scope(connection_scoped), _TAGS.c.name.in_(names)))


@functools.cache
def _insert_names(count: int) -> RawStatement:
    rows = [
        {
            "user_id": bindparam("user_id"),
            "connection_id": bindparam("connection_id"),
            "name": bindparam(f"name_{i}"),
            "created_at": bindparam("created_at"),
        }
        for i in range(count)
    ]
    return RawStatement(insert(_TAGS).values(rows))


def _chunks(names: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(names), NAMES_PER_STATEMENT):
        yield names[start : start + NAMES_PER_STATEMENT]


def _named(params: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {**params, **{f"name_{i}": name for i, name in enumerate(names)}}


def tag_names_for(user_id: int, connection_id: int | None) -> list[str]:
    """The user's tag names in one scope (a connection's id, None: local), oldest first.

    One Core statement: the inbound update path reads tags on every webhook and needs no ORM
    objects for them. Pending ``UserTag`` objects are flushed first so the answer still
    includes tags added through the ORM in this transaction.
    """
    _flush_pending_tags()
    read = _READ_TAGS[connection_id is not None]
    return list(db.session.execute(read, {"user_id": user_id, "connection_id": connection_id}).scalars())


_NAMES_OF_USERS = {
    scoped: select(_TAGS.c.user_id, _TAGS.c.name)
    .where(
        _TAGS.c.user_id.in_(bindparam("user_ids", expanding=True)),
        _TAGS.c.connection_id == bindparam("connection_id") if scoped else _TAGS.c.connection_id.is_(None),
    )
    .order_by(_TAGS.c.id)
    for scoped in (True, False)
}


def tag_names_for_users(user_ids: Iterable[int], connection_id: int | None) -> dict[int, list[str]]:
    """:func:`tag_names_for` of many users in one statement (a batch page's): by user id, a
    user with no tags in that scope left out."""
    wanted = sorted(set(user_ids))
    if not wanted:
        return {}
    _flush_pending_tags()
    found: dict[int, list[str]] = {}
    params = {"user_ids": wanted, "connection_id": connection_id}
    for user_id, name in db.session.execute(_NAMES_OF_USERS[connection_id is not None], params):
        found.setdefault(user_id, []).append(name)
    return found


def tag_names(user: User, connection: Connection | None) -> list[str]:
    return tag_names_for(user.id, connection.id if connection is not None else None)


def replace_tags(user: User, connection: Connection | None, tags: Iterable[str]) -> tuple[list[str], list[str]]:
    """Make the user's tag set for ``connection`` (None: local tags) exactly ``tags``.
    Returns (added, removed), each in a stable order."""
    return replace_tags_for(user, connection.id if connection is not None else None, tags)


def replace_tags_for(
    user: User | UserRow, connection_id: int | None, tags: Iterable[str], *, current: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """:func:`replace_tags` by connection id: one read (none when the caller passes the
    ``current`` names, read in this transaction), then at most one DELETE and one multi-row
    INSERT (per :data:`NAMES_PER_STATEMENT` names; Core on the DBAPI cursor, no ORM objects),
    and nothing at all when the set is unchanged."""
    wanted = list(dict.fromkeys(t.strip() for t in tags if t and t.strip()))
    if current is None:
        current = tag_names_for(user.id, connection_id)
    current_set, wanted_set = set(current), set(wanted)
    added = [t for t in wanted if t not in current_set]
    removed = [t for t in current if t not in wanted_set]
    params: dict[str, Any] = {"user_id": user.id, "connection_id": connection_id}
    for names in _chunks(removed):
        _delete_names(connection_id is not None, len(names)).execute(_named(params, names))
    if added:
        params["created_at"] = utcnow()
        for names in _chunks(added):
            _insert_names(len(names)).execute(_named(params, names))
    if (added or removed) and isinstance(user, User) and "tags" in user.__dict__:
        db.session.expire(user, ["tags"])  # a loaded ``user.tags`` would be stale
    return added, removed


def _flush_pending_tags() -> None:
    """Core statements skip autoflush: flush first if ``UserTag`` objects are pending."""
    session = db.session()
    if any(isinstance(obj, UserTag) for obj in session.new) or any(isinstance(obj, UserTag) for obj in session.deleted):
        session.flush()


def change_local_tags(user: User, add: Iterable[str] = (), remove: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    current = tag_names(user, None)
    remove_set = {t.strip() for t in remove}
    wanted = [t for t in current if t not in remove_set] + [t for t in add if t.strip() not in current]
    return replace_tags(user, None, wanted)
