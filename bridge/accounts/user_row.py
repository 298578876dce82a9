"""A user's columns as plain data, for the paths that skip the ORM.

Its own module because both ``users`` (which writes it back) and ``user_tags`` (which fills its
``tags``) use it, and neither should import the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class UserRow:
    """The columns of a user the inbound update path reads and writes, loaded with Core.

    Loading an ORM ``User`` (and flushing it) costs several times a Core round trip, and the
    update path needs no relationship; :func:`save_columns` writes a ``UserRow`` back with one
    UPDATE, and only when something changed.
    """

    id: int
    email: str
    role: str
    first_name: str
    last_name: str
    meta: dict[str, Any]
    tags: list[str] | None = None  # this connection's tag names, when read with the row
