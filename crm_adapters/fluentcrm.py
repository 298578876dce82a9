"""FluentCRM (WordPress) adapter.

Settings: ``base_url`` (the WordPress site, e.g. ``https://crm.example.com``; the adapter adds
``/wp-json/fluent-crm/v2``), ``username`` and ``app_password`` (a WordPress application
password; HTTP Basic auth).

References for every call: FluentCRM's REST docs (https://rest-api.fluentcrm.com/, "Contacts"
and "Tags") and WP Fusion's client of the same API (wp-fusion-lite
``includes/crms/fluentcrm-rest/class-fluentcrm-rest.php``: ``load_contact``, ``get_tags``,
``add_tag``, ``apply_tags``, ``add_contact``, ``update_contact``), checked against a real
FluentCRM 2.9.84 (the exchanges under ``shared/fixtures/fluentcrm/api`` and
``tests/fixtures/fluentcrm/api``). Quirks seen there:

- ``GET subscribers/{id}`` gives the contact and, with ``with[]=tags``, its tags; custom field
  values only with ``with[]=subscriber.custom_values`` (both in one read:
  ``get_with_tags_and_custom_values``; WP Fusion's ``load_contact`` asks for the latter);
- a missing contact is a 422 ``{"message":"Subscriber not found"}`` on ``GET`` (a 404 on
  ``PUT``), but a 422 is also a validation error, keyed by field
  (``{"email": {"email": …}}``): only the former is "not found";
- ``POST subscribers`` for an existing email is a 422 ``{"email": {"unique": …}}`` unless
  ``"__force_update": "yes"`` (which would also overwrite the contact's ``status``);
- ``POST tags`` checks the slug and inserts in two steps: racing creates can both pass (two tags,
  one slug); a create that loses answers 422 ``{"slug": {"unique": …}}``. Missing tags are
  therefore created once, under locks (``crm_adapters.tag_catalogue``);
- ``sync-segments`` finds tags by slug unless told ``"find_by": "id"``, and an empty ``attach``
  list attaches *every* tag, so we never send one;
- tags are ``{id, title, slug}``: the slug is the tag's name in crm-bridge.

Inbound: the "Outgoing Webhook" automation action posts the subscriber (JSON or form), either
flat or wrapped in ``subscriber``; custom fields arrive under ``custom_field`` (or
``custom_fields`` / ``custom_values``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from crm_adapters import fluentcrm_stand_ins
from crm_adapters.base import Adapter, Contact, ContactPage, HttpClient, InboundRequest, OutboundContact, Setting
from crm_adapters.errors import (
    ContactNotFound,
    CrmError,
    CrmRejected,
    DuplicateContact,
    InvalidPayload,
    MissingContactId,
)
from crm_adapters.parsing import normalise_email, request_payload, stringify_id
from crm_adapters.tag_catalogue import CATALOGUE

API_PATH = "/wp-json/fluent-crm/v2"
# One read gives the contact, its tags and its custom field values (recorded:
# tests/fixtures/fluentcrm/api/get_with_tags_and_custom_values.json).
CONTACT_WITH = (("with[]", "tags"), ("with[]", "subscriber.custom_values"))
PAGE_SIZE = 100
# Columns of FluentCRM's subscribers table: anything else is a custom field (custom_values).
STANDARD_COLUMNS = frozenset(
    {
        "prefix",
        "first_name",
        "last_name",
        "email",
        "timezone",
        "address_line_1",
        "address_line_2",
        "postal_code",
        "city",
        "state",
        "country",
        "ip",
        "phone",
        "status",
        "contact_type",
        "source",
        "date_of_birth",
        "avatar",
        "company_id",
        "user_id",
    }
)
CUSTOM_GROUPS = ("custom_field", "custom_fields", "custom_values")


def _tag_name(tag: Any) -> str | None:
    if isinstance(tag, Mapping):
        value = tag.get("slug") or tag.get("title")
        return str(value) if value else None
    return (str(tag).strip() or None) if tag is not None else None


def _body_of(exc: CrmRejected) -> Mapping[str, Any]:
    try:
        body = json.loads(exc.body or "")
    except ValueError:
        return {}
    return body if isinstance(body, Mapping) else {}


def _taken(exc: CrmRejected, field: str) -> bool:
    """FluentCRM's unique-rule refusal on ``field``: 422 ``{field: {"unique": …}}`` (a second
    contact with one email, recorded in create_duplicate_422; a second tag with one slug,
    create_tag_slug_taken_422)."""
    detail = _body_of(exc).get(field) if exc.status == 422 else None
    return isinstance(detail, Mapping) and "unique" in detail


def _email_taken(exc: CrmRejected) -> bool:
    return _taken(exc, "email")


def _contact_missing(exc: CrmRejected) -> bool:
    """A 422 that means "no such contact" (``{"message": "Subscriber not found"}``, recorded in
    get_missing_id), as opposed to a validation error, whose body is keyed by field
    (create_duplicate_422, create_invalid_email_422)."""
    if exc.status != 422:
        return False
    body = _body_of(exc)
    message = body.get("message")
    fields_refused = any(isinstance(value, Mapping) for value in body.values())
    return isinstance(message, str) and "not found" in message.lower() and not fields_refused


def slugify(title: str) -> str:
    """FluentCRM's slug for a tag title (WordPress ``sanitize_title``, near enough for matching)."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


