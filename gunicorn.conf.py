"""gunicorn settings shipped with crm-bridge. gunicorn reads ./gunicorn.conf.py from its working
directory by default (else pass ``-c /path/to/gunicorn.conf.py``); command-line options win.

JSON for the errors gunicorn answers itself, before the app sees the request: a request line
over ``limit_request_line`` (414), headers over ``limit_request_fields`` /
``limit_request_field_size`` (431), malformed requests (400). gunicorn writes those as an HTML
page through ``gunicorn.util.write_error`` and has no setting for it; crm-bridge's machine
endpoints answer only JSON (CONTRACT.md §3), so that one function is replaced here (before the
workers fork) by one writing the same status line with a ``{"success": false, "error",
"message"}`` body. The message may quote the refused request line: it is scrubbed like every
log line. A front proxy that refuses such requests first answers with its own pages
(docs/inbound.md).
"""

from __future__ import annotations

import json
from typing import Any

from gunicorn import util

from bridge.outbound.redaction import scrub_text

ERROR_CODES = {
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
        {"success": False, "error": ERROR_CODES.get(status, "bad_request"), "message": scrub_text(message or reason)}
    ).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error`` (same signature)."""
    util.write_nonblock(sock, json_error_bytes(status_int, reason, mesg))


util.write_error = write_json_error
