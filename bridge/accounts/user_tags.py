"""Tags on users: per connection (what that CRM last told us) or local (connection None).

Split from :mod:`bridge.accounts.users` (which re-exports these names) because the inbound ``update``
path runs them on every webhook: they use prebuilt Core statements, never ORM ``UserTag``
objects, and write nothing when the tag set is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, insert, select

from bridge.extensions import db
from bridge.models import Connection, User, UserTag, utcnow
from bridge.raw_statements import RawStatement

if TYPE_CHECKING:
    from bridge.accounts.user_row import UserRow

_TAGS = UserTag.__table__


def _tag_statements(connection_scoped: bool) -> tuple[Any, RawStatement]:
    """(read names, delete one name) for one tag scope, built once: building a statement per
    call cost as much as running it. Writes run on the DBAPI cursor (``bridge.raw_statements``),
    the removal as one executemany."""
    column = _TAGS.c.connection_id
    scope = column == bindparam("connection_id") if connection_scoped else column.is_(None)
    mine = (_TAGS.c.user_id == bindparam("user_id"), scope)
    read = select(_TAGS.c.name).where(*mine).order_by(_TAGS.c.id)
    remove = delete(_TAGS).where(*mine, _TAGS.c.name == bindparam("name"))
    return read, RawStatement(remove)


_TAG_SQL = {True: _tag_statements(True), False: _tag_statements(False)}
_INSERT_TAGS = RawStatement(insert(_TAGS), column_keys=["user_id", "connection_id", "name", "created_at"])


def tag_names_for(user_id: int, connection_id: int | None) -> list[str]:
    """The user's tag names in one scope (a connection's id, None: local), oldest first.

    One Core statement: the inbound update path reads tags on every webhook and needs no ORM
    objects for them. Pending ``UserTag`` objects are flushed first so the answer still
    includes tags added through the ORM in this transaction.
    """
    _flush_pending_tags()
    read = _TAG_SQL[connection_id is not None][0]
    return list(db.session.execute(read, {"user_id": user_id, "connection_id": connection_id}).scalars())


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
    ``current`` names, read in this transaction), then at most one set-based DELETE and one
    multi-row INSERT (Core, no ORM objects), and nothing at all when the set is unchanged."""
    wanted = list(dict.fromkeys(t.strip() for t in tags if t and t.strip()))
    if current is None:
        current = tag_names_for(user.id, connection_id)
    current_set, wanted_set = set(current), set(wanted)
    added = [t for t in wanted if t not in current_set]
    removed = [t for t in current if t not in wanted_set]
    if removed:
        remove = _TAG_SQL[connection_id is not None][1]
        remove.execute_many([{"user_id": user.id, "connection_id": connection_id, "name": name} for name in removed])
    if added:
        now = utcnow()
        _INSERT_TAGS.execute_many(
            [{"user_id": user.id, "connection_id": connection_id, "name": name, "created_at": now} for name in added]
        )
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
