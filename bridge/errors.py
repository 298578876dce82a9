"""JSON errors: one exception type for the API and inbound views, one handler that renders it."""

from __future__ import annotations

import contextlib
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

# Errors that mean "the database cannot be reached or is busy now", not a bug: answered 503.
DATABASE_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError)
DATABASE_RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """An error answered as ``{"success": false, "error": CODE, "message": …}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {"success": False, "error": self.code, "message": self.message, **self.extra}

    def response(self) -> Response:
        response = jsonify(self.body())
        response.status_code = self.status
        response.headers.update(self.headers)
        return response


HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
}


def wants_json() -> bool:
    """HTML pages (admin console, register, login links) keep HTML errors; all else is JSON."""
    path = request.path
    return not (path.startswith("/admin") or path.startswith("/register") or path.startswith("/login"))


PAGE_TITLES = {
    400: "That request could not be used",
    401: "Please sign in",
    403: "Not allowed",
    404: "Page not found",
    405: "Not possible here",
    413: "Too large",
    429: "Too many attempts",
}
PAGE_MESSAGES = {
    404: "There is nothing at this address. Check the link, or start again from the menu.",
    429: "Too many attempts from your address. Wait a minute, then try again.",
    405: "This page does not accept that kind of request.",
    500: "Something went wrong on the server. Try again in a moment; the log says more.",
}
CSRF_MESSAGE = "The form had expired or was not sent from this site. Reload the page and submit it again."


def html_error(error: HTTPException) -> tuple[str, int, dict[str, str]]:
    """An error on an HTML page (console, register, login link) as a page in the site's style:
    never Werkzeug's bare text, and never its default descriptions (they address developers)."""
    status = error.code or 500
    description = error.description if error.description != type(error).description else None
    if isinstance(error, CSRFError):
        description = CSRF_MESSAGE
    message = description or PAGE_MESSAGES.get(status) or "Something about that request was wrong."
    headers = {k: v for k, v in error.get_headers() if k.lower() == "retry-after"}
    page = render_template(
        "page/error.html", code=status, title=PAGE_TITLES.get(status, "Something went wrong"), message=message
    )
    return page, status, headers


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def render_api_error(error: ApiError) -> Response:
        return error.response()

    def render_database_down(error: Exception) -> Any:
        """A database outage is the server's state, not a bug: 503 and when to come back, so a
        CRM retries instead of recording a permanent failure."""
        from bridge.extensions import db

        app.logger.error("database unavailable: %s", error.__class__.__name__)
        with contextlib.suppress(Exception):  # the connection may be gone; the session is discarded
            db.session.rollback()
        headers = {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
        if not wants_json():
            return Response("The service is unavailable; try again shortly.", 503, headers, mimetype="text/plain")
        message = "the database is unavailable; retry later"
        return ApiError(503, "database_unavailable", message, headers=headers).response()

    for error_class in DATABASE_DOWN:
        app.register_error_handler(error_class, render_database_down)

    @app.errorhandler(HTTPException)
    def render_http_error(error: HTTPException) -> Any:
        if not wants_json():
            return html_error(error)
        status = error.code or 500
        code = HTTP_CODES.get(status, "error")
        message = error.description or code
        if status == 413:
            message = f"request body larger than {app.config['BRIDGE_MAX_BODY_BYTES']} bytes"
        return ApiError(status, code, message).response()
