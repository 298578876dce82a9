"""ActiveCampaign adapter.

Settings: ``base_url`` (the account's API URL, e.g. ``https://ACCOUNT.api-us1.com``; the adapter
adds ``/api/3/``) and ``api_key`` (sent as the ``Api-Token`` header).

API v3: https://developers.activecampaign.com/reference . What it relies on:

- ``POST contact/sync`` creates or updates by email in one call, so a push never duplicates;
- custom fields are set as ``fieldValues: [{field: ID, value}]``; a field is named in the field
  map by its personalisation tag (``PASSWORD``), its title, or its numeric id;
- tags are objects (``GET tags``, ``POST tags``) linked by ``contactTags`` rows; applying a tag
  that does not exist creates it first;
- a missing contact is a 404 ``{"message": "No Result found for Subscriber with id N"}``.

Inbound: ActiveCampaign webhooks are form-encoded with PHP bracket keys (``contact[email]=…``);
``contact[tags]`` is one string joined by ", ".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from crm_adapters.base import Adapter, Contact, InboundRequest, OutboundContact, Setting
from crm_adapters.errors import CrmRejected, InvalidPayload, MissingContactId
from crm_adapters.parsing import normalise_email, request_payload, split_tags, stringify_id

PAGE_SIZE = 100
# contact/sync and PUT contacts/{id} take these as top-level contact properties.
CONTACT_PROPERTIES = ("email", "firstName", "lastName", "phone")


class ActiveCampaignAdapter(Adapter):
    type: ClassVar[str] = "activecampaign"
    label: ClassVar[str] = "ActiveCampaign"
    settings: ClassVar[list[Setting]] = [
        Setting("base_url", "API URL", required=True, kind="url"),
        Setting("api_key", "API key", required=True, secret=True),
    ]
    capabilities: ClassVar[frozenset[str]] = frozenset({"tags", "custom_fields"})
    standard_fields: ClassVar[dict[str, str]] = {"firstName": "first_name", "lastName": "last_name"}

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
        """Every item of an offset-paginated listing (``meta.total`` says when to stop)."""
        items: list[Mapping[str, Any]] = []
        offset = 0
        while True:
            data = self._request("GET", path, params={**(params or {}), "limit": PAGE_SIZE, "offset": offset})
            page = [item for item in data.get(key) or [] if isinstance(item, Mapping)]
            items.extend(page)
            total = int((data.get("meta") or {}).get("total") or 0)
            offset += PAGE_SIZE
            if not page or offset >= total:
                return items

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

    def load_tags(self, contact_id: str) -> list[str]:
        links = self._request("GET", f"contacts/{contact_id}/contactTags").get("contactTags") or []
        tag_ids = [str(link.get("tag")) for link in links if isinstance(link, Mapping)]
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

    def update_fields(self, contact_id: str, fields: Mapping[str, Any]) -> None:
        body = self._contact_body(fields)
        if body:
            self._request("PUT", f"contacts/{contact_id}", json={"contact": body})

    def _contact_body(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        native = self.with_native_names(fields)
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
        return self._paged("fields", "fields")

    def _custom_field_ids(self) -> dict[str, str]:
        ids: dict[str, str] = {}
        for field in self._custom_fields():
            for key in (field.get("perstag"), field.get("title")):
                if key:
                    ids.setdefault(str(key).lower(), str(field.get("id")))
        return ids

    # -- tags --

    def _find_tag_id(self, name: str) -> str | None:
        data = self._request("GET", "tags", params={"search": name})
        for tag in data.get("tags") or []:
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
        links = self._request("GET", f"contacts/{contact_id}/contactTags").get("contactTags") or []
        for link in links:
            if str(link.get("tag")) in wanted:
                self._request("DELETE", f"contactTags/{link['id']}")

    def list_tags(self) -> list[str]:
        return [str(tag.get("tag")) for tag in self._paged("tags", "tags") if tag.get("tag")]

    def list_fields(self) -> list[str]:
        custom = [str(f.get("perstag") or f.get("title")) for f in self._custom_fields()]
        return list(CONTACT_PROPERTIES) + custom
