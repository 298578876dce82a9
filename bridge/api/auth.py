"""Bearer API tokens for ``/api``.

A verified token is remembered per process for ``BRIDGE_ACCESS_KEY_CACHE_SECONDS`` (as access
keys are: ``bridge.inbound.keys``), so an API call costs no token query. Tokens are only ever
created, never changed, by crm-bridge; unknown tokens are never cached, so a new token works
everywhere at once. On SQLite the look-up was also a transaction, which holds the database's
write lock: registrations queued on it twice (token, then the registration itself).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request
from sqlalchemy import bindparam, select

from bridge import crypto
from bridge.accounts.api_tokens import VERIFIED_CACHE, create_token
from bridge.errors import ApiError
from bridge.extensions import db
from bridge.models import ApiToken

F = TypeVar("F", bound=Callable[..., Any])
__all__ = ["Caller", "authenticate", "create_token", "token_required"]


@dataclass(frozen=True)
class Caller:
    """Who an API call is from: the token's id and name (never its hash)."""

    token_id: int
    name: str


_LOOKUP = select(ApiToken.id, ApiToken.name, ApiToken.token_hash).where(ApiToken.token_hash == bindparam("digest"))
_verified_lock = threading.Lock()


def _verified() -> dict[str, tuple[Caller, float]]:
    """This app's verified tokens (per app: tests run many apps, on different databases)."""
    return current_app.extensions.setdefault(VERIFIED_CACHE, {})  # type: ignore[no-any-return]


def authenticate(header: str | None) -> Caller | None:
    if not header or not header.startswith("Bearer "):
        return None
    token = header[len("Bearer ") :].strip()
    if not token:
        return None
    digest = crypto.token_hash(token)
    ttl = float(current_app.config.get("BRIDGE_ACCESS_KEY_CACHE_SECONDS", 5.0))
    now = time.monotonic()
    verified = _verified()
    with _verified_lock:
        cached = verified.get(digest)
    if cached is not None and now - cached[1] < ttl:
        return cached[0]
    row = db.session.execute(_LOOKUP, {"digest": digest}).first()
    db.session.rollback()  # a read: end it before the view runs (on SQLite it holds the write lock)
    if row is None or not crypto.same_secret(row.token_hash, digest):
        return None
    caller = Caller(row.id, row.name)
    if ttl > 0:
        with _verified_lock:
            verified[digest] = (caller, now)
    return caller


def token_required(view: F) -> F:
    """401 JSON unless the request carries a valid ``Authorization: Bearer TOKEN``."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        caller = authenticate(request.headers.get("Authorization"))
        if caller is None:
            raise ApiError(401, "unauthorized", "a valid API token is required (Authorization: Bearer TOKEN)")
        g.api_caller = caller
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]
