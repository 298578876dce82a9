"""Dry run: the request(s) a connection would send for a registration, without a registration.

``dry_run(connection, preset=…, user_id=…, send=False)`` builds the registration push for a
synthetic user (a preset) or an existing one, and runs the connection's adapter against either

* a :class:`RecordingHttpClient` (``send=False``): each request is recorded and answered with a
  synthetic ``200 {}`` (a synthetic token for an OAuth token request) so adapters that make
  several calls still show their whole sequence, and nothing leaves the machine; or
* the real :class:`~bridge.outbound.client.OutboundClient` (``send=True``), with every outbound rule.

It never writes users, links, deliveries or attempts: it is safe to run against production.
Everything returned is redacted with the connection's secrets. Shared by
``POST /api/connections/NAME/dry-run`` and ``crm-bridge connection test NAME --dry-run``.
"""

from __future__ import annotations

import json as json_module
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.connections.service import build_adapter
from bridge.connections.settings import effective_settings, secret_values
from bridge.database import end_transaction
from bridge.extensions import db
from bridge.models import Connection, User, iso, utcnow
from bridge.outbound.client import describe_request, describe_response, outbound_client, prepare
from bridge.outbound.policy import OutboundPolicy, check_url
from bridge.outbound.redaction import encoded_forms, scrub_text
from crm_adapters.base import Adapter, HttpResponse, OutboundContact, OutboundEvent
from crm_adapters.errors import AdapterError

PRESETS: dict[str, dict[str, Any]] = {
    "new_us_user": {
        "email": "preset-user@example.com",
        "username": "preset-user",
        "first_name": "Preset",
        "last_name": "User",
        "meta": {"signup_country": "US", "tier": "free"},
    },
}
# Failures that happen on our side before anything is sent: real even when nothing is sent.
OUR_OWN_ERRORS = frozenset({"outbound_denied", "invalid_config", "payload_too_large"})
SYNTHETIC_TOKEN = "dry-run-access-token"  # noqa: S105 (a placeholder shown instead of a real token)


class UnknownPreset(ValueError):
    pass


class DryRunUserNotFound(LookupError):
    pass


@dataclass
class RecordingHttpClient:
    """An ``HttpClient`` that records each request (redacted, as the real client would) and
    answers ``200 {}`` without sending. Scheme and allowlist are checked (no DNS) so a target the
    real client would refuse shows up as refused here too."""

    policy: OutboundPolicy = field(default_factory=OutboundPolicy)
    secrets: tuple[str, ...] = ()
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    # The adapter's ``stand_in_answer``: answers shaped like the CRM's real ones.
    answer: Callable[[str, str, str], tuple[int, Any] | None] | None = None

    @property
    def redaction_secrets(self) -> tuple[str, ...]:
        return encoded_forms(self.secrets)  # nothing is sent, so nothing else can echo back

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | Sequence[tuple[str, Any]] | str | bytes | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        exchange: dict[str, Any] = {"method": method.upper(), "url": url, "duration_ms": 0.0, "sent": False}
        self.exchanges.append(exchange)
        try:
            prepared = prepare(method, url, params=params, headers=headers, json=json, data=data, auth=auth)
            exchange.update(describe_request(prepared, self.secrets))
            check_url(prepared.url or url, self.policy)
        except AdapterError as exc:
            exchange.update(error_class=exc.error_class, error=str(exc))
            raise
        status, body = 200, b"{}"
        text = _text(prepared.body)
        stand_in = self.answer(method.upper(), prepared.url or url, text) if self.answer else None
        if _is_token_request(text):
            body = b'{"access_token":"%s","token_type":"Bearer","expires_in":0}' % SYNTHETIC_TOKEN.encode()
        elif stand_in is not None:  # a None body: an answer without one (204)
            status, body = stand_in[0], b"" if stand_in[1] is None else json_module.dumps(stand_in[1]).encode()
        response = HttpResponse(status=status, headers={"Content-Type": "application/json"}, body=body, url=url)
        exchange.update(describe_response(response, self.secrets))
        return response


def _text(body: Any) -> str:
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")


def _is_token_request(text: str) -> bool:
    return "grant_type=client_credentials" in text or "grant_type=refresh_token" in text


def preset_user(name: str) -> dict[str, Any]:
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise UnknownPreset(f"unknown preset {name!r} (known: {', '.join(PRESETS)})") from None


def user_view(user: User) -> dict[str, Any]:
    return {
        "email": user.email,
        "username": user.username,
        "first_name": user.first_name or "",
        "last_name": user.last_name or "",
        "meta": dict(user.meta or {}),
        "user_id": user.id,
        "created_at": iso(user.created_at) or "",
        "role": user.role or "",
    }


