"""Custom webhook: send a registration (or a field update) to any HTTP endpoint, shaped by
templates the site owner writes (CONTRACT §8).

Settings: ``method`` [POST] (GET, POST, PUT, PATCH, DELETE), ``url``, ``headers`` {name:
template}, ``query`` {name: template}, ``body`` (JSON; strings are templates; unset sends the
envelope ``{"type","id","occurred_at","contact":{…}}``), ``auth`` (below), ``signing_secret``
(Standard Webhooks ``whsec_…``; several, space-separated, or ``previous_signing_secret`` during a
rotation: both signatures are sent), ``timeout`` [10], ``max_body_bytes`` [65536],
``response_id_path`` (optional dotted path of the contact id in the JSON answer, e.g. ``data.id``),
``recipe`` (a ready-made method and body by name, ``crm_adapters/webhook_recipes.py``: e.g.
``sync_new_user``), ``test_url`` and ``test_method`` [GET] (what ``connection test`` calls, with the connection's
authentication and no contact data; unset: only the settings are checked, and it says so).

``auth`` is one JSON object, secret as a whole (encrypted at rest, masked when shown):
``{"type":"none"}``, ``{"type":"bearer","token":…}``, ``{"type":"api_key","header":…,"value":…}``,
``{"type":"basic","username":…,"password":…}``, or ``{"type":"oauth2","token_url":…,
"client_id":…,"client_secret":…,"scope":…}`` (client credentials, sent with HTTP Basic as RFC 6749
§2.3.1 requires servers to accept; ``"client_auth":"body"`` sends them in the form instead). The
OAuth token is cached per process, keyed by token URL, client id and scope, until it expires, and
fetched again once when the target answers 401; one fetch at a time per key, shared by every
thread of the process (``crm_adapters.webhook_oauth``).

Every request carries ``Idempotency-Key`` (and, when signing, ``webhook-id``) equal to the event
id, which is the delivery id and so stable across retries. A GET sends no body. Tags ride in the
payload (``{{contact.tags}}``), so ``apply_tags``/``remove_tags`` do nothing.

Inbound (``parse``): a generic JSON (or form) object, or a list of them, optionally wrapped in
``{"contact": {…}}``: ``id`` or ``contact_id``, ``email``, ``first_name``, ``last_name``, ``tags``
(list or comma-separated string); other scalar keys are fields, mapped by the field map.

Specifications followed: Standard Webhooks (https://www.standardwebhooks.com/), OAuth 2.0 client
credentials (https://www.rfc-editor.org/rfc/rfc6749#section-4.4), Jinja's sandbox
(https://jinja.palletsprojects.com/en/stable/sandbox/).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from crm_adapters import webhook_oauth, webhook_recipes, webhook_settings
from crm_adapters import webhook_templates as templates
from crm_adapters.base import Adapter, Contact, HttpClient, HttpResponse, InboundRequest, OutboundContact, Setting
from crm_adapters.errors import (
    AuthRefused,
    ContactNotFound,
    CrmError,
    InvalidPayload,
    MissingContactId,
    PayloadTooLarge,
)
from crm_adapters.parsing import normalise_email, split_tags, stringify_id
from crm_adapters.standard_webhooks import signing_secrets, standard_webhook_signature

TOKEN_EXPIRY_MARGIN_S = 30.0
DEFAULT_TOKEN_LIFETIME_S = 3600.0
SETTINGS_ONLY = "only the settings were checked; nothing was sent (set test_url for a request of your choosing)"


class WebhookConfigError(CrmError):
    """The connection's own settings cannot produce a request (bad template, bad auth): final."""

    error_class = "invalid_config"


def clear_token_cache() -> None:
    webhook_oauth.TOKENS.clear()


