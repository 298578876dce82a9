"""Mailchimp (Marketing API 3.0) adapter: one audience is one connection.

Settings: ``api_key`` (HTTP Basic with any username; its ``-dc`` suffix, e.g. ``…-us21``, gives
the data centre ``https://us21.api.mailchimp.com/3.0``), ``list_id`` (the audience), and
optionally ``base_url`` (overrides the data-centre URL).

API: https://mailchimp.com/developer/marketing/api/list-members/ (WP Fusion 3.47.11,
``includes/crms/mailchimp/class-mailchimp.php``, makes the same calls). A member's id is the MD5
of its lower-cased email, so ``PUT lists/{list}/members/{md5}`` (``status_if_new``) is an upsert
that can never duplicate (``add_contact``). ``PATCH …/members/{id}`` updates (``update_contact``);
when it changes the email the member's id becomes the MD5 of the new one: ``update_fields``
returns it to be stored, as WP Fusion stores the answer's ``id``, since the old id answers 404
from then on. Merge-field values are written as ``GET lists/{list}/merge-fields``
(https://mailchimp.com/developer/marketing/api/list-merges/) types them: dates ``m/d/Y``
(``format_field_value``). Names and custom fields are merge fields (``FNAME``, ``LNAME``, …);
tags are set by name (``POST …/members/{md5}/tags``, status active/inactive) and Mailchimp creates
missing ones itself.

Inbound: audience webhooks (https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/)
are form-encoded: ``type=subscribe&data[email]=…&data[merges][FNAME]=…``; ``upemail`` carries
``data[new_email]``. Mailchimp checks a new webhook URL with a bare GET, which must answer 200.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from crm_adapters import mailchimp_stand_ins
from crm_adapters.base import Adapter, Contact, ContactPage, InboundRequest, OutboundContact, RateLimit, Setting
from crm_adapters.errors import ContactNotFound, InvalidPayload, MissingContactId
from crm_adapters.field_format import FieldKind, FormatRules
from crm_adapters.parsing import normalise_email, request_payload, stringify_id

PAGE_SIZE = 1000  # the API's maximum ``count``
CONTACT_DATA_PARAMS = ("contact_id", "type", "data", "email")
# WP Fusion's WPF_MailChimp::format_field_value writes dates "m/d/Y"; merge fields hold one value.
FORMAT_RULES = FormatRules(date=lambda moment: moment.strftime("%m/%d/%Y"), datetime=lambda m: m.strftime("%m/%d/%Y"))
MERGE_KINDS = {"date": FieldKind.DATE, "number": FieldKind.NUMBER}


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased email (not a security use of MD5)."""
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