def registration_contact(person: Mapping[str, Any], adapter: Adapter, settings: Mapping[str, Any]) -> OutboundContact:
    """The OutboundContact a registration push sends: mapped fields, ``assign_tags``, an event."""
    local = {**person["meta"], **{k: person[k] for k in ("email", "username", "first_name", "last_name")}}
    event = OutboundEvent(
        id=f"dryrun_{uuid.uuid4().hex[:16]}", type="user.registered", occurred_at=datetime.now(UTC).isoformat()
    )
    return OutboundContact(
        email=person["email"],
        fields=adapter.to_crm_fields(local),
        tags=list(settings.get("assign_tags") or []),
        first_name=person["first_name"],
        last_name=person["last_name"],
        username=person["username"],
        meta=dict(person["meta"]),
        event=event,
        user_id=person.get("user_id"),
        created_at=person.get("created_at") or iso(utcnow()) or "",
        role=person.get("role") or str(settings.get("default_role") or "subscriber"),
    )


def _log_line(exchange: Mapping[str, Any]) -> str:
    head = f"{exchange.get('method')} {exchange.get('url')}"
    if "error_class" in exchange:
        return f"{head} → failed: {exchange['error_class']}: {exchange.get('error', '')}"
    suffix = "" if exchange.get("sent", True) else " (not sent: stand-in answer)"
    return f"{head} → {exchange.get('status')} in {exchange.get('duration_ms', 0)} ms{suffix}"


def dry_run(
    connection: Connection,
    *,
    preset: str | None = "new_us_user",
    user_id: int | None = None,
    send: bool = False,
) -> dict[str, Any]:
    """Run the registration push for ``connection`` without registering anyone.

    Returns ``{"connection","type","send","subject","requests","responses","log","error"}``;
    an adapter failure is reported in ``error`` (``{"error_class","message","status"}``), not
    raised. Raises ``UnknownPreset`` or ``DryRunUserNotFound`` for a bad subject.
    """
    if user_id is not None:
        user = db.session.get(User, user_id)
        if user is None:
            raise DryRunUserNotFound(f"no user with id {user_id}")
        person, subject = user_view(user), {"user_id": user_id}
    else:
        person, subject = preset_user(preset or "new_us_user"), {"preset": preset or "new_us_user"}
    secrets = secret_values(connection)
    client = outbound_client(secrets)
    if not send:
        client = RecordingHttpClient(policy=client.policy, secrets=client.secrets)  # type: ignore[assignment]
    adapter = build_adapter(connection, http=client)  # type: ignore[arg-type]
    if isinstance(client, RecordingHttpClient):
        client.answer = adapter.stand_in_answer
        # Nothing is sent, so nothing counts against the CRM's rate limit.
        adapter.throttle = None
    settings = effective_settings(connection)
    log = [f"dry run of {connection.name} ({connection.type}) for {subject}, {'sending' if send else 'not sending'}"]
    error: dict[str, Any] | None = None
    end_transaction()  # what it needs is read: no transaction (on SQLite the write lock) meanwhile
    try:
        contact = registration_contact(person, adapter, settings)
        contact_id = adapter.upsert_contact(contact)
        log.append(f"upsert_contact → contact id {contact_id!r}")
        if contact_id and contact.tags:
            adapter.apply_tags(contact_id, contact.tags)
            log.append(f"apply_tags {contact.tags}")
    except AdapterError as exc:
        message = scrub_text(str(exc), client.redaction_secrets)  # it may quote an echoed credential
        error = {"error_class": exc.error_class, "message": message, "status": exc.status}
        if not send and exc.error_class not in OUR_OWN_ERRORS:
            # Raised by reading a stand-in answer, not by anything a CRM said: not an error.
            log.append(f"stopped: the adapter could not go on from a stand-in answer ({message})")
            error = None
    except NotImplementedError:
        error = {"error_class": "not_supported", "message": f"{connection.type} cannot push contacts", "status": None}
    exchanges = client.exchanges
    log[1:1] = [_log_line(exchange) for exchange in exchanges]
    if error:
        log.append(f"error: {error['error_class']}: {error['message']}")
    return {
        "connection": connection.name,
        "type": connection.type,
        "send": send,
        "subject": subject,
        "requests": [{k: ex.get(k) for k in ("method", "url", "request_headers", "request_body")} for ex in exchanges],
        "responses": [
            {k: ex.get(k) for k in ("status", "response_headers", "response_body")} if "status" in ex else None
            for ex in exchanges
        ],
        "log": log,
        "error": error,
    }
