"""The console's session: Flask's signed cookie, opened without per-request set-up.

Flask opens the session of every request before the view runs, and its cookie session builds a
new ``itsdangerous`` serializer (salt, key list, signer options) each time, even for a request
that carries no cookie to read. Webhooks, API calls and health probes never have a session
cookie, and on the inbound ``update`` this set-up was a visible share of the request's CPU.
:class:`CookieSessionInterface` keeps Flask's behaviour exactly (same cookie, same signature,
same fallback keys, null session without a ``SECRET_KEY``) and only skips the work a request
does not need: without a ``Cookie`` header the session is a fresh empty one at once, and the
serializer is built once per secret key (and fallback keys) rather than per request.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's ``SecureCookieSessionInterface``, without rebuilding its serializer per request."""

    def __init__(self) -> None:
        # (the keys it was built for, the serializer): a new SECRET_KEY builds a new one.
        self._serializer: tuple[Any, URLSafeTimedSerializer] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """The same serializer Flask builds, built once for the app's current keys. A serializer
        keeps no state between calls (each one makes its own signer), so threads share it."""
        if not app.secret_key:
            return None
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        cached = self._serializer
        if cached is not None and cached[0] == keys:
            return cached[1]
        serializer = super().get_signing_serializer(app)
        if serializer is not None:
            self._serializer = (keys, serializer)  # one assignment: a racing thread builds its own
        return serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """Flask's answer; a request without any cookie (most machine-to-machine requests) gets
        the empty session Flask would give it without the cookie parsing and serializer."""
        if app.secret_key and "HTTP_COOKIE" not in request.environ:
            return self.session_class()
        return super().open_session(app, request)