class CustomWebhookAdapter(Adapter):
    type: ClassVar[str] = "custom_webhook"
    label: ClassVar[str] = "Custom webhook"
    settings: ClassVar[list[Setting]] = [
        Setting("url", "URL (template)", required=True),
        Setting("method", "HTTP method (GET, POST, PUT, PATCH, DELETE)", default="POST"),
        Setting("headers", "Headers {name: template}", default={}, kind="json"),
        Setting("query", "Query parameters {name: template}", default={}, kind="json"),
        Setting("body", "Body (JSON, strings are templates; empty: the standard envelope)", kind="json"),
        Setting(
            "auth",
            "Authentication (one JSON object, stored encrypted)",
            secret=True,
            default={"type": "none"},
            kind="json",
        ),
        Setting("signing_secret", "Standard Webhooks signing secret (whsec_…)", secret=True),
        Setting("previous_signing_secret", "Previous signing secret (also signed with during a rotation)", secret=True),
        Setting("timeout", "Timeout in seconds", default=10, kind="int"),
        Setting("max_body_bytes", "Largest request body in bytes", default=65536, kind="int"),
        Setting("response_id_path", "Dotted path of the contact id in the JSON answer (optional)"),
        Setting("recipe", "Ready-made request (sync_new_user); method and body set here win", default=""),
        Setting("test_url", "URL that connection test calls (optional; no contact data is sent)", kind="url"),
        Setting("test_method", "HTTP method of the connection test (GET, HEAD, POST, …)", default="GET"),
    ]
    capabilities: ClassVar[frozenset[str]] = frozenset({"custom_fields", "signs_outbound"})

    # -- configuration --

    def __init__(self, config: Mapping[str, Any], http: HttpClient) -> None:
        super().__init__(webhook_recipes.with_recipe(config), http)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> list[str]:
        return webhook_settings.config_problems(config)

    @property
    def method(self) -> str:
        return str(self.setting("method", "POST")).upper()

    @property
    def auth_config(self) -> Mapping[str, Any]:
        auth = self.config.get("auth")
        return auth if isinstance(auth, Mapping) else {"type": "none"}

    # -- inbound --

    def parse(self, request: InboundRequest) -> list[Contact]:
        body: Any = request.json if request.json is not None else dict(request.form)
        if request.has_body and request.json is None and not request.form:
            raise InvalidPayload("body is neither JSON nor a form")
        items = body if isinstance(body, list) else [body]
        if not items or not all(isinstance(item, Mapping) for item in items):
            raise InvalidPayload("expected a JSON object (or a list of objects) describing contacts")
        query_id = request.query.get("contact_id") if len(items) == 1 else None
        return [self._contact_from(item, query_id) for item in items]

    def _contact_from(self, item: Mapping[str, Any], query_contact_id: str | None) -> Contact:
        data = item["contact"] if isinstance(item.get("contact"), Mapping) else item
        contact_id = (
            stringify_id(query_contact_id) or stringify_id(data.get("id")) or stringify_id(data.get("contact_id"))
        )
        if not contact_id:
            raise MissingContactId("no contact id (id or contact_id) in the query string or the body")
        email = normalise_email(data.get("email"))
        crm_fields = {k: v for k, v in data.items() if not isinstance(v, Mapping | list)}
        if email:
            crm_fields["email"] = email
        tags = split_tags(data["tags"]) if "tags" in data and data["tags"] is not None else None
        return Contact(contact_id, email=email, fields=self.to_local_fields(crm_fields), tags=tags, raw=dict(item))

    # -- outbound --

    def check(self) -> str | None:
        """Validate the settings, then make the one real request the owner chose: ``test_method``
        ``test_url`` with the connection's authentication and no contact data (an OAuth
        connection fetches a token first). Without ``test_url`` nothing reaches the target, and
        the answer says so plainly instead of claiming the CRM was reached."""
        problems = self.validate_config(self.config)
        if problems:
            raise WebhookConfigError("; ".join(problems))
        oauth = self.auth_config.get("type") == "oauth2"
        test_url = self.setting("test_url")
        if test_url:
            headers: dict[str, str] = {}
            basic = self._static_auth(headers)
            if oauth:
                headers["Authorization"] = f"Bearer {self._oauth_token()}"
            self.call(str(self.setting("test_method", "GET")).upper(), str(test_url), headers=headers, auth=basic)
            return None
        if oauth:
            self._fetch_token(_token_key(self.auth_config))
            return (
                "the token endpoint accepted the client credentials; the webhook URL was not called "
                "(set test_url for a request of your choosing)"
            )
        return SETTINGS_ONLY

    def find_contact_id(self, email: str) -> str | None:
        return None  # a plain endpoint cannot be searched

    def load_contact(self, contact_id: str) -> Contact:
        raise ContactNotFound("a custom webhook cannot load contacts: send the contact in the payload")

    def load_tags(self, contact_id: str) -> list[str]:
        return []

    def list_tags(self) -> list[str]:
        return []

    def list_fields(self) -> list[str]:
        return []

    def apply_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        """Tags ride in the payload (``{{contact.tags}}``): nothing to send."""

    def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        """Tags ride in the payload: nothing to send."""

    def upsert_contact(self, contact: OutboundContact) -> str | None:
        view = {
            "id": None,
            "email": contact.email,
            "first_name": contact.first_name or contact.fields.get("first_name", ""),
            "last_name": contact.last_name or contact.fields.get("last_name", ""),
            "username": contact.username,
            "tags": list(contact.tags),
            "meta": dict(contact.meta),
            "fields": dict(contact.fields),
            "created_at": contact.created_at,
            "role": contact.role,
            "user_id": contact.user_id,
        }
        event = contact.event
        if event is not None:
            event_view = {"type": event.type, "id": event.id, "occurred_at": event.occurred_at}
        else:
            event_view = self._derived_event("contact.upsert", view)
        response = self.send({"contact": view, "user": view, "event": event_view})
        return self._contact_id_from(response)

    def update_fields(self, contact_id: str, fields: Mapping[str, Any]) -> None:
        """The configured request, with ``{{contact.fields.NAME}}`` holding the new values."""
        view = {
            "id": contact_id,
            "email": fields.get("email"),
            "first_name": fields.get("first_name", ""),
            "last_name": fields.get("last_name", ""),
            "username": fields.get("username", ""),
            "tags": [],
            "meta": {},
            "fields": dict(fields),
            "created_at": "",
            "role": "",
            "user_id": None,
        }
        self.send({"contact": view, "user": view, "event": self._derived_event("contact.updated", view)})

    @staticmethod
    def _derived_event(kind: str, view: Mapping[str, Any]) -> dict[str, str]:
        """Without an event, the id is a digest of the content: retries of the same push share it."""
        digest = hashlib.sha256(json.dumps(view, sort_keys=True, default=str).encode()).hexdigest()[:24]
        return {"type": kind, "id": f"evt_{digest}", "occurred_at": datetime.now(UTC).isoformat()}

    def _contact_id_from(self, response: HttpResponse) -> str | None:
        path = self.setting("response_id_path")
        value: Any = response.json()
        if not path:
            return None
        for part in str(path).split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return stringify_id(value) if not isinstance(value, Mapping | list) else None

    # -- the request --

    def render_request(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """Method, URL, query, headers and body bytes for ``context`` (no auth, no signature)."""
        try:
            url = templates.render_text(str(self.setting("url", "")), context)
            query: dict[str, Any] = {}
            for name, source in (self.config.get("query") or {}).items():
                value = templates.render_typed(source, context) if isinstance(source, str) else source
                if value is not None:
                    query[name] = [_query_text(v) for v in value] if isinstance(value, list) else _query_text(value)
            headers = {
                name: templates.render_text(src, context) for name, src in (self.config.get("headers") or {}).items()
            }
            body: bytes | None = None
            if self.method != "GET":
                configured = self.config.get("body")
                payload = (
                    templates.render_json(configured, context)
                    if configured is not None
                    else {**context["event"], "contact": context["contact"]}
                )
                body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        except templates.TemplateRenderError as exc:
            raise WebhookConfigError(f"a template failed to render: {exc}") from exc
        limit = int(self.setting("max_body_bytes", 65536))
        if body is not None and len(body) > limit:
            raise PayloadTooLarge(f"rendered body is {len(body)} bytes, over max_body_bytes {limit}")
        lowered = {name.lower() for name in headers}
        if body is not None and "content-type" not in lowered:
            headers["Content-Type"] = "application/json"
        if "idempotency-key" not in lowered:
            headers["Idempotency-Key"] = str(context["event"]["id"])
        return {"method": self.method, "url": url, "params": query, "headers": headers, "body": body}

    def send(self, context: Mapping[str, Any]) -> HttpResponse:
        """Render, authenticate, sign and send; one token refresh and resend on an OAuth 401."""
        request = self.render_request(context)
        headers = dict(request["headers"])
        secrets = signing_secrets(self.config)
        if secrets:
            timestamp = int(time.time())
            msg_id = str(context["event"]["id"])
            headers["webhook-id"] = msg_id
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = standard_webhook_signature(
                secrets, msg_id, timestamp, request["body"] or b""
            )
        kind = self.auth_config.get("type", "none")
        basic = self._static_auth(headers)
        sent_token: list[str] = []

        def attempt(refresh: bool) -> HttpResponse:
            if kind == "oauth2":
                sent_token.append(self._oauth_token(refused=sent_token[-1] if refresh else None))
                headers["Authorization"] = f"Bearer {sent_token[-1]}"
            return self.call(
                request["method"],
                request["url"],
                params=request["params"],
                headers=headers,
                data=request["body"],
                auth=basic,
            )

        try:
            return attempt(refresh=False)
        except AuthRefused as exc:
            if kind != "oauth2" or exc.status != 401:
                raise
            return attempt(refresh=True)

    def _static_auth(self, headers: dict[str, str]) -> tuple[str, str] | None:
        """Add a bearer or API-key header to ``headers``; the Basic credentials, if any."""
        auth = self.auth_config
        kind = auth.get("type", "none")
        if kind == "bearer":
            headers["Authorization"] = f"Bearer {auth['token']}"
        elif kind == "api_key":
            headers[str(auth["header"])] = str(auth["value"])
        return (str(auth["username"]), str(auth["password"])) if kind == "basic" else None

    def _oauth_token(self, *, refused: str | None = None) -> str:
        """The connection's client-credentials token, fetched once at a time per process
        (``crm_adapters.webhook_oauth``); ``refused``: the token the target just refused."""
        key = _token_key(self.auth_config)
        return webhook_oauth.TOKENS.token(key, lambda: self._fetch_token(key), refused=refused)

    def _fetch_token(self, key: tuple[str, str, str]) -> tuple[str, float]:
        auth = self.auth_config
        form = {"grant_type": "client_credentials"}
        if key[2]:
            form["scope"] = key[2]
        credentials: tuple[str, str] | None = (key[1], str(auth["client_secret"]))
        if auth.get("client_auth") == "body":
            form.update(client_id=key[1], client_secret=str(auth["client_secret"]))
            credentials = None
        response = self.call("POST", key[0], data=form, auth=credentials, headers={"Accept": "application/json"})
        data = response.json()
        token = data.get("access_token") if isinstance(data, Mapping) else None
        if not isinstance(token, str) or not token:
            raise AuthRefused("the OAuth token endpoint answered without an access_token", status=response.status)
        try:
            lifetime = float(data.get("expires_in") or DEFAULT_TOKEN_LIFETIME_S) - TOKEN_EXPIRY_MARGIN_S
        except (TypeError, ValueError):
            lifetime = DEFAULT_TOKEN_LIFETIME_S - TOKEN_EXPIRY_MARGIN_S
        return token, lifetime


def _token_key(auth: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(auth["token_url"]), str(auth["client_id"]), str(auth.get("scope") or ""))


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)
