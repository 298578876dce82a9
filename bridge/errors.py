"""JSON errors: one exception type for the API and inbound views, one handler that renders it."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException


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


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def render_api_error(error: ApiError) -> Response:
        return error.response()

    @app.errorhandler(HTTPException)
    def render_http_error(error: HTTPException) -> Any:
        if not wants_json():
            return error
        status = error.code or 500
        code = HTTP_CODES.get(status, "error")
        message = error.description or code
        if status == 413:
            message = f"request body larger than {app.config['BRIDGE_MAX_BODY_BYTES']} bytes"
        return ApiError(status, code, message).response()
