"""Mautic adapter.

Settings: ``base_url`` (the Mautic site; the adapter adds ``/api/``), either ``username`` +
``password`` (HTTP Basic; the API's Basic auth must be enabled) or ``access_token`` (OAuth 2,
sent as ``Authorization: Bearer``; wins when both are set), and optionally ``webhook_secret``
(when set, inbound webhooks must carry a valid ``Webhook-Signature``).

OAuth 2 tokens expire (Mautic's access tokens live 60 minutes by default): with
``refresh_token``, ``client_id`` and ``client_secret`` (and optionally ``redirect_uri``, the
one the client was registered with), a 401 is answered by one refresh grant, form
``grant_type=refresh_token, client_id, client_secret, refresh_token[, redirect_uri]`` to
``POST {base_url}/oauth/v2/token``, and the call is retried with the new access token; the new
tokens (Mautic rotates the refresh token too) are stored on the connection. References: Mautic's
OAuth 2 documentation (https://devdocs.mautic.org/en/5.x/rest_api/authentication.html: the
``refresh_token`` grant at ``/oauth/v2/token``) and WP Fusion's
``includes/crms/mautic/class-mautic.php`` 3.47.11 (``handle_http_response`` refreshes on a 401
and retries; ``refresh_token`` posts that form).

API: https://devdocs.mautic.org/en/5.x/rest_api/contacts.html (WP Fusion 3.47.11,
``includes/crms/mautic/class-mautic.php``). ``POST contacts/new`` dedupes on the unique
identifier fields (email by default), so it is our upsert (``add_contact``). Values are written
as ``GET fields/contact`` (https://devdocs.mautic.org/en/5.x/rest_api/fields.html) types them:
dates ``Y-m-d``, booleans 1/0, multiselects as lists (``format_field_value``). Fields are flat aliases
(``firstname``, custom aliases alike). Tags are set through ``PATCH contacts/{id}/edit`` with
``tags``: a name adds (Mautic creates missing tags), ``-name`` removes.

Inbound: webhooks (https://devdocs.mautic.org/en/5.x/webhooks/getting_started.html) post JSON
keyed by event type, each a list of ``{contact, timestamp}`` (older events say ``lead``); every
contact of every list is processed. Fields sit under ``contact.fields.core.NAME.value`` (and
flat under ``contact.fields.all``); tags are ``[{id, tag}]``. The signature is
``Webhook-Signature`` = base64 HMAC-SHA256 of the raw body with the webhook's secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from crm_adapters.base import Adapter, Contact, ContactPage, InboundRequest, OutboundContact, Setting
from crm_adapters.errors import AuthRefused, InvalidPayload, InvalidSignature, MissingContactId
from crm_adapters.field_format import FieldKind, FormatRules
from crm_adapters.oauth_refresh import OAuthRefreshMixin
from crm_adapters.parsing import json_object, normalise_email, request_payload, stringify_id

PAGE_SIZE = 100
CONTACT_KEYS = ("contact", "lead")
# WP Fusion's WPF_Mautic::format_field_value: dates "Y-m-d", multiselects as arrays.
FORMAT_RULES = FormatRules(
    date=lambda moment: moment.strftime("%Y-%m-%d"),
    datetime=lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S"),
    true=1,
    false=0,
)
FIELD_KINDS = {
    "date": FieldKind.DATE,
    "datetime": FieldKind.DATETIME,
    "boolean": FieldKind.CHECKBOX,
    "multiselect": FieldKind.MULTI,
    "number": FieldKind.NUMBER,
}


def _items(listing: Any) -> list[Mapping[str, Any]]:
    """Mautic lists are JSON arrays, or objects keyed by id when PHP kept the keys."""
    values = listing.values() if isinstance(listing, Mapping) else listing or []
    return [item for item in values if isinstance(item, Mapping)]


class MauticAdapter(OAuthRefreshMixin, Adapter):
    type: ClassVar[str] = "mautic"
    label: ClassVar[str] = "Mautic"
    settings: ClassVar[list[Setting]] = [
        Setting("base_url", "Mautic URL", required=True, kind="url"),
        Setting("username", "API username (Basic auth)"),
        Setting("password", "API password (Basic auth)", secret=True),
        Setting("access_token", "OAuth 2 access token", secret=True),
        Setting("refresh_token", "OAuth 2 refresh token", secret=True),
        Setting("client_id", "OAuth 2 client id (public id)"),
        Setting("client_secret", "OAuth 2 client secret", secret=True),
        Setting("redirect_uri", "OAuth 2 redirect URI the client was registered with (optional)", kind="url"),
        Setting("webhook_secret", "Webhook secret (verifies Webhook-Signature)", secret=True),
    ]
    capabilities: ClassVar[frozenset[str]] = frozenset({"tags", "custom_fields", "signed_webhooks", "batches"})
    standard_fields: ClassVar[dict[str, str]] = {"firstname": "first_name", "lastname": "last_name"}
    format_rules: ClassVar[FormatRules | None] = FORMAT_RULES
    text_fields: ClassVar[frozenset[str]] = frozenset({"firstname", "lastname", "email"})

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> list[str]:
        if config.get("password") and not config.get("username"):
            return ["mautic: username is required with password"]
        return []

    # -- inbound --

    def verify(self, request: InboundRequest) -> None:
        secret = self.setting("webhook_secret")
        if not secret:
            return
        given = request.header("Webhook-Signature")
        if not given:
            raise InvalidSignature("Webhook-Signature is required")
        expected = base64.b64encode(hmac.new(str(secret).encode(), request.body, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, given.strip()):
            raise InvalidSignature("Webhook-Signature does not match")

    def parse(self, request: InboundRequest) -> list[Contact]:
        payload = request_payload(request)
        if not isinstance(payload, Mapping):
            raise InvalidPayload("expected a JSON object keyed by event type")
        found: dict[str, Contact] = {}
        for key, events in payload.items():
            if not (str(key).startswith("mautic.") and isinstance(events, list)):
                continue
            for event in events:
                entity = next((event[k] for k in CONTACT_KEYS if isinstance(event, Mapping) and k in event), None)
                if isinstance(entity, Mapping) and stringify_id(entity.get("id")):
                    contact = self._contact_from(entity)
                    found[str(contact.contact_id)] = contact
        query_id = stringify_id(request.query.get("contact_id"))
        if found:
            contacts = list(found.values())
            if query_id and len(contacts) == 1:
                contacts[0].contact_id = query_id  # the query wins for one contact; a batch keeps its ids
            return contacts
        # Not an event batch: one contact, posted whole, wrapped, or only named by the query.
        entity = next((payload[k] for k in CONTACT_KEYS if isinstance(payload.get(k), Mapping)), payload)
        contact = self._contact_from(entity)
        contact.contact_id = query_id or contact.contact_id
        if not contact.contact_id:
            raise MissingContactId("no contact id in the query string or the payload")
        return [contact]

    def _contact_from(self, entity: Mapping[str, Any]) -> Contact:
        crm_fields = self._flat_fields(entity)
        email = normalise_email(crm_fields.get("email"))
        if email:
            crm_fields["email"] = email
        tags = None
        if isinstance(entity.get("tags"), list | Mapping):
            tags = [str(t.get("tag")) for t in _items(entity["tags"]) if t.get("tag")]
        return Contact(
            contact_id=stringify_id(entity.get("id")),
            email=email,
            fields=self.local_fields_from(crm_fields),
            tags=tags,
            raw=dict(entity),
        )

    @staticmethod
    def _flat_fields(entity: Mapping[str, Any]) -> dict[str, Any]:
        """Field alias → value from ``fields.all``, else every group's ``NAME.value``, else a flat
        entity (a form post or a minimal contact)."""
        fields = entity.get("fields")
        if not isinstance(fields, Mapping):
            return {k: v for k, v in entity.items() if not isinstance(v, Mapping | list)}
        if isinstance(fields.get("all"), Mapping):
            return {k: v for k, v in fields["all"].items() if not isinstance(v, Mapping | list)}
        flat: dict[str, Any] = {}
        for group in fields.values():
            if isinstance(group, Mapping):
                for alias, field in group.items():
                    if isinstance(field, Mapping) and "value" in field:
                        flat.setdefault(alias, field["value"])
        return flat

    # -- API plumbing --

    @property
    def api_base(self) -> str:
        return str(self.setting("base_url", "")).rstrip("/") + "/api/"

    @property
    def token_url(self) -> str:
        return str(self.setting("base_url", "")).rstrip("/") + "/oauth/v2/token"

    def refresh_form_extra(self) -> dict[str, str]:
        uri = self.setting("redirect_uri")
        return {"redirect_uri": str(uri)} if uri else {}

    def stand_in_answer(self, method: str, url: str, body: str) -> tuple[int, Any] | None:
        """Dry run: ``contacts/new`` answers ``{"contact": {"id", "fields": {"all": …}}}`` (201
        for a new contact, as the contacts API documents); the rest a plain ``200 {}``."""
        if method == "POST" and url.endswith("/api/contacts/new"):
            return 201, {"contact": {"id": 1, "fields": {"all": {"id": 1, **json_object(body)}}}}
        return None

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self._send(method, path, **kwargs)
        except AuthRefused as exc:
            # An expired or invalid Bearer token is a 401 (class-mautic.php's handle_http_response).
            if not (self.setting("access_token") and exc.status == 401 and self.refresh_access_token()):
                raise
            return self._send(method, path, **kwargs)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        token = self.setting("access_token")
        if token:
            kwargs["headers"] = {"Authorization": f"Bearer {token}"}
        else:
            kwargs["auth"] = (str(self.setting("username", "")), str(self.setting("password", "")))
        return self.call(method, self.api_base + path, **kwargs).json() or {}

    def _paged(self, path: str, key: str) -> list[Mapping[str, Any]]:
        items: list[Mapping[str, Any]] = []
        while True:
            data = self._request("GET", path, params={"start": len(items), "limit": PAGE_SIZE})
            page = _items(data.get(key))
            items.extend(page)
            if not page or len(items) >= int(data.get("total") or 0):
                return items

    # -- API --

    def check(self) -> None:
        self._request("GET", "contacts", params={"limit": 1, "minimal": "true"})

    def find_contact_id(self, email: str) -> str | None:
        data = self._request("GET", "contacts", params={"search": f"email:{email}", "limit": 5})
        for contact in _items(data.get("contacts")):
            if normalise_email(self._flat_fields(contact).get("email")) == normalise_email(email):
                return stringify_id(contact.get("id"))
        return None

    def load_contact(self, contact_id: str) -> Contact:
        entity = self._request("GET", f"contacts/{contact_id}").get("contact")
        if not isinstance(entity, Mapping):
            raise InvalidPayload("Mautic answered without a contact")
        return self._contact_from(entity)

    def load_tags(self, contact_id: str) -> list[str]:
        return self.load_contact(contact_id).tags or []

    def upsert_contact(self, contact: OutboundContact) -> str | None:
        body = {
            **self.formatted(self.with_native_names(contact.fields)),
            "email": contact.email,
            "overwriteWithBlank": False,
        }
        data = self._request("POST", "contacts/new", json=body)
        contact_id = stringify_id((data.get("contact") or {}).get("id"))
        if not contact_id:
            raise InvalidPayload("Mautic answered without the contact's id")
        return contact_id

    def update_fields(self, contact_id: str, fields: Mapping[str, Any]) -> str | None:
        if fields:
            self._request("PATCH", f"contacts/{contact_id}/edit", json=self.formatted(self.with_native_names(fields)))
        return None

    def apply_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        if tags:
            self._request("PATCH", f"contacts/{contact_id}/edit", json={"tags": list(tags)})

    def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        if tags:
            self._request("PATCH", f"contacts/{contact_id}/edit", json={"tags": [f"-{name}" for name in tags]})

    def list_tags(self) -> list[str]:
        return [str(tag.get("tag")) for tag in self._paged("tags", "tags") if tag.get("tag")]

    def list_fields(self) -> list[str]:
        return [str(f.get("alias")) for f in self._paged("fields/contact", "fields") if f.get("alias")]

    def field_kinds(self) -> dict[str, FieldKind]:
        """Contact fields by alias, from their ``type``
        (https://devdocs.mautic.org/en/5.x/rest_api/fields.html)."""
        return {
            str(f["alias"]): FIELD_KINDS.get(str(f.get("type")), FieldKind.TEXT)
            for f in self._paged("fields/contact", "fields")
            if f.get("alias")
        }

    # -- listing (batch import and resync) --

    def list_contacts(self, tag: str | None = None, cursor: str | None = None) -> ContactPage:
        """``GET contacts?search=tag:NAME&start=N&limit=100`` (every contact without a tag;
        ``total`` counts them all). Contacts come keyed by id, with their tags."""
        start = int(cursor) if cursor else 0
        params: dict[str, Any] = {"start": start, "limit": PAGE_SIZE, "orderBy": "id", "orderByDir": "asc"}
        if tag:
            params["search"] = f'tag:"{tag}"' if " " in tag else f"tag:{tag}"
        data = self._request("GET", "contacts", params=params)
        contacts = [self._contact_from(entity) for entity in _items(data.get("contacts")) if entity.get("id")]
        total = int(data.get("total") or 0)
        following = start + PAGE_SIZE
        return ContactPage(contacts, str(following) if contacts and following < total else None, total)