class FluentCrmAdapter(Adapter):
    type: ClassVar[str] = "fluentcrm"
    label: ClassVar[str] = "FluentCRM"
    settings: ClassVar[list[Setting]] = [
        Setting("base_url", "WordPress site URL", required=True, kind="url"),
        Setting("username", "WordPress username", required=True),
        Setting("app_password", "Application password", required=True, secret=True),
    ]
    capabilities: ClassVar[frozenset[str]] = frozenset({"tags", "custom_fields"})

    def __init__(self, config: Mapping[str, Any], http: HttpClient) -> None:
        super().__init__(config, http)
        # Tag ids each contact this adapter created was created with (one adapter per push).
        self._attached: dict[str, set[int]] = {}

    # -- inbound --

    def parse(self, request: InboundRequest) -> list[Contact]:
        body = request_payload(request)
        if not isinstance(body, Mapping):
            raise InvalidPayload("expected a JSON object describing one subscriber")
        subscriber = body.get("subscriber") if isinstance(body.get("subscriber"), Mapping) else body
        return [self._contact_from(subscriber, query_contact_id=request.query.get("contact_id"))]

    def _contact_from(self, subscriber: Mapping[str, Any], *, query_contact_id: str | None = None) -> Contact:
        contact_id = stringify_id(query_contact_id) or stringify_id(subscriber.get("id"))
        if not contact_id:
            raise MissingContactId("no contact id in the query string or the subscriber")
        crm_fields: dict[str, Any] = {
            key: value for key, value in subscriber.items() if not isinstance(value, Mapping | list)
        }
        for group in CUSTOM_GROUPS:
            if isinstance(subscriber.get(group), Mapping):
                crm_fields.update(subscriber[group])
        email = normalise_email(subscriber.get("email"))
        if email:
            crm_fields["email"] = email
        tags = None
        if isinstance(subscriber.get("tags"), list):
            tags = [name for name in (_tag_name(t) for t in subscriber["tags"]) if name]
        return Contact(
            contact_id=contact_id,
            email=email,
            fields=self.local_fields_from(crm_fields),
            tags=tags,
            raw=dict(subscriber),
        )

    # -- API plumbing --

    @property
    def api_base(self) -> str:
        return str(self.setting("base_url", "")).rstrip("/") + API_PATH

    @property
    def auth(self) -> tuple[str, str]:
        return (str(self.setting("username", "")), str(self.setting("app_password", "")))

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.call(method, self.api_base + path, auth=self.auth, **kwargs).json()

    def _contact_request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request about one contact: a 404, or a 422 that says the contact is missing, is
        ``ContactNotFound``; any other 422 (a validation error) stays ``CrmRejected``."""
        try:
            return self._request(method, path, **kwargs)
        except CrmRejected as exc:
            if _contact_missing(exc):
                raise ContactNotFound(exc.message, status=exc.status, body=exc.body) from exc
            raise

    # -- API --

    def check(self) -> None:
        self._request("GET", "/tags", params={"per_page": 1})

    def find_contact_id(self, email: str) -> str | None:
        try:
            data = self._contact_request("GET", "/subscribers/0", params={"get_by_email": email})
        except ContactNotFound:
            return None
        subscriber = (data or {}).get("subscriber") or {}
        return stringify_id(subscriber.get("id"))

    def load_contact(self, contact_id: str) -> Contact:
        """The contact, its tags and its custom field values in one read (``CONTACT_WITH``)."""
        data = self._contact_request("GET", f"/subscribers/{contact_id}", params=CONTACT_WITH) or {}
        subscriber = data.get("subscriber")
        if not isinstance(subscriber, Mapping):
            raise InvalidPayload("FluentCRM answered without a subscriber object")
        return self._contact_from(subscriber)

    def load_tags(self, contact_id: str) -> list[str]:
        return self.load_contact(contact_id).tags or []

    def upsert_contact(self, contact: OutboundContact) -> str | None:
        """Create the contact, or update the one that has this email: never a duplicate.

        The create comes first: a push is most often a new registration, and this makes it one
        call instead of a look-up and a create (each a WordPress request). FluentCRM refuses a
        second contact with the same email (422 ``{"email": {"unique": …}}``, recorded), and
        without ``__force_update`` that create cannot touch an existing contact. An existing
        contact is then looked up and its fields updated in place, its ``status`` left alone
        (pushing a profile must not re-subscribe someone who unsubscribed): three calls instead
        of two for a contact the CRM already had.

        A new contact is created with its tags (``"tags": [ids]``, recorded in create_with_tag),
        so a registration is one write; ``apply_tags`` then skips what the create attached.
        """
        fields = self.with_native_names(contact.fields)
        tag_ids = self._tag_ids_for_create(contact.tags)
        try:
            contact_id = self._create(contact.email, fields, tag_ids=tag_ids)
            self._attached[contact_id] = set(tag_ids)
            return contact_id
        except DuplicateContact:
            existing = self.find_contact_id(contact.email)
            if existing is None:  # deleted since, or not found by its email: create or update
                return self._create(contact.email, fields, force_update=True)
        self.update_fields(existing, fields)
        return existing

    def _tag_ids_for_create(self, tags: Sequence[str]) -> list[int]:
        """Ids of the tags to create a contact with. A failure here must not keep the contact
        from being created (and linked): ``apply_tags`` runs the tag step again and fails
        there, after the contact exists."""
        if not tags:
            return []
        try:
            return self._tag_ids(tags, create_missing=True)
        except CrmError:
            return []

    def _create(
        self, email: str, fields: Mapping[str, Any], *, force_update: bool = False, tag_ids: Sequence[int] = ()
    ) -> str:
        """``POST subscribers``; an email FluentCRM already has is ``DuplicateContact`` (with
        ``force_update``, only from a FluentCRM too old to honour it)."""
        standard, custom = self._split_fields(fields)
        body: dict[str, Any] = {**standard, "email": email, "status": "subscribed"}
        if tag_ids:
            body["tags"] = list(tag_ids)
        if custom:
            body["custom_values"] = custom
        if force_update:
            body["__force_update"] = "yes"
        try:
            data = self._request("POST", "/subscribers", json=body) or {}
        except CrmRejected as exc:
            if _email_taken(exc):
                raise DuplicateContact(exc.message, status=exc.status, body=exc.body) from exc
            raise
        contact_id = stringify_id((data.get("contact") or {}).get("id"))
        if not contact_id:
            raise InvalidPayload("FluentCRM answered without the contact's id")
        return contact_id

    def update_fields(self, contact_id: str, fields: Mapping[str, Any]) -> None:
        standard, custom = self._split_fields(self.with_native_names(fields))
        subscriber: dict[str, Any] = dict(standard)
        if custom:
            subscriber["custom_values"] = custom
        if subscriber:
            self._contact_request("PUT", f"/subscribers/{contact_id}", json={"subscriber": subscriber})

    @staticmethod
    def _split_fields(fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        standard = {k: v for k, v in fields.items() if k in STANDARD_COLUMNS}
        custom = {k: v for k, v in fields.items() if k not in STANDARD_COLUMNS}
        return standard, custom

    # -- tags --

    def _all_tags(self) -> list[Mapping[str, Any]]:
        tags: list[Mapping[str, Any]] = []
        page = 1
        while True:
            data = self._request("GET", "/tags", params={"per_page": PAGE_SIZE, "page": page}) or {}
            listing = data.get("tags") or {}
            tags.extend(t for t in listing.get("data") or [] if isinstance(t, Mapping))
            if page >= int(listing.get("last_page") or 1):
                return tags
            page += 1

    @property
    def _account(self) -> str:
        """The key of this CRM account in the process-wide tag catalogue."""
        return f"fluentcrm {self.api_base} {self.setting('username', '')}"

    def _read_tags(self) -> dict[str, int]:
        """Every tag's id by slug and title (lower case), stored in the catalogue. With two tags
        of one slug (left by an earlier race) the oldest wins, always the same one."""
        tags = sorted(self._all_tags(), key=lambda t: int(t.get("id") or 0))
        ids: dict[str, int] = {}
        for tag in tags:
            for key in (tag.get("slug"), tag.get("title")):
                if key and tag.get("id") is not None:
                    ids.setdefault(str(key).lower(), int(tag["id"]))
        CATALOGUE.replace(self._account, ids)
        return ids

    @staticmethod
    def _missing(names: Sequence[str], known: Mapping[str, int]) -> list[str]:
        return [n for n in names if n.lower() not in known and slugify(n) not in known]

    def _tag_ids(self, names: Sequence[str], *, create_missing: bool) -> list[int]:
        """Ids for tag names: from the catalogue, read again on a miss; a tag still missing is
        created (``create_missing``) under the catalogue's lock and the host's ``tag_guard``,
        after one more listing (another thread or process may just have made it)."""
        known = CATALOGUE.known(self._account)
        if self._missing(names, known):
            known = self._read_tags()
        missing = self._missing(names, known)
        if missing and create_missing:
            with CATALOGUE.creation_lock(self._account):
                guard = self.tag_guard or (lambda create: create())
                guard(lambda: self._create_tags(missing))
            known = CATALOGUE.known(self._account)
        ids: list[int] = []
        for name in names:
            tag_id = known.get(name.lower()) or known.get(slugify(name))
            if tag_id is not None and tag_id not in ids:
                ids.append(tag_id)
        return ids

    def _create_tags(self, names: Sequence[str]) -> None:
        """Create the tags still missing from a fresh listing. A 422 "slug taken" means someone
        else created it meanwhile: read the listing again instead of failing."""
        known = self._read_tags()
        for name in self._missing(names, known):
            try:
                created = self._request("POST", "/tags", json={"title": name}) or {}
            except CrmRejected as exc:
                if not _taken(exc, "slug"):
                    raise
                self._read_tags()
                continue
            item = created.get("item") or created.get("lists") or {}
            if item.get("id") is not None:
                keys = [str(k) for k in (item.get("slug"), item.get("title"), name) if k]
                CATALOGUE.add(self._account, keys, int(item["id"]))

    def apply_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        if not tags:
            return  # an empty attach list makes FluentCRM attach every tag
        attached = self._attached.get(str(contact_id), set())
        ids = [i for i in self._tag_ids(tags, create_missing=True) if i not in attached]
        if ids:
            self._request(
                "POST",
                "/subscribers/sync-segments",
                json={
                    "type": "tags",
                    "subscribers": [int(contact_id) if contact_id.isdigit() else contact_id],
                    "attach": ids,
                    "find_by": "id",
                },
            )

    def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        if not tags:
            return
        ids = self._tag_ids(tags, create_missing=False)
        if ids:
            self._contact_request("PUT", f"/subscribers/{contact_id}", json={"detach_tags": ids})

    def list_tags(self) -> list[str]:
        return [name for name in (_tag_name(t) for t in self._all_tags()) if name]

    def list_fields(self) -> list[str]:
        data = self._request("GET", "/custom-fields/contacts") or {}
        custom = [str(f["slug"]) for f in data.get("fields") or [] if isinstance(f, Mapping) and f.get("slug")]
        return sorted(STANDARD_COLUMNS - {"user_id", "company_id", "avatar"}) + custom

    # -- listing (batch import and resync) --

    def list_contacts(self, tag: str | None = None, cursor: str | None = None) -> ContactPage:
        """``GET subscribers?tags[]=ID&per_page=100&page=N`` (recorded:
        ``shared/fixtures/fluentcrm/api/list_by_tag_page.json``): the filter takes tag *ids*, so
        the first page resolves the name once and the cursor carries the id (``"page:tag_id"``).
        Subscribers come with their tags. A tag FluentCRM does not have lists nothing."""
        page, tag_id = 1, None
        if cursor:
            page_text, _, tag_text = cursor.partition(":")
            page, tag_id = int(page_text), (int(tag_text) if tag_text else None)
        elif tag:
            ids = self._tag_ids([tag], create_missing=False)
            if not ids:
                return ContactPage([], None, 0)
            tag_id = ids[0]
        params: list[tuple[str, Any]] = [("per_page", PAGE_SIZE), ("page", page)]
        if tag_id is not None:
            params.insert(0, ("tags[]", tag_id))
        listing = (self._request("GET", "/subscribers", params=params) or {}).get("subscribers") or {}
        contacts = [self._contact_from(s) for s in listing.get("data") or [] if isinstance(s, Mapping) and s.get("id")]
        last = int(listing.get("last_page") or 1)
        following = f"{page + 1}:{tag_id if tag_id is not None else ''}" if page < last and contacts else None
        total = listing.get("total")
        return ContactPage(contacts, following, int(total) if total is not None else None)

    def stand_in_answer(self, method: str, url: str, body: str) -> tuple[int, Any] | None:
        """Dry-run answers shaped like the recorded exchanges (``crm_adapters.fluentcrm_stand_ins``)."""
        return fluentcrm_stand_ins.answer(method, url, body)
