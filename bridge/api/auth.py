"""Bearer API tokens for ``/api``."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request
from sqlalchemy import select

from bridge import crypto
from bridge.errors import ApiError
from bridge.extensions import db
from bridge.models import ApiToken

F = TypeVar("F", bound=Callable[..., Any])


def create_token(name: str) -> tuple[ApiToken, str]:
    """A new API token; the plain value is returned once and stored only as a hash."""
    token = crypto.new_token("cbt_")
    row = ApiToken(name=name, token_hash=crypto.token_hash(token))
    db.session.add(row)
    db.session.flush()
    return row, token


def authenticate(header: str | None) -> ApiToken | None:
    if not header or not header.startswith("Bearer "):
        return None
    token = header[len("Bearer ") :].strip()
    if not token:
        return None
    digest = crypto.token_hash(token)
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if row is None or not crypto.same_secret(row.token_hash, digest):
        return None
    return row


def token_required(view: F) -> F:
    """401 JSON unless the request carries a valid ``Authorization: Bearer TOKEN``."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        row = authenticate(request.headers.get("Authorization"))
        if row is None:
            raise ApiError(401, "unauthorized", "a valid API token is required (Authorization: Bearer TOKEN)")
        g.api_token = row
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]
