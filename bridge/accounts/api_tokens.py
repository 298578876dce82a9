"""API tokens for ``/api``: created (shown once, stored as a hash), listed, revoked.

Names are unique, so ``token revoke NAME`` names one token: the service checks first, for a clear
error, and the database's unique constraint stops a concurrent creation the check could not see
(answered with the same error). The CLI and the admin console both call these; verifying a token
on a request is ``bridge.api.auth``'s. A revoked token stops working in this process at once (its
cache entry is dropped) and in others within ``BRIDGE_ACCESS_KEY_CACHE_SECONDS``.
"""

from __future__ import annotations

from flask import current_app, has_app_context
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bridge import crypto
from bridge.extensions import db
from bridge.models import ApiToken

TOKEN_PREFIX = "cbt_"  # noqa: S105 (a prefix, not a secret)
MAX_NAME = 128
# Where ``bridge.api.auth`` keeps the tokens it verified (per app), so revoking can drop them.
VERIFIED_CACHE = "bridge.api_token_cache"


class TokenNameInvalid(ValueError):
    """The name is empty, too long or taken."""


class TokenNotFound(LookupError):
    pass


def clean_name(name: str) -> str:
    cleaned = (name or "").strip()
    if not cleaned or len(cleaned) > MAX_NAME:
        raise TokenNameInvalid(f"a token name is 1 to {MAX_NAME} characters")
    return cleaned


def create_token(name: str) -> tuple[ApiToken, str]:
    """A new API token; the plain value is returned once and stored only as a hash.

    Raises ``TokenNameInvalid`` for a taken name, whether the check sees it or the insert loses
    to a concurrent creation on the unique constraint (only the insert is undone: a savepoint
    keeps the caller's transaction usable)."""
    name = clean_name(name)
    if _name_taken(name):
        raise _taken(name)
    token = crypto.new_token(TOKEN_PREFIX)
    row = ApiToken(name=name, token_hash=crypto.token_hash(token))
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:
        if _name_taken(name):
            raise _taken(name) from None
        raise
    return row, token


def _name_taken(name: str) -> bool:
    return db.session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None


def _taken(name: str) -> TokenNameInvalid:
    return TokenNameInvalid(f"a token named {name!r} exists: revoke it first or choose another name")


def list_tokens() -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.name, ApiToken.id)))


def revoke_token(name: str) -> int:
    """Delete the token called ``name``; returns how many were deleted (one: names are unique)."""
    rows = list(db.session.scalars(select(ApiToken).where(ApiToken.name == name)))
    if not rows:
        raise TokenNotFound(f"no API token named {name!r}")
    for row in rows:
        db.session.delete(row)
    db.session.flush()
    if has_app_context():
        current_app.extensions.get(VERIFIED_CACHE, {}).clear()
    return len(rows)
