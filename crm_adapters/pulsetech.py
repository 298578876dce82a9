"""PulseTechnologyCRM adapter.

Settings: ``base_url`` (the app URL; the adapter adds ``/api/v1/``), ``access_token`` (sent as
``Authorization: Bearer``), and optionally ``refresh_token``, ``client_id``, ``client_secret``
(with all three, a refused token is refreshed once through the OAuth 2 refresh grant,
https://datatracker.ietf.org/doc/html/rfc6749#section-6, at the Pulse portal's ``oauth/token``:
as the client derives it, ``https://portal.thepulsespot.com/oauth/token``, or for an app URL under
``.dev.thepulsespot.com`` the same URL with ``app.`` replaced by ``portal.``; an optional
``token_url`` setting overrides it). The client uses ``http://`` for the production portal; we
use ``https://`` so the client secret never travels in clear.

Every call follows the API's only public client, written by Pulse Technology itself: WP
Fusion's ``includes/crms/pulsetech/class-pulsetech.php`` (``verygoodplugins/wp-fusion-lite``
3.47.11, https://github.com/verygoodplugins/wp-fusion-lite/blob/3.47.11/includes/crms/pulsetech/class-pulsetech.php),
summarised in ``shared/reference/pulsetech.md``. The method each call mirrors is named:

==========================================  ==================================================
``GET  tags`` (``connect``)                 the connection check
``GET  tags``, ``tags?page=N`` (``sync_tags``)  ``{"data": [{"id", "name"}], "meta": {"last_page"}}``
``GET  contact/available-fields``           ``{"data": {key: {"label"}}}``; ``lead_source_id``
(``sync_crm_fields``)                       hidden, ``address_*.country`` keys get ``_name``
``POST contact/find/`` form ``email=``      the contact, flat, with ``id``; or
(``get_contact_id``)                        ``{"error": "Contact not found"}``: no such contact
``POST contacts`` form + ``is_marketable``  create: the new contact, flat: ``{"id": N, …}``
(``add_contact``)
``PUT  contacts/{id}`` form                 update (``update_contact``)
``GET  contacts/{id}`` (``load_contact``)   the contact's fields, flat (no ``data`` wrapper)
``GET  contacts/{id}/tags`` paginated       ``{"data": [{"id"}], "meta": {"last_page"}}``: tag ids
(``get_tags``)
``POST contacts/{id}/tag-apply``            form ``tag_id[]=5&tag_id[]=9`` (``apply_tags``)
``POST contacts/{id}/untag``                form ``tag_id[]=5`` (``remove_tags``)
==========================================  ==================================================

Bodies are forms, never JSON. Errors (``handle_http_response``): HTTP 500 is a server error, and
any status above 200 whose JSON carries ``error`` is an error, except ``{"error": "Contact not
found"}``, which means "no such contact". Tags are named by id: names come from the tag list,
and the client has no tag-creation call, so a tag Pulse does not have is not applied.

Inbound (``format_post_data``): a workflow step or global webhook posts the contact as JSON; its
id is the ``contact_id`` parameter, else a form field ``id``, else the JSON body's ``id``. Tags
never come with it: they are loaded through the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from crm_adapters.base import Adapter, Contact, ContactPage, HttpResponse, InboundRequest, OutboundContact, Setting
from crm_adapters.errors import AuthRefused, ContactNotFound, CrmRejected, InvalidPayload, MissingContactId
from crm_adapters.oauth_refresh import OAuthRefreshMixin
from crm_adapters.parsing import normalise_email, request_payload, stringify_id

NOT_FOUND_ERROR = "Contact not found"  # the one ``error`` that means "none", not a failure
PORTAL_URL = "https://portal.thepulsespot.com/"  # the client's production portal (it says http://)
STAND_IN_ID = 1  # the id of a dry run's stand-in contact: shown, never stored
HIDDEN_FIELDS = frozenset({"lead_source_id"})
# Statuses the base class types by status whatever the body says (refresh, retry).
RETRYABLE_OR_AUTH = frozenset({200, 401, 403, 408, 425, 429})


class PulseTechAdapter(OAuthRefreshMixin, Adapter):
    type: ClassVar[str] = "pulsetech"
    label: ClassVar[str] = "PulseTechnologyCRM"
    settings: ClassVar[list[Setting]] = [
        Setting("base_url", "App URL", required=True, kind="url"),
        Setting("access_token", "Access token", required=True, secret=True),
        Setting("refresh_token", "Refresh token", secret=True),
        Setting("client_id", "OAuth client id"),
        Setting("client_secret", "OAuth client secret", secret=True),
        Setting("token_url", "OAuth token URL (default: the Pulse portal's)", kind="url"),
    ]
    capabilities: ClassVar[frozenset[str]] = frozenset({"tags", "custom_fields"})

    def stand_in_answer(self, method: str, url: str, body: str) -> tuple[int, Any] | None:
        return stand_in_answer(method, url, body)

    # -- inbound --

    def parse(self, request: InboundRequest) -> list[Contact]:
        """The id as ``format_post_data`` finds it: ``contact_id`` (query or form), the form's
        ``id``, the JSON body's ``id``."""
        body = request_payload(request)
        if not isinstance(body, Mapping):
            raise InvalidPayload("expected a JSON object describing one contact")
        form = request.form if isinstance(request.form, Mapping) else {}
        contact_id = (
            stringify_id(request.query.get("contact_id"))
            or stringify_id(form.get("contact_id"))
            or stringify_id(form.get("id"))
            or stringify_id(body.get("id"))
        )
        if not contact_id:
            raise MissingContactId("no contact_id parameter and no id in the form or the JSON body")
        return [self._contact_from(body, contact_id=contact_id)]

    def _contact_from(self, entity: Mapping[str, Any], *, contact_id: str) -> Contact:
        crm_fields: dict[str, Any] = {k: v for k, v in entity.items() if not isinstance(v, Mapping | list)}
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

    def raise_for_status(self, response: HttpResponse, *, not_found_statuses: Any = (404,)) -> None:
        """``handle_http_response``: ``{"error": "Contact not found"}`` above 200 is "no such
        contact"; any other ``error`` above 200 is an error even with a 2xx status."""
        error = _error_of(response)
        if response.status > 200 and error == NOT_FOUND_ERROR:
            raise ContactNotFound(f"pulsetech answered HTTP {response.status}: {error}", status=response.status)
        if error and response.status not in RETRYABLE_OR_AUTH and response.status < 500:
            raise CrmRejected(f"pulsetech answered HTTP {response.status}: {error}", status=response.status)
        super().raise_for_status(response, not_found_statuses=not_found_statuses)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self._send(method, path, **kwargs)
        except AuthRefused:
            if not self.refresh_access_token():
                raise
            return self._send(method, path, **kwargs)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.setting('access_token', '')}", "Accept": "application/json"}
        return self.call(method, self.api_base + path, headers=headers, **kwargs).json() or {}

    @property
    def token_url(self) -> str:
        """The portal's token endpoint (``__construct`` in class-pulsetech.php)."""
        if self.setting("token_url"):
            return str(self.setting("token_url"))
        if ".dev.thepulsespot.com" in self.app_url:
            return self.app_url.replace("/app.", "/portal.") + "/oauth/token"
        return PORTAL_URL + "oauth/token"

    def _paged(self, path: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every page, as ``sync_tags`` and ``get_tags`` read them: the first without ``page``,
        then ``page=N`` while N ≤ ``meta.last_page``."""
        items: list[Any] = []
        page, last_page = 1, 1
        while page <= last_page:
            query = {**(params or {}), **({"page": page} if page > 1 else {})}
            data = self._request("GET", path, params=query or None)
            items.extend(data.get("data") or [])
            last_page = int((data.get("meta") or {}).get("last_page") or 1)
            page += 1
        return items

    # -- API --

    def check(self) -> None:
        """``connect( …, true )``: one ``GET tags``."""
        self._request("GET", "tags")

    def find_contact_id(self, email: str) -> str | None:
        """``get_contact_id``: ``POST contact/find/``; ``{"error": "Contact not found"}`` is None."""
        try:
            data = self._request("POST", "contact/find/", data={"email": email}, not_found_statuses=())
        except ContactNotFound:
            return None
        if data.get("error") == NOT_FOUND_ERROR:
            return None
        return stringify_id(data.get("id"))

    def load_contact(self, contact_id: str) -> Contact:
        entity = self._request("GET", f"contacts/{contact_id}")
        if not isinstance(entity, Mapping) or not entity:
            raise InvalidPayload("PulseTechnologyCRM answered without a contact")
        return self._contact_from(entity, contact_id=stringify_id(entity.get("id")) or contact_id)

    def upsert_contact(self, contact: OutboundContact) -> str | None:
        """Find by email, then update or create (``add_contact`` adds ``is_marketable=true``):
        the API has no upsert of its own."""
        existing = self.find_contact_id(contact.email)
        if existing:
            self.update_fields(existing, contact.fields)
            return existing
        form = [*self._form({**contact.fields, "email": contact.email}), ("is_marketable", "true")]
        contact_id = stringify_id(self._request("POST", "contacts", data=form).get("id"))
        if not contact_id:
            raise InvalidPayload("PulseTechnologyCRM answered without the contact's id")
        return contact_id

    def update_fields(self, contact_id: str, fields: Mapping[str, Any]) -> None:
        if fields:
            self._request("PUT", f"contacts/{contact_id}", data=self._form(fields))

    def _form(self, fields: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Form pairs under the CRM's field keys; a list (a multiselect) as ``key[]`` pairs."""
        pairs: list[tuple[str, str]] = []
        for name, value in self.with_native_names(fields).items():
            if isinstance(value, list | tuple):
                pairs.extend((f"{name}[]", str(item)) for item in value)
            else:
                pairs.append((name, "" if value is None else str(value)))
        return pairs

    # -- tags --

    def _tags(self) -> list[Mapping[str, Any]]:
        return [tag for tag in self._paged("tags") if isinstance(tag, Mapping)]

    def load_tags(self, contact_id: str) -> list[str]:
        """Tag names: the contact's tags come as ids, named through the tag list."""
        raw = self._paged(f"contacts/{contact_id}/tags")
        ids = [stringify_id(item.get("id") if isinstance(item, Mapping) else item) for item in raw]
        if not ids:
            return []
        names = {stringify_id(tag.get("id")): str(tag.get("name")) for tag in self._tags()}
        return [names[tag_id] for tag_id in ids if tag_id in names]

    def _tag_ids(self, names: Sequence[str]) -> list[str]:
        """Ids of the named tags Pulse has; names it lacks are skipped (no creation call)."""
        known = {str(tag.get("name", "")).lower(): stringify_id(tag.get("id")) for tag in self._tags()}
        ids: list[str] = []
        for name in names:
            tag_id = known.get(name.lower())
            if tag_id and tag_id not in ids:
                ids.append(tag_id)
        return ids

    def apply_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        ids = self._tag_ids(tags) if tags else []
        if ids:
            self._request("POST", f"contacts/{contact_id}/tag-apply", data=[("tag_id[]", i) for i in ids])

    def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        ids = self._tag_ids(tags) if tags else []
        if ids:
            self._request("POST", f"contacts/{contact_id}/untag", data=[("tag_id[]", i) for i in ids])

    def list_tags(self) -> list[str]:
        return [str(tag.get("name")) for tag in self._tags() if tag.get("name")]

    def list_fields(self) -> list[str]:
        """``sync_crm_fields``: the keys of ``contact/available-fields``, ``lead_source_id``
        hidden, an address's ``.country`` key read as its ``_name``, in label order."""
        fields = self._request("GET", "contact/available-fields").get("data") or {}
        labels: dict[str, str] = {}
        for key, spec in fields.items() if isinstance(fields, Mapping) else ():
            if key in HIDDEN_FIELDS:
                continue
            label = (
                spec.get("label") if isinstance(spec, Mapping) and spec.get("label") else key.replace("_", " ").title()
            )
            name = f"{key}_name" if "address_" in key and ".country" in key else key
            labels[name] = str(label or key.replace("_", " ").title())
        return sorted(labels, key=lambda name: labels[name])

    # -- listing (batch import and resync) --

    def list_contacts(self, tag: str | None = None, cursor: str | None = None) -> ContactPage:
        """``GET contacts/tagged/?tag_name=NAME`` (``shared/reference/pulsetech.md``: paginated
        as ``sync_tags`` reads pages, the first without ``page``, then ``page=N`` while N ≤
        ``meta.last_page``; ``{"data": [contact…], "meta": {"last_page"}}``), or ``GET contacts``
        for every contact (beyond the reference: the client lists only tagged contacts). The
        listed entities carry no tags, so each contact's tags are loaded when it is imported
        (tags None: "not in the listing")."""
        page = int(cursor) if cursor else 1
        params: dict[str, Any] = {"tag_name": tag} if tag else {}
        if page > 1:
            params["page"] = page
        data = self._request("GET", "contacts/tagged/" if tag else "contacts", params=params or None) or {}
        contacts = []
        for entity in data.get("data") or []:
            contact_id = stringify_id(entity.get("id")) if isinstance(entity, Mapping) else None
            if contact_id:
                contacts.append(self._contact_from(entity, contact_id=contact_id))
        meta = data.get("meta") or {}
        following = str(page + 1) if contacts and page < int(meta.get("last_page") or 1) else None
        total = meta.get("total")
        return ContactPage(contacts, following, int(total) if total is not None else None)


def stand_in_answer(method: str, url: str, body: str) -> tuple[int, Any] | None:
    """Dry-run answers in the API's shapes (the table above): the email is not in Pulse yet,
    the create answers the flat new contact, the tag list is empty."""
    path = urlsplit(url).path.rstrip("/")
    if method == "POST" and path.endswith("/contact/find"):
        return 404, {"error": NOT_FOUND_ERROR}
    if method == "POST" and path.endswith("/api/v1/contacts"):
        return 201, {"id": STAND_IN_ID, **{k: v for k, v in parse_qsl(body) if not k.endswith("[]")}}
    if method == "GET" and (path.endswith("/tags") or path.endswith("/contact/available-fields")):
        return 200, {"data": [], "meta": {"current_page": 1, "last_page": 1}}
    return None


def _error_of(response: HttpResponse) -> str | None:
    data = response.json()
    error = data.get("error") if isinstance(data, Mapping) else None
    return str(error) if error else None
