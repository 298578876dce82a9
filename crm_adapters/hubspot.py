"""HubSpot adapter (CRM v3 objects API, private-app token).

Settings: ``access_token`` (a private app's token, sent as ``Authorization: Bearer``),
``base_url`` [https://api.hubapi.com], and optionally ``client_secret`` (the app's secret: when
set, inbound requests must carry a valid ``X-HubSpot-Signature-v3``).

API followed, call by call (docs page; the WP Fusion 3.47.11 method of
``includes/crms/hubspot/class-hubspot.php`` doing the same):
- ``find_contact_id``: ``GET …/contacts/{email}?idProperty=email``
  (https://developers.hubspot.com/docs/api/crm/contacts; ``get_contact_id``): consistent at once,
  where the search endpoint lags behind recent writes;
- ``load_contact``/``upsert_contact``/``update_fields``: ``GET``/``POST``/``PATCH …/contacts``
  (same page; ``load_contact``, ``add_contact``, ``update_contact``); a create that races another
  answers 409 "Existing ID: N" and becomes an update (``handle_http_response``). Values are
  written as the property's type says (``crm_adapters.field_format``; ``format_field_value``),
  from ``GET /crm/v3/properties/contacts`` (https://developers.hubspot.com/docs/api/crm/properties;
  ``sync_crm_fields``), read only when a non-standard property goes out;
- tags: HubSpot has none, so contact lists that take memberships serve as tags, as in WP Fusion
  (``sync_tags_v3``): ``crm_adapters.hubspot_lists``, whose docstring names each call;
- 429: ``Retry-After`` is in seconds (``handle_http_response``: "Honor the Retry-After header
  (seconds)"); a missing contact is a 404, raised as ``ContactNotFound`` so the push path can
  find the contact again by email (``WPF_CRM_Base::handle_not_found_error``);
- request signatures v3: https://developers.hubspot.com/docs/api/webhooks/validating-requests
  (base64 HMAC-SHA256 over method + URI + body + timestamp, rejected when older than 5 minutes).

Inbound: a Webhooks API delivery is a JSON array of events (every ``objectId`` of a contact event
is a contact to process: legacy ``contact.*`` events, or generic ``object.*`` ones with
``objectTypeId`` ``0-1``); a workflow "Send a webhook" posts one contact, in the legacy shape (``vid``,
``properties.NAME.value``) or flat (``hs_object_id`` and property values). ``contact_id`` in the
query string replaces the id of a payload naming one contact; a batch of several keeps its ids.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

from crm_adapters.base import (
    Adapter,
    Contact,
    ContactPage,
    HttpResponse,
    InboundRequest,
    OutboundContact,
    RateLimit,
    Setting,
)
from crm_adapters.errors import (
    ContactNotFound,
    CrmRejected,
    DuplicateContact,
    InvalidPayload,
    InvalidSignature,
    MissingContactId,
)
from crm_adapters.field_format import FieldKind, FormatRules
from crm_adapters.hubspot_lists import HubSpotLists
from crm_adapters.hubspot_stand_ins import HubSpotStandIns
from crm_adapters.hubspot_types import CONTACT_OBJECT_TYPE, FORMAT_RULES, property_kind
from crm_adapters.parsing import normalise_email, parse_retry_after, request_payload, stringify_id

DEFAULT_BASE_URL = "https://api.hubapi.com"
CONTACTS = "/crm/v3/objects/contacts"
SIGNATURE_MAX_AGE_S = 300
PAGE_SIZE = 100
EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")
# HubSpot's v3 scheme signs the URI with these escapes decoded (see the validation doc).
URI_DECODES = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip


def _is_contact_event(event: Mapping[str, Any]) -> bool:
    """A contact event in either form: legacy ``contact.propertyChange`` …, or the generic
    ``object.propertyChange`` … that newer subscriptions send with ``objectTypeId: "0-1"``
    (https://developers.hubspot.com/changelog/public-beta-generic-webhook-subscriptions)."""
    kind = str(event.get("subscriptionType", "contact."))
    object_type = event.get("objectTypeId")
    if kind.startswith("contact."):
        return object_type is None or str(object_type) == CONTACT_OBJECT_TYPE
    return kind.startswith("object.") and str(object_type) == CONTACT_OBJECT_TYPE


def _property_value(value: Any) -> Any:
    """Legacy payloads wrap values (``{"value": …, "versions": […]}``); newer ones do not."""
    return value.get("value") if isinstance(value, Mapping) else value


class HubSpotAdapter(Adapter):
    type: ClassVar[str] = "hubspot"
    label: ClassVar[str] = "HubSpot"
    settings: ClassVar[list[Setting]] = [
        Setting("access_token", "Private app access token", required=True, secret=True),
        Setting("base_url", "API base URL", default=DEFAULT_BASE_URL, kind="url"),
        Setting("client_secret", "App client secret (verifies webhook signatures)", secret=True),
    ]
    capabilities: ClassVar[frozenset[str]] = frozenset({"tags", "custom_fields", "signed_webhooks", "batches"})
    standard_fields: ClassVar[dict[str, str]] = {"firstname": "first_name", "lastname": "last_name"}
    format_rules: ClassVar[FormatRules | None] = FORMAT_RULES
    text_fields: ClassVar[frozenset[str]] = frozenset({"email", "firstname", "lastname"})

    # -- inbound --

    def verify(self, request: InboundRequest) -> None:
        secret = self.setting("client_secret")
        if not secret:
            return
        signature = request.header("X-HubSpot-Signature-v3")
        timestamp = request.header("X-HubSpot-Request-Timestamp")
        if not signature or not timestamp:
            raise InvalidSignature("X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required")
        try:
            sent_at = int(timestamp) / 1000
        except ValueError:
            raise InvalidSignature("X-HubSpot-Request-Timestamp is not a number") from None
        if abs(time.time() - sent_at) > SIGNATURE_MAX_AGE_S:
            raise InvalidSignature("the signature is more than 5 minutes old")
        if not request.url:
            raise InvalidSignature("the request URL is unknown, so the signature cannot be checked")
        decoded = request.url
        for escaped, char in URI_DECODES.items():
            decoded = decoded.replace(escaped, char).replace(escaped.lower(), char)
        body = request.body.decode("utf-8", errors="replace")
        for uri in dict.fromkeys((request.url, decoded)):
            message = f"{request.method.upper()}{uri}{body}{timestamp}".encode()
            expected = base64.b64encode(hmac.new(str(secret).encode(), message, hashlib.sha256).digest()).decode()
            if hmac.compare_digest(expected, signature.strip()):
                return
        raise InvalidSignature("X-HubSpot-Signature-v3 does not match")

    def parse(self, request: InboundRequest) -> list[Contact]:
        payload = request_payload(request)
        query_id = stringify_id(request.query.get("contact_id"))
        if isinstance(payload, list):
            contacts = self._contacts_from_events(payload)
            if not contacts:
                raise MissingContactId("the event batch names no contact")
            if query_id and len(contacts) == 1:
                contacts[0].contact_id = query_id
            return contacts
        if not isinstance(payload, Mapping):
            raise InvalidPayload("expected a JSON object or an array of events")
        contact = self._contact_from_object(payload)
        contact.contact_id = query_id or contact.contact_id
        if not contact.contact_id:
            raise MissingContactId("no contact id in the query string or the payload (vid, hs_object_id)")
        return [contact]

    def _contacts_from_events(self, events: list[Any]) -> list[Contact]:
        """One contact per distinct ``objectId``, in order; a changed property is kept as a field."""
        by_id: dict[str, dict[str, Any]] = {}
        for event in events:
            if not isinstance(event, Mapping):
                raise InvalidPayload("every item of a HubSpot batch must be an event object")
            if not _is_contact_event(event):
                continue
            contact_id = stringify_id(event.get("objectId"))
            if not contact_id:
                continue
            properties = by_id.setdefault(contact_id, {})
            if event.get("propertyName"):
                properties[str(event["propertyName"])] = event.get("propertyValue")
        return [self._contact(contact_id, properties, raw=events) for contact_id, properties in by_id.items()]

    def _contact_from_object(self, payload: Mapping[str, Any]) -> Contact:
        properties = payload.get("properties") if isinstance(payload.get("properties"), Mapping) else payload
        flat = {str(k): _property_value(v) for k, v in properties.items() if not isinstance(_property_value(v), list)}
        contact_id = None
        for key in ("vid", "canonical-vid", "objectId", "hs_object_id", "id"):
            contact_id = stringify_id(_property_value(payload.get(key))) or stringify_id(flat.get(key))
            if contact_id:
                break
        return self._contact(contact_id, flat, raw=dict(payload))

    def _contact(self, contact_id: str | None, properties: Mapping[str, Any], *, raw: Any) -> Contact:
        crm_fields = {k: v for k, v in properties.items() if not isinstance(v, Mapping | list)}
        email = normalise_email(crm_fields.get("email"))
        if email:
            crm_fields["email"] = email
        return Contact(
            contact_id=contact_id,
            email=email,
            fields=self.local_fields_from(crm_fields),
            tags=None,  # list memberships never ride along: load_tags asks for them
            raw=raw,
        )

    # -- API plumbing --

    @property
    def api_base(self) -> str:
        return str(self.setting("base_url", DEFAULT_BASE_URL)).rstrip("/")

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.setting('access_token', '')}", "Accept": "application/json"}
        return self.call(method, self.api_base + path, headers=headers, **kwargs).json() or {}

    def retry_after_seconds(self, response: HttpResponse) -> float | None:
        """``Retry-After`` is in seconds, as HTTP defines it and as WP Fusion reads HubSpot's
        (``WPF_HubSpot::handle_http_response``). The "recorded in milliseconds" in HubSpot's
        knowledge base (https://knowledge.hubspot.com/workflows/how-do-i-use-webhooks-with-hubspot-workflows)
        is about the header a *workflow webhook* reads from its receiver's 429s, not HubSpot's
        own. Without it, a 429 with ``X-HubSpot-RateLimit-Remaining: 0`` waits one
        ``…-Interval-Milliseconds`` window."""
        value = response.header("Retry-After")
        if value:
            return parse_retry_after(value)
        interval = response.header("X-HubSpot-RateLimit-Interval-Milliseconds")
        if interval and response.header("X-HubSpot-RateLimit-Remaining") == "0":
            try:
                return float(interval) / 1000
            except ValueError:
                return None
        return None

    @functools.cached_property
    def _stand_ins(self) -> HubSpotStandIns:
        return HubSpotStandIns()

    def stand_in_answer(self, method: str, url: str, body: str) -> tuple[int, Any] | None:
        """Dry-run answers in the API's shapes (``crm_adapters.hubspot_stand_ins``)."""
        return self._stand_ins.answer(method, url, body)

    # -- API --

    def check(self) -> None:
        self._request("GET", CONTACTS, params={"limit": 1})

    def find_contact_id(self, email: str) -> str | None:
        try:
            data = self._request(
                "GET", f"{CONTACTS}/{quote(email, safe='@')}", params={"idProperty": "email", "properties": "email"}
            )
        except ContactNotFound:
            return None
        return stringify_id(data.get("id"))

    def _wanted_properties(self) -> list[str]:
        native = self.with_native_names({crm: None for crm in self.field_map.values()})
        return list(dict.fromkeys(["email", "firstname", "lastname", *native]))

    def load_contact(self, contact_id: str) -> Contact:
        data = self._request(
            "GET", f"{CONTACTS}/{contact_id}", params={"properties": ",".join(self._wanted_properties())}
        )
        properties = data.get("properties")
        if not isinstance(properties, Mapping):
            raise InvalidPayload("HubSpot answered without contact properties")
        return self._contact(stringify_id(data.get("id")) or contact_id, properties, raw=dict(data))

    def upsert_contact(self, contact: OutboundContact) -> str | None:
        properties = {**self.formatted(self.with_native_names(contact.fields)), "email": contact.email}
        existing = self.find_contact_id(contact.email)
        if existing:
            self._patch(existing, properties)
            return existing
        try:
            data = self._request("POST", CONTACTS, json={"properties": properties})
        except CrmRejected as exc:
            if exc.status != 409:
                raise
            match = EXISTING_ID.search(exc.body or "")
            if not match:
                raise DuplicateContact(exc.message, status=exc.status, body=exc.body) from exc
            self._patch(match.group(1), properties)  # created meanwhile: update, never duplicate
            return match.group(1)
        contact_id = stringify_id(data.get("id"))
        if not contact_id:
            raise InvalidPayload("HubSpot answered without the contact's id")
        return contact_id

    def update_fields(self, contact_id: str, fields: Mapping[str, Any]) -> str | None:
        if fields:
            self._patch(contact_id, self.formatted(self.with_native_names(fields)))
        return None

    def _patch(self, contact_id: str, properties: Mapping[str, Any]) -> None:
        self._request("PATCH", f"{CONTACTS}/{contact_id}", json={"properties": dict(properties)})

    # -- tags (static contact lists: ``crm_adapters.hubspot_lists``) --

    @functools.cached_property
    def _lists(self) -> HubSpotLists:
        return HubSpotLists(self._request)

    def load_tags(self, contact_id: str) -> list[str]:
        return self._lists.tags_of(contact_id)

    def apply_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        if tags:
            self._lists.add(contact_id, tags)

    def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        if tags:
            self._lists.remove(contact_id, tags)

    def list_tags(self) -> list[str]:
        return [str(item.get("name")) for item in self._lists.tag_lists() if item.get("name")]

    def _properties(self) -> list[Mapping[str, Any]]:
        data = self._request("GET", "/crm/v3/properties/contacts")
        return [p for p in data.get("results") or [] if isinstance(p, Mapping) and p.get("name")]

    def list_fields(self) -> list[str]:
        return [str(p["name"]) for p in self._properties()]

    def field_kinds(self) -> dict[str, FieldKind]:
        """From the contact properties' ``type`` and ``fieldType``
        (https://developers.hubspot.com/docs/api/crm/properties)."""
        return {str(p["name"]): property_kind(p) for p in self._properties()}

    # -- listing (batch import and resync) and the rate limit they keep under --

    # https://developers.hubspot.com/docs/api/usage-details: 100 requests per 10 seconds per
    # private app (Free and Starter).
    rate_limit: ClassVar[RateLimit | None] = RateLimit(requests=100, seconds=10)

    def list_contacts(self, tag: str | None = None, cursor: str | None = None) -> ContactPage:
        """Every contact: ``GET /crm/v3/objects/contacts?limit=100&after=…`` (cursor paging,
        ``paging.next.after``). A tag is a static list: ``GET /crm/v3/lists/{id}/memberships``
        pages the member ids (same ``after`` cursors), then one ``POST
        /crm/v3/objects/contacts/batch/read`` loads them. The cursor carries the list id
        (``"list_id|after"``). Listings carry no list memberships: tags are loaded per contact."""
        list_id, _, after = (cursor or "").rpartition("|") if cursor else ("", "", "")
        properties = self._wanted_properties()
        if tag and not list_id:
            ids = self._lists.ids([tag], create_missing=False)
            if not ids:
                return ContactPage([], None, 0)
            list_id = ids[0]
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        if after:
            params["after"] = after
        if list_id:
            data = self._request("GET", f"/crm/v3/lists/{list_id}/memberships", params=params)
            ids = [stringify_id(m.get("recordId")) for m in data.get("results") or [] if isinstance(m, Mapping)]
            objects: list[Any] = []
            if ids:
                read = self._request(
                    "POST",
                    f"{CONTACTS}/batch/read",
                    json={"properties": properties, "inputs": [{"id": i} for i in ids if i]},
                )
                objects = read.get("results") or []
        else:
            data = self._request("GET", CONTACTS, params={**params, "properties": ",".join(properties)})
            objects = data.get("results") or []
        contacts = [
            self._contact(stringify_id(o.get("id")), o.get("properties") or {}, raw=dict(o))
            for o in objects
            if isinstance(o, Mapping) and o.get("id")
        ]
        following = ((data.get("paging") or {}).get("next") or {}).get("after")
        next_cursor = f"{list_id}|{following}" if following else None
        return ContactPage(contacts, next_cursor, None)
