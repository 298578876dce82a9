"""The WP Fusion endpoint: ``/?wpf_action=…&access_key=…`` (CONTRACT.md §3).

Thin on purpose: it checks the request in the contract's order (rate limit, body size,
configuration, key, action, parameters, signature, payload), hands the contacts to
:mod:`bridge.inbound.service` and renders JSON. Whatever happens, one inbound log row is
written; an error response writes nothing else.
"""

from __future__ import annotations

import io
from typing import Any

from flask import Blueprint, Request, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from bridge.connections import service as connections
from bridge.errors import ApiError
from bridge.extensions import db
from bridge.inbound import log
from bridge.inbound.contact_checks import check_contacts
from bridge.inbound.keys import resolve_access_key
from bridge.inbound.request import ACTIONS, InvalidParameter, WebhookCall, call_from_flask
from bridge.inbound.service import (
    ConnectionRuntime,
    InboundOutcome,
    check_parameters,
    process_contacts,
    queue_webhook,
)
from bridge.ratelimit import client_address, failed_key_limiter
from crm_adapters.errors import InvalidPayload, InvalidSignature, MissingContactId

bp = Blueprint("inbound", __name__)

RUNNING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>crm-bridge</title>
<style>
body{margin:0;min-height:100vh;display:grid;place-items:center;padding:1.5rem;
font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:linear-gradient(160deg,#eef3fb,#f8fafc);color:#1f2937}
main{max-width:34rem;background:#fff;border-radius:14px;padding:2rem;box-shadow:0 10px 30px rgba(15,23,42,.08)}
h1{margin:0 0 .5rem;font-size:1.5rem}.ok{display:inline-block;width:.7rem;height:.7rem;border-radius:50%;
background:#16a34a;margin-right:.5rem;box-shadow:0 0 0 4px #dcfce7}
code{background:#f1f5f9;padding:.1rem .35rem;border-radius:5px}
a{color:#2f6fdf;font-weight:600}ul{padding-left:1.2rem}
</style></head>
<body><main><h1><span class="ok"></span>crm-bridge is running</h1>
<p>CRM automations send webhooks to <code>/?wpf_action=add&amp;access_key=KEY</code>
(also <code>update</code> and <code>update_tags</code>).</p>
<ul><li><a href="/admin/">Admin console</a>: connections, users, inbound log, deliveries</li>
<li><a href="/healthz">Health</a> and <a href="/metrics">metrics</a></li></ul></main></body></html>
"""


@bp.route("/", methods=["GET", "POST"])
def index() -> Any:
    if request.method == "GET" and not _looks_like_webhook():
        return Response(RUNNING_PAGE, mimetype="text/html")
    # The request itself, not the proxy: the hot path reads a dozen of its attributes.
    current: Request = request._get_current_object()  # type: ignore[attr-defined]
    entry = log.InboundLogEntry(method=current.method, path=current.full_path, source_ip=current.remote_addr)
    keys: tuple[str, ...] = ()  # every key the request presented: none may reach the log
    try:
        call = _read_call(current, entry)
        keys = call.presented_keys
        outcome = _handle(call, entry)
        response = jsonify(outcome.body)
        response.status_code = outcome.status
        _fill(entry, outcome)
    except ApiError as error:
        db.session.rollback()
        entry.recorded = False  # a row added to the failed transaction is gone with it
        response = error.response()
        entry.status_code, entry.outcome, entry.message = error.status, error.code, error.message
    except Exception as exc:
        db.session.rollback()
        entry.recorded = False
        entry.message = f"internal error ({exc.__class__.__name__})"
        log.record(entry, keys)
        raise
    if not entry.recorded:
        log.record(entry, keys)
    return response


def _looks_like_webhook() -> bool:
    args = request.args
    return bool(
        args.get("wpf_action")
        or args.get("access_key")
        or request.headers.get("X-Access-Key")
        or request.headers.get("Authorization")
    )


def _read_call(current: Request, entry: log.InboundLogEntry) -> WebhookCall:
    """Rate limit and body size come before anything is read into memory or the database; the
    body is only split here (a form into its pairs, linear), decoded after the key check."""
    limiter = failed_key_limiter()
    address = client_address(current)
    if limiter.is_refused(address):
        retry_after = limiter.retry_after(address)
        raise ApiError(
            429,
            "rate_limited",
            "too many failed access-key attempts from this address; try again later",
            headers={"Retry-After": str(retry_after)},
        )
    limit = int(current_app.config["BRIDGE_MAX_BODY_BYTES"])
    length = current.content_length  # parsed from the header at each read: read once
    if length is not None and length > limit:
        raise _too_large(limit)
    try:
        body = _read_body(current, length, limit)
    except RequestEntityTooLarge:
        raise _too_large(limit) from None
    call = call_from_flask(current, body)
    entry.action = call.action
    entry.redact_request(body, call.content_type, call.presented_keys)
    return call


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"request body larger than {limit} bytes")


def _read_body(current: Request, length: int | None, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes.

    A chunked body has no Content-Length, and Werkzeug's limited stream then stops silently at
    the limit (a truncated body would parse as garbage), so such a body is read here up to one
    byte past the limit and handed back to Werkzeug as a buffer for any form parsing.
    """
    environ = current.environ
    if length is None and environ.get("wsgi.input_terminated"):
        stream, chunks, size = environ["wsgi.input"], [], 0
        while size <= limit:
            chunk = stream.read(limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge()
        environ["wsgi.input"] = io.BytesIO(b"".join(chunks))
    return current.get_data(cache=True)


def _handle(call: WebhookCall, entry: log.InboundLogEntry) -> InboundOutcome:
    keyed = resolve_access_key(call.access_key)
    if keyed is None:
        if not connections.any_connection_exists():
            raise ApiError(
                503, "not_configured", "no connection is configured yet: create one with `crm-bridge connection add`"
            )
        db.session.rollback()  # the limiter uses its own connection: release SQLite's write lock
        failed_key_limiter().record_failure(client_address())
        if len(call.presented_keys) > 1:  # even when one of them is right: which did the sender mean?
            raise ApiError(403, "invalid_access_key", "the request carries access keys that disagree")
        raise ApiError(403, "invalid_access_key", "the access key is missing or wrong")
    entry.connection_id, entry.connection_name = keyed.connection_id, keyed.name
    if not call.action:
        raise ApiError(400, "missing_action", "wpf_action is required (test, add, update or update_tags)")
    if call.action not in ACTIONS:
        raise ApiError(400, "unknown_action", f"wpf_action must be one of {', '.join(ACTIONS)}")
    try:
        options = call.options()
    except InvalidParameter as exc:
        raise ApiError(400, "invalid_parameter", str(exc)) from None
    runtime = ConnectionRuntime.from_keyed(keyed)
    if call.action == "test":
        return InboundOutcome({"success": True, "connection": keyed.name}, "tested")
    try:
        runtime.adapter.verify(call.inbound)
        if runtime.adapter.handles_verification_ping(call.inbound):
            return InboundOutcome({"success": True, "verified": True}, "verified")
        if call.body_error:
            raise InvalidPayload(call.body_error)
        contacts = runtime.adapter.parse(call.inbound)
        check_contacts(contacts)
    except InvalidSignature:
        raise ApiError(403, "invalid_signature", "the request signature is missing or wrong") from None
    except InvalidPayload as exc:
        raise ApiError(400, "invalid_payload", exc.message) from None
    except MissingContactId as exc:
        raise ApiError(400, "missing_contact_id", exc.message) from None
    entry.contact_id = ",".join(c.contact_id or "" for c in contacts)[:191] or None
    if options.run_async:
        check_parameters(runtime, options)  # a 400 now, not a dead job later
        contact_id = entry.contact_id

        def log_row(outcome: InboundOutcome) -> dict[str, Any]:
            outcome.contact_id = contact_id
            _fill(entry, outcome)
            entry.recorded = True  # written with the job, or not at all (then re-recorded below)
            return log.row_values(entry, call.presented_keys)

        return queue_webhook(runtime, call.action, call.inbound, contacts=contacts, log_row=log_row)
    return process_contacts(
        runtime, call.action, contacts, options, before_commit=lambda o: _log_with(entry, o, call.presented_keys)
    )


def _log_with(entry: log.InboundLogEntry, outcome: InboundOutcome, keys: tuple[str, ...]) -> None:
    """Add the log row to the webhook's own transaction: one commit per successful webhook."""
    _fill(entry, outcome)
    log.add(entry, keys)


def _fill(entry: log.InboundLogEntry, outcome: InboundOutcome) -> None:
    entry.status_code, entry.outcome = outcome.status, outcome.outcome
    entry.contact_id, entry.user_id = outcome.contact_id, outcome.user_id
