"""ActiveCampaign adapter.

Settings: ``base_url`` (the account's API URL, e.g. ``https://ACCOUNT.api-us1.com``; the adapter
adds ``/api/3/``) and ``api_key`` (sent as the ``Api-Token`` header).

API v3: https://developers.activecampaign.com/reference . Call by call (the WP Fusion 3.47.11
method of ``includes/crms/activecampaign/class-activecampaign.php`` doing the same in brackets):

- ``GET contacts?email=`` finds a contact (``get_contact_id``); ``POST contact/sync`` creates or
  updates by email in one call, so a push never duplicates (``add_contact``);
  ``PUT contacts/{id}`` updates (``update_contact``);
- ``GET contacts/{id}`` loads (``load_contact``). A deleted contact still answers 200 with its
  email turned into ``deleted+N@example.com`` (WP Fusion 3.47.10): it is a ``ContactNotFound``,
  there and in the answer of ``PUT contacts/{id}``, so the push path finds the contact again;
- custom fields (``GET fields``, read once per adapter; ``sync_crm_fields``) are set as
  ``fieldValues: [{field: ID, value}]``, named in the field map by personalisation tag
  (``PASSWORD``), title or numeric id, and written as their type says (dates
  ``Y-m-d H:i:s``, several values joined with ``||``: ``format_field_value``);
- listings are offset-paged, 20 items unless ``limit`` (at most 100) says otherwise
  (https://developers.activecampaign.com/reference/pagination): every page of ``GET tags``,
  ``GET tags?search=`` (which matches names *containing* the text) and
  ``GET contacts/{id}/contactTags`` is read; a tag is created (``POST tags``) only when no page
  holds its exact name, then linked (``POST contactTags``; WP Fusion uses the v1 API's
  ``contact_tag_add`` by name instead);
- a missing contact is a 404 ``{"message": "No Result found for Subscriber with id N"}``.

Inbound: ActiveCampaign webhooks are form-encoded with PHP bracket keys (``contact[email]=…``);
``contact[tags]`` is one string joined by ", ".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from crm_adapters.activecampaign_stand_ins import ActiveCampaignStandIns
from crm_adapters.base import (
    Adapter,
    Contact,
    ContactPage,
    HttpClient,
    InboundRequest,
    OutboundContact,
    RateLimit,
    Setting,
)
from crm_adapters.errors import ContactNotFound, CrmRejected, InvalidPayload, MissingContactId
from crm_adapters.field_format import FieldKind, FormatRules
from crm_adapters.parsing import normalise_email, request_payload, split_tags, stringify_id

PAGE_SIZE = 100
# contact/sync and PUT contacts/{id} take these as top-level contact properties.
CONTACT_PROPERTIES = ("email", "firstName", "lastName", "phone")
# ActiveCampaign keeps a deleted contact's id answering 200, with this email (WP Fusion 3.47.10,
# WPF_ActiveCampaign::load_contact): it is a contact that no longer exists.
DELETED_EMAIL = re.compile(r"^deleted\+\d+@", re.IGNORECASE)
FIELD_KINDS = {
    "date": FieldKind.DATE,
    "datetime": FieldKind.DATETIME,
    "checkbox": FieldKind.MULTI,
    "listbox": FieldKind.MULTI,
}


def _ac_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


# WP Fusion's WPF_ActiveCampaign::format_field_value: dates "Y-m-d H:i:s" (UTC), arrays "||".
FORMAT_RULES = FormatRules(date=_ac_time, datetime=_ac_time, multi_separator="||", list_separator="||")


def _deleted(contact: Any) -> bool:
    return isinstance(contact, Mapping) and bool(DELETED_EMAIL.match(str(contact.get("email") or "")))


class ActiveCampaignAdapter(Adapter):
    type: ClassVar[str] = "activecampaign"
    label: ClassVar[str] = "ActiveCampaign"
    settings: ClassVar[list[Setting]] = [
        Setting("base_url", "API URL", required=True, kind="url"),
        Setting("api_key", "API key", required=True, secret=True),
    ]
    capabilities: ClassVar[frozenset[str]] = frozenset({"tags", "custom_fields"})
    standard_fields: ClassVar[dict[str, str]] = {"firstName": "first_name", "lastName": "last_name"}
    format_rules: ClassVar[FormatRules | None] = FORMAT_RULES
    text_fields: ClassVar[frozenset[str]] = frozenset(CONTACT_PROPERTIES)

    def __init__(self, config: Mapping[str, Any], http: HttpClient) -> None:
        super().__init__(config, http)
        self._fields_cache: list[Mapping[str, Any]] | None = None  # the custom fields, read once

    # -- inbound --

    def parse(self, request: InboundRequest) -> list[Contact]:
        source = request_payload(request)
        if not isinstance(source, Mapping):
            raise InvalidPayload("expected a form with contact[...] fields")
        contact = source.get("contact") if isinstance(source.get("contact"), Mapping) else {}
        contact_id = stringify_id(request.query.get("contact_id")) or stringify_id(contact.get("id"))
        if not contact_id:
            raise MissingContactId("no contact id in the query string or contact[id]")
        crm_fields = {k: v for k, v in contact.items() if not isinstance(v, Mapping | list) and k != "tags"}
        if isinstance(contact.get("fields"), Mapping):
            crm_fields.update(contact["fields"])
        email = normalise_email(contact.get("email"))
        if email:
            crm_fields["email"] = email
        tags = split_tags(contact["tags"]) if "tags" in contact else None
        return [
            Contact(
                contact_id=contact_id,
                email=email,
                fields=self.local_fields_from(crm_fields),
                tags=tags,
                raw=dict(source),
            )
        ]

    # -- API plumbing --

    @property
    def api_base(self) -> str:
        return str(self.setting("base_url", "")).rstrip("/") + "/api/3/"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Api-Token": str(self.setting("api_key", "")), "Accept": "application/json"}
        return self.call(method, self.api_base + path, headers=headers, **kwargs).json() or {}

    def _paged(self, path: str, key: str, params: Mapping[str, Any] | None = None) -> list[Mapping[str, Any]]:
        """Every item of an offset-paginated listing (https://developers.activecampaign.com/reference/pagination:
        20 items unless ``limit`` says more, at most 100). ``meta.total`` says when to stop; a
        listing without it (``contactTags``) stops at its first short page."""
        items: list[Mapping[str, Any]] = []
        seen: set[Any] = set()
        offset = 0
        while True:
            data = self._request("GET", path, params={**(params or {}), "limit": PAGE_SIZE, "offset": offset})
            page = [item for item in data.get(key) or [] if isinstance(item, Mapping)]
            fresh = [item for item in page if item.get("id") is None or item.get("id") not in seen]
            items.extend(fresh)
            seen.update(item.get("id") for item in fresh)
            total = (data.get("meta") or {}).get("total")
            offset += PAGE_SIZE
            if len(page) < PAGE_SIZE or not fresh or (total is not None and offset >= int(total)):
                return items  # a short page, a page already seen (offset ignored), or all of them

    @functools.cached_property
    def _stand_ins(self) -> ActiveCampaignStandIns:
        return ActiveCampaignStandIns()

    def stand_in_answer(self, method: str, url: str, body: str) -> tuple[int, Any] | None:
        """Dry-run answers in the API's shapes (``crm_adapters.activecampaign_stand_ins``)."""
        return self._stand_ins.answer(method, url, body)

    # -- API --

    def check(self) -> None:
        self._request("GET", "users/me")

    def find_contact_id(self, email: str) -> str | None:
        data = self._request("GET", "contacts", params={"email": email})
        for contact in data.get("contacts") or []:
            if normalise_email(contact.get("email")) == normalise_email(email):
                return stringify_id(contact.get("id"))
        return None

    def load_contact(self, contact_id: str) -> Contact:
        """The contact's properties and custom field values; tags are loaded by ``load_tags``
        (the contact resource only carries contactTag ids)."""
        data = self._request("GET", f"contacts/{contact_id}")
        contact = data.get("contact")
        if not isinstance(contact, Mapping):
            raise InvalidPayload("ActiveCampaign answered without a contact object")
        self._raise_if_deleted(contact_id, contact)
        crm_fields: dict[str, Any] = {k: v for k, v in contact.items() if not isinstance(v, Mapping | list)}
        values = [v for v in data.get("fieldValues") or [] if isinstance(v, Mapping)]
        if values and self._wants_custom_fields():
            names = {str(f.get("id")): f for f in self._custom_fields()}
            for value in values:
                field = names.get(str(value.get("field")))
                if field:
                    crm_fields.setdefault(str(field.get("perstag") or field.get("title")), value.get("value"))
        email = normalise_email(contact.get("email"))
        if email:
            crm_fields["email"] = email
        return Contact(
            contact_id=stringify_id(contact.get("id")) or contact_id,
            email=email,
            fields=self.local_fields_from(crm_fields),
            tags=None,
            raw=dict(data),
        )

    def _wants_custom_fields(self) -> bool:
        known = set(CONTACT_PROPERTIES) | set(self.standard_fields.values())
        return any(crm not in known for crm in self.field_map.values())

    @staticmethod
    def _raise_if_deleted(contact_id: str, contact: Any) -> None:
        if _deleted(contact):
            raise ContactNotFound(
                f"ActiveCampaign contact {contact_id} was deleted (its email is now {contact.get('email')})",
                status=200,
            )

    def _contact_tags(self, contact_id: str) -> list[Mapping[str, Any]]:
        """Every ``contactTag`` link of the contact (the listing is paged like any other)."""
        return self._paged(f"contacts/{contact_id}/contactTags", "contactTags")

    def load_tags(self, contact_id: str) -> list[str]:
        tag_ids = [str(link.get("tag")) for link in self._contact_tags(contact_id)]
        if not tag_ids:
            return []
        names = {str(tag.get("id")): str(tag.get("tag")) for tag in self._paged("tags", "tags")}
        return [names[tag_id] for tag_id in tag_ids if tag_id in names]

    def upsert_contact(self, contact: OutboundContact) -> str | None:
        body = self._contact_body({**contact.fields, "email": contact.email})
        data = self._request("POST", "contact/sync", json={"contact": body})
        contact_id = stringify_id((data.get("contact") or {}).get("id"))
        if not contact_id:
            raise InvalidPayload("ActiveCampaign answered without the contact's id")
        return contact_id

    def update_fields(self, contact_id: str, fields: Mapping[str, Any]) -> str | None:
        body = self._contact_body(fields)
        if body:
            data = self._request("PUT", f"contacts/{contact_id}", json={"contact": body})
            self._raise_if_deleted(contact_id, data.get("contact"))
        return None

    def _contact_body(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        native = self.formatted(self.with_native_names(fields))
        body: dict[str, Any] = {k: v for k, v in native.items() if k in CONTACT_PROPERTIES}
        custom = {k: v for k, v in native.items() if k not in CONTACT_PROPERTIES}
        if custom:
            ids = self._custom_field_ids()
            values = []
            for name, value in custom.items():
                field_id = ids.get(name.lower()) or (name if name.isdigit() else None)
                if field_id is None:
                    raise CrmRejected(f"ActiveCampaign has no custom field {name!r}")
                values.append({"field": field_id, "value": value})
            body["fieldValues"] = values
        return body

    def _custom_fields(self) -> list[Mapping[str, Any]]:
        if self._fields_cache is None:
            self._fields_cache = self._paged("fields", "fields")
        return self._fields_cache

    def field_kinds(self) -> dict[str, FieldKind]:
        """Custom fields by personalisation tag, title and id, from their ``type``."""
        kinds: dict[str, FieldKind] = {}
        for field in self._custom_fields():
            kind = FIELD_KINDS.get(str(field.get("type", "")).lower(), FieldKind.TEXT)
            for key in (field.get("perstag"), field.get("title"), field.get("id")):
                if key:
                    kinds.setdefault(str(key), kind)
                    kinds.setdefault(str(key).lower(), kind)
        return kinds

    def _custom_field_ids(self) -> dict[str, str]:
        ids: dict[str, str] = {}
        for field in self._custom_fields():
            for key in (field.get("perstag"), field.get("title")):
                if key:
                    ids.setdefault(str(key).lower(), str(field.get("id")))
        return ids

    # -- tags --

    def _find_tag_id(self, name: str) -> str | None:
        """``tags?search=`` matches tags *containing* the text, 20 at a time by default: every
        page is read before deciding the tag is missing (creating it again is refused)."""
        for tag in self._paged("tags", "tags", {"search": name}):
            if str(tag.get("tag", "")).lower() == name.lower():
                return stringify_id(tag.get("id"))
        return None

    def apply_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        for name in tags:
            tag_id = self._find_tag_id(name)
            if tag_id is None:
                created = self._request(
                    "POST", "tags", json={"tag": {"tag": name, "tagType": "contact", "description": ""}}
                )
                tag_id = stringify_id((created.get("tag") or {}).get("id"))
            self._request("POST", "contactTags", json={"contactTag": {"contact": contact_id, "tag": tag_id}})

    def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        if not tags:
            return
        wanted = {tag_id for tag_id in (self._find_tag_id(name) for name in tags) if tag_id}
        if not wanted:
            return
        for link in self._contact_tags(contact_id):
            if str(link.get("tag")) in wanted:
                self._request("DELETE", f"contactTags/{link['id']}")

    def list_tags(self) -> list[str]:
        return [str(tag.get("tag")) for tag in self._paged("tags", "tags") if tag.get("tag")]

    def list_fields(self) -> list[str]:
        custom = [str(f.get("perstag") or f.get("title")) for f in self._custom_fields()]
        return list(CONTACT_PROPERTIES) + custom

    # -- listing (batch import and resync) and the rate limit they keep under --

    # https://developers.activecampaign.com/reference/rate-limits: 5 requests per second per account.
    rate_limit: ClassVar[RateLimit | None] = RateLimit(requests=5, seconds=1)

    def list_contacts(self, tag: str | None = None, cursor: str | None = None) -> ContactPage:
        """``GET contacts?tagid=ID&limit=100&offset=N`` (``meta.total`` counts them all);
        the cursor is the next offset and the tag id (``"offset:tag_id"``). Listed contacts
        carry no tag names: tags are loaded per contact."""
        offset, tag_id = 0, None
        if cursor:
            offset_text, _, tag_text = cursor.partition(":")
            offset, tag_id = int(offset_text), (tag_text or None)
        elif tag:
            tag_id = self._find_tag_id(tag)
            if tag_id is None:
                return ContactPage([], None, 0)
        params: dict[str, Any] = {"limit": PAGE_SIZE, "offset": offset}
        if tag_id:
            params["tagid"] = tag_id
        data = self._request("GET", "contacts", params=params)
        contacts = []
        for item in data.get("contacts") or []:
            if not isinstance(item, Mapping) or not item.get("id"):
                continue
            crm_fields = {k: v for k, v in item.items() if not isinstance(v, Mapping | list)}
            email = normalise_email(item.get("email"))
            if email:
                crm_fields["email"] = email
            contacts.append(
                Contact(stringify_id(item.get("id")), email, self.local_fields_from(crm_fields), None, dict(item))
            )
        total = int((data.get("meta") or {}).get("total") or 0)
        following = offset + PAGE_SIZE
        next_cursor = f"{following}:{tag_id or ''}" if contacts and following < total else None
        return ContactPage(contacts, next_cursor, total)
