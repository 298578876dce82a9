"""Usernames: the first one a new user is offered, and a free one by the connection's format.

Split from ``bridge.accounts.users``: the rules are their own (cleaning, formats, numeric suffixes), and
the inbound webhook and the API call them directly.
"""

from __future__ import annotations

import re

from sqlalchemy import func, select

from bridge.extensions import db
from bridge.models import User

_USERNAME_UNSAFE = re.compile(r"[^a-z0-9._@+-]+")


def username_taken(username: str) -> bool:
    return db.session.scalar(select(User.id).where(func.lower(User.username) == username.lower())) is not None


def _clean(value: str | None) -> str:
    return _USERNAME_UNSAFE.sub("", (value or "").strip().lower())


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
