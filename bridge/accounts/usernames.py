"""Usernames: the first one a new user is offered, and a free one by the connection's format.

Split from ``bridge.accounts.users``: the rules are their own (cleaning, formats, numeric suffixes), and
the inbound webhook and the API call them directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from bridge.extensions import db
from bridge.models import User

_USERNAME_UNSAFE = re.compile(r"[^a-z0-9._@+-]+")


def username_taken(username: str) -> bool:
    return db.session.scalar(select(User.id).where(func.lower(User.username) == username.lower())) is not None


def _clean(value: str | None) -> str:
    return _USERNAME_UNSAFE.sub("", (value or "").strip().lower())


def clean_username(value: str | None) -> str:
    """``value`` as a username is stored (lower case, unsafe characters dropped); may be empty."""
    return _clean(value)


def _username_base(username_format: str, *, email: str, first_name: str, last_name: str) -> str:
    local_part = _clean(email.split("@", 1)[0]) or "user"
    if username_format == "flname":
        return _clean(first_name + last_name) or local_part
    if username_format == "fnamenum":
        return _clean(first_name) or local_part
    return _clean(email) or local_part


def first_username(username_format: str, *, email: str, first_name: str = "", last_name: str = "") -> str:
    """The username ``make_username`` tries first when no ``preferred`` one is given."""
    base = _username_base(username_format, email=email, first_name=first_name, last_name=last_name)
    return f"{base}1" if username_format == "fnamenum" else base


def make_username(
    username_format: str,
    *,
    email: str,
    first_name: str = "",
    last_name: str = "",
    preferred: str | None = None,
) -> str:
    """A free username: the CRM's ``user_login`` when given and free, else by format
    (``email``; ``flname`` first+last; ``fnamenum`` first name + number), made unique by a
    numeric suffix."""
    preferred_clean = _clean(preferred)
    if preferred_clean and not username_taken(preferred_clean):
        return preferred_clean
    base = _username_base(username_format, email=email, first_name=first_name, last_name=last_name)
    if username_format == "fnamenum":
        number = 1
        while username_taken(f"{base}{number}"):
            number += 1
        return f"{base}{number}"
    if not username_taken(base):
        return base
    number = 2
    while username_taken(f"{base}{number}"):
        number += 1
    return f"{base}{number}"


@dataclass(frozen=True)
class UsernameWanted:
    """One new user's username inputs (``make_username``'s arguments)."""

    username_format: str
    email: str
    first_name: str = ""
    last_name: str = ""
    preferred: str | None = None


def _candidates(wanted: UsernameWanted) -> Iterator[str]:
    """The names ``make_username`` tries, in its order, after the preferred one."""
    base = _username_base(
        wanted.username_format, email=wanted.email, first_name=wanted.first_name, last_name=wanted.last_name
    )
    number = 1 if wanted.username_format == "fnamenum" else 2
    if wanted.username_format != "fnamenum":
        yield base
    while True:
        yield f"{base}{number}"
        number += 1


def make_usernames(wanted: Sequence[UsernameWanted]) -> list[str]:
    """``make_username`` for many new users at once (a batch import's page), with the same
    choices: the first candidates of all of them are checked in one statement, and only a
    taken one costs a look-up of its own. Names chosen earlier in the list count as taken."""
    first = {name for w in wanted for name in (_clean(w.preferred), next(_candidates(w))) if name}
    taken = set(db.session.scalars(select(func.lower(User.username)).where(func.lower(User.username).in_(first))))
    chosen: list[str] = []
    for item in wanted:
        preferred = _clean(item.preferred)
        if preferred and preferred not in taken:
            name = preferred
        else:
            name = next(c for c in _candidates(item) if c not in taken and (c in first or not username_taken(c)))
        taken.add(name)
        chosen.append(name)
    return chosen
