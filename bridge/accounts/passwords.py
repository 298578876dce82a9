"""Passwords: generating them, hashing them (slowly when a person chose one, cheaply when we
made it up, as its entropy allows) and checking them. Shared by every way a user gets a
password: the inbound ``add``, registration, the CLI, login links, profile edits, staff.
"""

from __future__ import annotations

import hashlib
import secrets
import string

from sqlalchemy import bindparam, update
from werkzeug.security import check_password_hash, generate_password_hash

from bridge.extensions import db
from bridge.models import User

PASSWORD_ALPHABET = string.ascii_letters + string.digits
# One minimum for every password a person chooses (API, /register, the CLI, the login-link
# page): it used to be 8 on some and 12 on others.
MIN_PASSWORD_LENGTH = 12
_USERS = User.__table__


def generate_password(length: int = 16) -> str:
    """Letters and digits from ``secrets``, with at least one of each kind."""
    length = max(12, int(length))
    while True:
        password = random_text(length)
        if any(c.isdigit() for c in password) and any(c.isalpha() for c in password):
            return password


# The largest multiple of the alphabet's size that fits a byte: a byte below it, taken modulo
# the size, is uniform over the alphabet (the others are drawn again).
_UNIFORM_BELOW = 256 - 256 % len(PASSWORD_ALPHABET)


def random_text(length: int) -> str:
    """``length`` characters drawn uniformly from ``PASSWORD_ALPHABET`` with ``secrets``: the
    same draw as ``secrets.choice`` for each character, from one ``token_bytes`` call instead
    of one a character (``secrets.choice`` cost about 8 µs a character)."""
    chosen: list[str] = []
    while len(chosen) < length:
        chosen += [
            PASSWORD_ALPHABET[b % len(PASSWORD_ALPHABET)] for b in secrets.token_bytes(length) if b < _UNIFORM_BELOW
        ]
    return "".join(chosen[:length])


def hash_password(password: str) -> str:
    """A password a person chose: werkzeug's default, deliberately slow (scrypt, n=2**15: about
    0.1-0.4 s here), because such passwords are guessable and the hash is what a stolen database
    gives away."""
    return generate_password_hash(password)


# What a generated password needs (docs/perf.md, "Hashing a generated password"): it is
# ``secrets``-random over 62 characters, so 16 characters carry 95 bits of entropy and the
# shortest we make (12) 71 bits. At 1,000 PBKDF2-SHA256 rounds a GPU tries about 10**7
# candidates a second: 2**70 guesses (half the 12-character space) take it 4 million years, and
# 2**94 about 10**14. A slow KDF adds nothing to that; it would only cost every ``add`` 0.1-0.4 s.
GENERATED_PASSWORD_METHOD = "pbkdf2:sha256:1000"  # noqa: S105 (a KDF name, not a password)
# From 112 bits of entropy (19 characters) one salted round is enough: the rule NIST SP
# 800-63B (5.1.2.2) gives for random secrets, as guessing one is then out of reach even at a
# GPU's 10**10 hashes a second (2**111 guesses: about 10**16 years). Used for passwords nobody will
# see (docs/batches.md, "Speed"), which are made that long (``UNSEEN_PASSWORD_LENGTH``).
LONG_GENERATED_PASSWORD_METHOD = "pbkdf2:sha256:1"  # noqa: S105 (a KDF name, not a password)
LONG_GENERATED_PASSWORD = 19
UNSEEN_PASSWORD_LENGTH = 20  # 119 bits


def hash_generated_password(password: str) -> str:
    """A password from :func:`generate_password` (never one a person chose): about 0.3 ms, or
    a few µs from 19 characters on. What werkzeug's ``generate_password_hash(password, method)``
    makes, and ``check_password_hash`` checks, with the 16-character salt drawn as
    :func:`random_text` draws (werkzeug's ``gen_salt`` draws the same alphabet a character at
    a time, which cost more than the hash of a long password)."""
    method = LONG_GENERATED_PASSWORD_METHOD if len(password) >= LONG_GENERATED_PASSWORD else GENERATED_PASSWORD_METHOD
    salt = random_text(16)
    rounds = int(method.rsplit(":", 1)[1])
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), rounds).hex()
    return f"{method}${salt}${digest}"


_SET_HASH_IF_UNSET = (
    update(_USERS)
    .where(_USERS.c.id == bindparam("user_id"), _USERS.c.password_hash.is_(None))
    .values(password_hash=bindparam("password_hash"))
)


def set_password_hash_if_unset(user_id: int, password_hash: str) -> None:
    """Give a user created without a password its hash (a chosen password hashed after the
    transaction that created the user committed; nothing is overwritten if one was set since)."""
    db.session.execute(_SET_HASH_IF_UNSET, {"user_id": user_id, "password_hash": password_hash})


def check_password(user: User, password: str) -> bool:
    return bool(user.password_hash) and check_password_hash(user.password_hash or "", password)
