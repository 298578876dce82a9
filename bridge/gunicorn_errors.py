"""JSON for the errors gunicorn answers itself, before the app sees the request.

gunicorn refuses a request line over ``limit_request_line`` (414), headers over
``limit_request_fields`` / ``limit_request_field_size`` (431) and malformed requests (400) with
an HTML page of its own, written by ``gunicorn.util.write_error``. crm-bridge's machine
endpoints answer only JSON (CONTRACT.md §3), so ``gunicorn.conf.py`` (loaded by gunicorn from
the working directory, or named with ``-c``) replaces that one function with
:func:`write_json_error`: same status line, a ``{"success": false, "error", "message"}`` body.
gunicorn has no setting for this; a front proxy that answers these itself (nginx's
``large_client_header_buffers``) should answer them as JSON too (docs/inbound.md).

The message may quote the refused request line, so it is scrubbed like every log line.
"""

from __future__ import annotations

import json
from typing import Any

from bridge.outbound.redaction import scrub_text

CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "header_fields_too_large",
    500: "error",
    501: "not_implemented",
}


def json_error_bytes(status: int, reason: str, message: str) -> bytes:
    """The whole HTTP response gunicorn sends for a request it refused."""
    body = json.dumps(
        {"success": False, "error": CODES.get(status, "bad_request"), "message": scrub_text(message or reason)}
    ).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error`` (same signature)."""
    from gunicorn import util

    util.write_nonblock(sock, json_error_bytes(status_int, reason, mesg))


def install() -> None:
    """Make every gunicorn worker forked after this call write JSON errors."""
    from gunicorn import util

    util.write_error = write_json_error