class MailchimpAdapter(Adapter):
    type: ClassVar[str] = "mailchimp"
    label: ClassVar[str] = "Mailchimp"
    settings: ClassVar[list[Setting]] = [
        Setting("api_key", "API key (ends in -dc)", required=True, secret=True),
        Setting("list_id", "Audience (list) id", required=True),
        Setting("base_url", "API base URL (default: from the key's data centre)", kind="url"),
    ]
    capabilities: ClassVar[frozenset[str]] = frozenset({"tags", "custom_fields"})
    standard_fields: ClassVar[dict[str, str]] = {"FNAME": "first_name", "LNAME": "last_name", "EMAIL": "email"}
    format_rules: ClassVar[FormatRules | None] = FORMAT_RULES
    text_fields: ClassVar[frozenset[str]] = frozenset({"FNAME", "LNAME", "EMAIL", "email", "email_address"})

    # -- inbound --

    def handles_verification_ping(self, request: InboundRequest) -> bool:
        return (
            request.method.upper() == "GET"
            and not request.has_body
            and not any(request.query.get(name) for name in CONTACT_DATA_PARAMS)
        )

    def parse(self, request: InboundRequest) -> list[Contact]:
        payload = request_payload(request)
        if not isinstance(payload, Mapping):
            raise InvalidPayload("expected a form with data[...] fields")
        data = payload.get("data") if isinstance(payload.get("data"), Mapping) else {}
        merges = data.get("merges") if isinstance(data.get("merges"), Mapping) else {}
        email = normalise_email(data.get("new_email") or data.get("email") or merges.get("EMAIL"))
        contact_id = stringify_id(request.query.get("contact_id")) or (subscriber_hash(email) if email else None)
        if not contact_id:
            raise MissingContactId("no contact id in the query string and no email in data[email]")
        return [self._contact(contact_id, email, merges, tags=None, raw=dict(payload))]

    def _contact(
        self, contact_id: str, email: str | None, merges: Mapping[str, Any], *, tags: list[str] | None, raw: Any
    ) -> Contact:
        crm_fields = {k: v for k, v in merges.items() if not isinstance(v, Mapping | list)}
        if email:
            crm_fields["EMAIL"] = email
            crm_fields["email"] = email
        return Contact(
            contact_id=contact_id, email=email, fields=self.local_fields_from(crm_fields), tags=tags, raw=raw
        )

    # -- API plumbing --

    @property
    def api_base(self) -> str:
        configured = self.setting("base_url")
        if configured:
            return str(configured).rstrip("/")
        key = str(self.setting("api_key", ""))
        data_centre = key.rsplit("-", 1)[1] if "-" in key else "us1"
        return f"https://{data_centre}.api.mailchimp.com/3.0"

    @property
    def members(self) -> str:
        return f"/lists/{self.setting('list_id', '')}/members"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        auth = ("crm-bridge", str(self.setting("api_key", "")))
        return self.call(method, self.api_base + path, auth=auth, **kwargs).json() or {}

    @staticmethod
    def _member_id(contact_id: str) -> str:
        """Accept an email where a member id is expected (the id is derived from it anyway)."""
        return subscriber_hash(contact_id) if "@" in contact_id else contact_id

    def _paged(self, path: str, key: str) -> list[Mapping[str, Any]]:
        items: list[Mapping[str, Any]] = []
        while True:
            data = self._request("GET", path, params={"count": PAGE_SIZE, "offset": len(items)})
            page = [item for item in data.get(key) or [] if isinstance(item, Mapping)]
            items.extend(page)
            if not page or len(items) >= int(data.get("total_items") or 0):
                return items

    def stand_in_answer(self, method: str, url: str, body: str) -> tuple[int, Any] | None:
        """Dry-run answers in the API's shapes (``crm_adapters.mailchimp_stand_ins``)."""
        return mailchimp_stand_ins.answer(method, url, body)

    # -- API --

    def check(self) -> None:
        self._request("GET", "/ping")

    def find_contact_id(self, email: str) -> str | None:
        try:
            data = self._request("GET", f"{self.members}/{subscriber_hash(email)}", params={"fields": "id"})
        except ContactNotFound:
            return None
        return stringify_id(data.get("id")) or subscriber_hash(email)

    def load_contact(self, contact_id: str) -> Contact:
        member = self._request("GET", f"{self.members}/{self._member_id(contact_id)}")
        merges = member.get("merge_fields") if isinstance(member.get("merge_fields"), Mapping) else {}
        tags = [str(t.get("name")) for t in member.get("tags") or [] if isinstance(t, Mapping) and t.get("name")]
        email = normalise_email(member.get("email_address"))
        member_id = stringify_id(member.get("id")) or self._member_id(contact_id)
        return self._contact(member_id, email, merges, tags=tags if "tags" in member else None, raw=dict(member))

    def load_tags(self, contact_id: str) -> list[str]:
        tags = self._paged(f"{self.members}/{self._member_id(contact_id)}/tags", "tags")
        return [str(tag.get("name")) for tag in tags if tag.get("name")]

    def upsert_contact(self, contact: OutboundContact) -> str | None:
        member_id = subscriber_hash(contact.email)
        body: dict[str, Any] = {"email_address": contact.email, "status_if_new": "subscribed"}
        merges = self._merge_fields(contact.fields)
        if merges:
            body["merge_fields"] = merges
        data = self._request("PUT", f"{self.members}/{member_id}", json=body)
        return stringify_id(data.get("id")) or member_id

    def update_fields(self, contact_id: str, fields: Mapping[str, Any]) -> str | None:
        """``PATCH`` the member. An email change gives the member a new id (the MD5 of the new
        email): it is returned so the caller stores it, as WP Fusion's ``update_contact`` stores
        the answer's ``id``; the old id answers 404 from then on."""
        body: dict[str, Any] = {}
        merges = self._merge_fields(fields)
        if merges:
            body["merge_fields"] = merges
        new_email = normalise_email(fields.get("email") or fields.get("EMAIL"))
        if new_email:
            body["email_address"] = new_email
        if not body:
            return None
        member_id = self._member_id(contact_id)
        data = self._request("PATCH", f"{self.members}/{member_id}", json=body)
        new_id = stringify_id(data.get("id")) or (subscriber_hash(new_email) if new_email else None)
        return new_id if new_id and new_id != member_id else None

    def _merge_fields(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        native = self.with_native_names(fields)
        merges = {name: value for name, value in native.items() if name not in ("EMAIL", "email", "email_address")}
        return self.formatted(merges)

    def _set_tags(self, contact_id: str, tags: Sequence[str], status: str) -> None:
        if not tags:
            return
        body = {"tags": [{"name": name, "status": status} for name in tags]}
        self._request("POST", f"{self.members}/{self._member_id(contact_id)}/tags", json=body)

    def apply_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        self._set_tags(contact_id, tags, "active")

    def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        self._set_tags(contact_id, tags, "inactive")

    def list_tags(self) -> list[str]:
        data = self._request("GET", f"/lists/{self.setting('list_id', '')}/tag-search")
        return [str(tag.get("name")) for tag in data.get("tags") or [] if isinstance(tag, Mapping) and tag.get("name")]

    def _merge_field_list(self) -> list[Mapping[str, Any]]:
        return self._paged(f"/lists/{self.setting('list_id', '')}/merge-fields", "merge_fields")

    def list_fields(self) -> list[str]:
        return ["email_address", *(str(f.get("tag")) for f in self._merge_field_list() if f.get("tag"))]

    def field_kinds(self) -> dict[str, FieldKind]:
        """Merge fields by tag, from their ``type`` (``birthday`` fields, ``MM/DD``, stay as given)."""
        return {
            str(f["tag"]): MERGE_KINDS.get(str(f.get("type")), FieldKind.TEXT)
            for f in self._merge_field_list()
            if f.get("tag")
        }

    # -- listing (batch import and resync) and the rate limit they keep under --

    # https://mailchimp.com/developer/marketing/docs/fundamentals/#api-limits: 10 simultaneous
    # connections per user.
    rate_limit: ClassVar[RateLimit | None] = RateLimit(concurrent=10)

    LIST_PAGE_SIZE: ClassVar[int] = 100

    def list_contacts(self, tag: str | None = None, cursor: str | None = None) -> ContactPage:
        """The list's members, ``GET lists/{id}/members?count=100&offset=N`` (``total_items``);
        a tag is a static segment, found by ``GET lists/{id}/tag-search?name=``, whose members
        are ``GET lists/{id}/segments/{segment}/members`` with the same paging. Members carry
        their tags. The cursor is the next offset and the segment (``"offset:segment_id"``)."""
        offset, segment = 0, ""
        if cursor:
            offset_text, _, segment = cursor.partition(":")
            offset = int(offset_text)
        elif tag:
            found = self._request("GET", f"/lists/{self.setting('list_id', '')}/tag-search", params={"name": tag})
            matches = [t for t in found.get("tags") or [] if isinstance(t, Mapping) and t.get("name") == tag]
            if not matches:
                return ContactPage([], None, 0)
            segment = str(matches[0].get("id"))
        path = f"/lists/{self.setting('list_id', '')}/segments/{segment}/members" if segment else self.members
        data = self._request("GET", path, params={"count": self.LIST_PAGE_SIZE, "offset": offset})
        contacts = []
        for member in data.get("members") or []:
            if not isinstance(member, Mapping):
                continue
            email = normalise_email(member.get("email_address"))
            merges = member.get("merge_fields") if isinstance(member.get("merge_fields"), Mapping) else {}
            names = [str(t.get("name")) for t in member.get("tags") or [] if isinstance(t, Mapping) and t.get("name")]
            member_id = stringify_id(member.get("id")) or (subscriber_hash(email) if email else None)
            if member_id:
                tags = names if "tags" in member else None
                contacts.append(self._contact(member_id, email, merges, tags=tags, raw=dict(member)))
        total = int(data.get("total_items") or 0)
        following = offset + self.LIST_PAGE_SIZE
        next_cursor = f"{following}:{segment}" if contacts and following < total else None
        return ContactPage(contacts, next_cursor, total)
