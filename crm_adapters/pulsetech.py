"""PulseTechnologyCRM adapter.

Settings: ``base_url`` (the app URL; the adapter adds ``/api/v1/``), ``access_token`` (sent as
``Authorization: Bearer``), and optionally ``refresh_token``, ``client_id``, ``client_secret``
(with all three, a refused token is refreshed once through ``POST {base_url}/oauth/token``,
the OAuth 2 refresh grant: https://datatracker.ietf.org/doc/html/rfc6749#section-6).

No public reference for PulseTechnologyCRM's REST API could be found, so this module follows
the facts we have (Bearer token, ``/api/v1/``, form-encoded bodies, paginated lists shaped
``{"data": […], "meta": {"current_page": N, "last_page": M}}``, tags through
``contacts/{id}/tags``, ``tag-apply`` and ``untag``) and fills the rest with the usual Laravel
REST shape. The shape this adapter speaks, which the tests' fake server reproduces:

==========================================  ==================================================
``GET  me``                                 the token's user (``check``)
``GET  contacts?email=E``                   paginated contacts with that email
``GET  contacts/{id}``                      ``{"data": {id, first_name, last_name, email, …,
                                            "custom_fields": {key: value}}}``; 404 if missing
``POST contacts`` (form)                    create: ``{"data": {contact}}`` (201)
``PUT  contacts/{id}`` (form)               update; custom fields as ``custom_fields[key]=v``
``GET  contacts/{id}/tags``                 ``{"data": [5, 9]}`` or ``[{"id": 5}, …]``: tag ids
``POST contacts/{id}/tag-apply`` (form)     ``tags[]=5&tags[]=9``
``POST contacts/{id}/untag`` (form)         ``tags[]=5``
``GET  tags?page=N``                        paginated ``{"id", "name"}``: maps ids to names
``POST tags`` (form ``name=…``)             create a tag: ``{"data": {"id", "name"}}``
``GET  custom-fields?page=N``               paginated ``{"key", "label"}``
==========================================  ==================================================

Inbound: a workflow "HTTP Post" step posts the contact entity as JSON (only the root ``id`` is
certain, tags never come with it), or a global webhook puts ``contact_id`` in the URL and sends
no body: the contact is then loaded through the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from crm_adapters.base import Adapter, Contact, ContactPage, HttpClient, InboundRequest, OutboundContact, Setting
from crm_adapters.errors import AuthRefused, InvalidPayload, MissingContactId
from crm_adapters.parsing import normalise_email, request_payload, stringify_id

PAGE_SIZE = 100
CONTACT_COLUMNS = frozenset({"first_name", "last_name", "email", "phone", "company", "title", "status"})


class PulseTechAdapter(Adapter):
    type: ClassVar[str] = "pulsetech"
    label: ClassVar[str] = "PulseTechnologyCRM"
    settings: ClassVar[list[Setting]] = [
        Setting("base_url", "App URL", required=True, kind="url"),
        Setting("access_token", "Access token", required=True, secret=True),
        Setting("refresh_token", "Refresh token", secret=True),
        Setting("client_id", "OAuth client id"),
        Setting("client_secret", "OAuth client secret", secret=True),
    ]
    capabilities: ClassVar[frozenset[str]] = frozenset({"tags", "custom_fields"})

    def __init__(self, config: Mapping[str, Any], http: HttpClient) -> None:
        super().__init__(config, http)
        # Set when a refused token was refreshed (``settings_to_store`` hands them over).
        self.refreshed_tokens: dict[str, str] | None = None

    def settings_to_store(self) -> dict[str, Any]:
        return dict(self.refreshed_tokens or {})

    # -- inbound --

    def parse(self, request: InboundRequest) -> list[Contact]:
        body = request_payload(request)
        if not isinstance(body, Mapping):
            raise InvalidPayload("expected a JSON object describing one contact")
        entity = body.get("contact") if isinstance(body.get("contact"), Mapping) else body
        contact_id = (
            stringify_id(request.query.get("contact_id"))
            or stringify_id(entity.get("id"))
            or stringify_id(body.get("contact_id"))
        )
        if not contact_id:
            raise MissingContactId("no contact id in the query string or the contact entity")
        return [self._contact_from(entity, contact_id=contact_id)]

    def _contact_from(self, entity: Mapping[str, Any], *, contact_id: str) -> Contact:
        crm_fields: dict[str, Any] = {k: v for k, v in entity.items() if not isinstance(v, Mapping | list)}
        if isinstance(entity.get("custom_fields"), Mapping):
            for key, value in entity["custom_fields"].items():
                crm_fields.setdefault(key, value)
        email = normalise_email(entity.get("email"))
        if email:
            crm_fields["email"] = email
        return Contact(
            contact_id=contact_id,
            email=email,
            fields=self.local_fields_from(crm_fields),
            tags=None,  # PulseTechnologyCRM never sends tags with a contact
            raw=dict(entity),
        )

    # -- API plumbing --

    @property
    def app_url(self) -> str:
        return str(self.setting("base_url", "")).rstrip("/")

    @property
    def api_base(self) -> str:
        return self.app_url + "/api/v1/"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self._send(method, path, **kwargs)
        except AuthRefused:
            if not self._refresh_access_token():
                raise
            return self._send(method, path, **kwargs)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.setting('access_token', '')}", "Accept": "application/json"}
        return self.call(method, self.api_base + path, headers=headers, **kwargs).json() or {}

    def _refresh_access_token(self) -> bool:
        """Trade the refresh token for a new access token (OAuth 2 ``refresh_token`` grant),
        once per adapter, and once for all adapters presenting the same refresh token
        (``Adapter.redeem_refresh_token``). False when the connection has no refresh
        credentials or the grant gave no access token."""
        names = ("refresh_token", "client_id", "client_secret")
        if self.refreshed_tokens is not None or not all(self.setting(n) for n in names):
            return False
        tokens = self.redeem_refresh_token(
            token_url=self.token_url,
            client_id=str(self.setting("client_id")),
            refresh_token=str(self.setting("refresh_token")),
            grant=lambda: self._refresh_grant(names),
        )
        if not tokens:
            return False
        self.refreshed_tokens = tokens
        self.config.update(tokens)
        return True

    @property
    def token_url(self) -> str:
        return self.app_url + "/oauth/token"

    def _refresh_grant(self, names: tuple[str, ...]) -> dict[str, str] | None:
        data = self.call(
            "POST",
            self.token_url,
            data={"grant_type": "refresh_token", **{n: str(self.setting(n)) for n in names}},
            headers={"Accept": "application/json"},
        ).json()
        token = (data or {}).get("access_token")
        if not token:
            return None
        tokens = {"access_token": str(token)}
        if data.get("refresh_token"):
            tokens["refresh_token"] = str(data["refresh_token"])
        return tokens

    def _paged(self, path: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        items: list[Any] = []
        page = 1
        while True:
            data = self._request("GET", path, params={**(params or {}), "page": page, "per_page": PAGE_SIZE})
            items.extend(data.get("data") or [])
            if page >= int((data.get("meta") or {}).get("last_page") or 1):
                return items
            page += 1

    # -- API --

    def check(self) -> None:
        self._request("GET", "me")

    def find_contact_id(self, email: str) -> str | None:
        data = self._request("GET", "contacts", params={"email": email})
        for contact in data.get("data") or []:
            if isinstance(contact, Mapping) and normalise_email(contact.get("email")) == normalise_email(email):
                return stringify_id(contact.get("id"))
        return None

    def load_contact(self, contact_id: str) -> Contact:
        entity = self._request("GET", f"contacts/{contact_id}").get("data")
        if not isinstance(entity, Mapping):
            raise InvalidPayload("PulseTechnologyCRM answered without a contact")
        return self._contact_from(entity, contact_id=stringify_id(entity.get("id")) or contact_id)

    def upsert_contact(self, contact: OutboundContact) -> str | None:
        """Find by email, then update or create: the API has no upsert of its own."""
        existing = self.find_contact_id(contact.email)
        if existing:
            self.update_fields(existing, contact.fields)
            return existing
        data = self._request("POST", "contacts", data=self._form({**contact.fields, "email": contact.email}))
        contact_id = stringify_id((data.get("data") or {}).get("id"))
        if not contact_id:
            raise InvalidPayload("PulseTechnologyCRM answered without the contact's id")
        return contact_id

    def update_fields(self, contact_id: str, fields: Mapping[str, Any]) -> None:
        if fields:
            self._request("PUT", f"contacts/{contact_id}", data=self._form(fields))

    def _form(self, fields: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Form pairs: contact columns as they are, anything else as ``custom_fields[key]``."""
        pairs: list[tuple[str, str]] = []
        for name, value in self.with_native_names(fields).items():
            key = name if name in CONTACT_COLUMNS else f"custom_fields[{name}]"
            pairs.append((key, "" if value is None else str(value)))
        return pairs

    # -- tags --

    def _tags(self) -> list[Mapping[str, Any]]:
        return [tag for tag in self._paged("tags") if isinstance(tag, Mapping)]

    def load_tags(self, contact_id: str) -> list[str]:
        """Tag names: the contact's tags come as numeric ids, named through the tag list."""
        raw = self._request("GET", f"contacts/{contact_id}/tags").get("data") or []
        ids = [stringify_id(item.get("id") if isinstance(item, Mapping) else item) for item in raw]
        if not ids:
            return []
        names = {stringify_id(tag.get("id")): str(tag.get("name")) for tag in self._tags()}
        return [names[tag_id] for tag_id in ids if tag_id in names]

    def _tag_ids(self, names: Sequence[str], *, create_missing: bool) -> list[str]:
        known = {str(tag.get("name", "")).lower(): stringify_id(tag.get("id")) for tag in self._tags()}
        ids: list[str] = []
        for name in names:
            tag_id = known.get(name.lower())
            if tag_id is None and create_missing:
                tag_id = stringify_id((self._request("POST", "tags", data={"name": name}).get("data") or {}).get("id"))
            if tag_id and tag_id not in ids:
                ids.append(tag_id)
        return ids

    def apply_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        if not tags:
            return
        ids = self._tag_ids(tags, create_missing=True)
        if ids:
            self._request("POST", f"contacts/{contact_id}/tag-apply", data=[("tags[]", i) for i in ids])

    def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        if not tags:
            return
        ids = self._tag_ids(tags, create_missing=False)
        if ids:
            self._request("POST", f"contacts/{contact_id}/untag", data=[("tags[]", i) for i in ids])

    def list_tags(self) -> list[str]:
        return [str(tag.get("name")) for tag in self._tags() if tag.get("name")]

    def list_fields(self) -> list[str]:
        custom = [str(f.get("key")) for f in self._paged("custom-fields") if isinstance(f, Mapping) and f.get("key")]
        return sorted(CONTACT_COLUMNS) + custom

    # -- listing (batch import and resync) --

    def list_contacts(self, tag: str | None = None, cursor: str | None = None) -> ContactPage:
        """``GET contacts/tagged/?tag_name=NAME&page=N`` (``shared/reference/pulsetech.md``:
        paginated ``{"data": [contact…], "meta": {"last_page"}}``), or ``GET contacts?page=N``
        for every contact. The listed entities carry no tags, so each contact's tags are loaded
        when it is imported (tags None: "not in the listing")."""
        page = int(cursor) if cursor else 1
        params: dict[str, Any] = {"page": page, "per_page": PAGE_SIZE}
        if tag:
            params["tag_name"] = tag
        data = self._request("GET", "contacts/tagged/" if tag else "contacts", params=params) or {}
        contacts = []
        for entity in data.get("data") or []:
            contact_id = stringify_id(entity.get("id")) if isinstance(entity, Mapping) else None
            if contact_id:
                contacts.append(self._contact_from(entity, contact_id=contact_id))
        meta = data.get("meta") or {}
        following = str(page + 1) if contacts and page < int(meta.get("last_page") or 1) else None
        total = meta.get("total")
        return ContactPage(contacts, following, int(total) if total is not None else None)
