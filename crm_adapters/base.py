"""The adapter contract: what every CRM module implements, and the plumbing they share.

An adapter knows one CRM and nothing else: no Flask, no database, no ``requests``. It gets the
connection's plain settings and an :class:`HttpClient` (the one outbound client, which applies
the SSRF policy, timeouts and redaction), and returns plain data. Like django-anymail's
backends, the base class owns status handling so each CRM module only builds requests and
reads replies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from crm_adapters.errors import (
    AuthRefused,
    ContactNotFound,
    CrmRejected,
    CrmUnavailable,
    ListingNotSupported,
    RateLimited,
)
from crm_adapters.field_format import FieldKind, FormatRules, format_fields
from crm_adapters.inbound_request import InboundRequest
from crm_adapters.oauth import REFRESH_GRANTS, RefreshGuard
from crm_adapters.parsing import parse_retry_after, redirect_advice
from crm_adapters.tag_catalogue import TagGuard

log = logging.getLogger(__name__)

DEFAULT_FIELD_MAP: dict[str, str] = {
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
}


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One connection setting: drives the CLI, API validation and the admin form."""

    name: str
    label: str
    required: bool = False
    secret: bool = False
    default: Any = None
    help: str = ""
    kind: str = "str"  # str | int | bool | json | url


# -- HTTP -------------------------------------------------------------------------------------


@dataclass
class HttpResponse:
    """A response as the outbound client hands it to adapters (already size-capped)."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    url: str = ""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON (CRMs send HTML on 5xx)."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


class HttpClient(Protocol):
    """What an adapter may call. Implemented by ``bridge.outbound.client.OutboundClient``.

    Raises ``TransportError``/``TransportTimeout``/``OutboundDenied``/``ResponseTooLarge``;
    never raises for an HTTP status: status handling is the adapter base class's job.
    """

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
    ) -> HttpResponse: ...


# -- inbound ----------------------------------------------------------------------------------


@dataclass
class Contact:
    """A CRM contact as crm-bridge sees it.

    ``fields`` uses *local* keys (after the connection's field map). ``tags`` is a list of tag
    names, or None when the source did not carry tags at all ("not in payload"): an empty list
    means "the contact has no tags", which is different.
    """

    contact_id: str | None
    email: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    tags: list[str] | None = None
    raw: Any = None


InboundContact = Contact  # the name DESIGN.md uses for a parsed inbound item


@dataclass(frozen=True)
class OutboundEvent:
    """Why a push happens. ``id`` is stable across retries (the delivery id), so receivers can
    deduplicate; ``type`` is e.g. ``user.registered``, ``user.updated``, ``password.returned``."""

    id: str
    type: str
    occurred_at: str


@dataclass
class OutboundContact:
    """What we push to a CRM.

    ``fields`` are CRM-named (the field map applied); ``tags`` are to be applied (never sent as
    an empty list). The local view of the user (names, username, meta) rides along for adapters
    that template their own requests (the custom webhook's ``{{contact.meta.KEY}}``).
    """

    email: str
    fields: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    first_name: str = ""
    last_name: str = ""
    username: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    event: OutboundEvent | None = None
    created_at: str = ""  # ISO 8601, UTC: when the local user was created
    user_id: int | None = None  # the local user's id
    role: str = ""  # the local user's role slug


@dataclass
class ContactPage:
    """One page of a CRM's contact list (``Adapter.list_contacts``). ``next_cursor`` is what to
    pass for the next page (a page number, an offset or the CRM's own cursor, as text), None on
    the last page; ``total`` is the CRM's count of matching contacts when it says."""

    contacts: list[Contact]
    next_cursor: str | None = None
    total: int | None = None


@dataclass(frozen=True)
class RateLimit:
    """A CRM's documented request limit: ``requests`` per ``seconds``, or at most
    ``concurrent`` requests at once. The host keeps all its processes together under it
    (``Adapter.throttle``)."""

    requests: int = 0
    seconds: int = 1
    concurrent: int = 0
    source: str = ""


# -- the adapter ------------------------------------------------------------------------------


class Adapter:
    """Base class of every CRM adapter.

    Subclasses set ``type``, ``settings``, ``capabilities`` and implement ``parse`` plus the
    API operations. They call :meth:`call` for every CRM request, which turns HTTP statuses into
    typed errors so no adapter re-implements status handling.
    """

    type: ClassVar[str] = ""
    label: ClassVar[str] = ""
    settings: ClassVar[list[Setting]] = []
    capabilities: ClassVar[frozenset[str]] = frozenset()
    default_timeout: ClassVar[float] = 10.0
    # The CRM's own names for the standard fields → crm-bridge's standard names, e.g. HubSpot
    # ``{"firstname": "first_name"}``. Lets the default field map work for every CRM.
    standard_fields: ClassVar[dict[str, str]] = {}
    # How this CRM writes dates, checkboxes and multi-values (``crm_adapters.field_format``);
    # None: values go out as they are. Adapters with rules implement ``field_kinds``.
    format_rules: ClassVar[FormatRules | None] = None
    # CRM fields known to hold plain text (the standard ones): pushing only these needs no
    # look-up of the CRM's field list.
    text_fields: ClassVar[frozenset[str]] = frozenset()
    # The CRM's documented rate limit (None: none documented). CONTRACT.md §11.
    rate_limit: ClassVar[RateLimit | None] = None

    def __init__(self, config: Mapping[str, Any], http: HttpClient) -> None:
        self.config = dict(config)
        self.http = http
        self._field_kinds: dict[str, FieldKind] | None = None
        # Set by the host to coordinate an OAuth refresh with its other processes
        # (``crm_adapters.oauth.RefreshGuard``); None: the adapter redeems on its own.
        self.refresh_guard: RefreshGuard | None = None
        # Set by the host to serialise the creation of a missing tag across its processes
        # (``crm_adapters.tag_catalogue``); None: this process's threads only.
        self.tag_guard: TagGuard | None = None
        # Set by the host to keep all its processes under ``rate_limit``: entered around every
        # request :meth:`call` makes (it may wait for a free slot). None: no throttling.
        self.throttle: Callable[[], AbstractContextManager[None]] | None = None

    # -- configuration helpers --

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> list[str]:
        """Problems with a connection's settings, as sentences naming the setting (empty: fine).

        Called when a connection is saved; override for checks beyond required/typed values
        (the custom webhook refuses unknown template variables here).
        """
        return []

    @property
    def field_map(self) -> dict[str, str]:
        """Local key → CRM field name."""
        configured = self.config.get("field_map")
        return dict(configured) if isinstance(configured, Mapping) else dict(DEFAULT_FIELD_MAP)

    def to_local_fields(self, crm_fields: Mapping[str, Any]) -> dict[str, Any]:
        """Apply the field map inbound: keep only mapped CRM fields, under their local keys."""
        return {local: crm_fields[crm] for local, crm in self.field_map.items() if crm in crm_fields}

    def to_crm_fields(self, local_fields: Mapping[str, Any]) -> dict[str, Any]:
        """Apply the field map outbound: local keys → CRM field names; unmapped keys dropped."""
        return {crm: local_fields[local] for local, crm in self.field_map.items() if local in local_fields}

    def with_standard_names(self, crm_fields: Mapping[str, Any]) -> dict[str, Any]:
        """Inbound: the CRM's fields plus its standard ones under crm-bridge's standard names
        (HubSpot ``firstname`` is also ``first_name``), so the default field map finds them."""
        result = dict(crm_fields)
        for native, standard in self.standard_fields.items():
            if native in crm_fields and standard not in result:
                result[standard] = crm_fields[native]
        return result

    def with_native_names(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Outbound: standard names (``first_name``) renamed to the CRM's own (``firstname``);
        anything else (custom fields) passes through unchanged."""
        to_native = {standard: native for native, standard in self.standard_fields.items()}
        result: dict[str, Any] = {}
        for name, value in fields.items():
            result.setdefault(to_native.get(name, name), value)
        return result

    def local_fields_from(self, crm_fields: Mapping[str, Any]) -> dict[str, Any]:
        """Inbound: CRM fields → local keys (standard names first, then the field map)."""
        return self.to_local_fields(self.with_standard_names(crm_fields))

    def formatted(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Outbound: CRM-named values written as the CRM's field list says each field is typed
        (a date as this CRM wants dates, a checkbox as its true/false, several values joined).
        The field list is read once per adapter, and only when a field other than the
        standard text ones goes out."""
        rules = self.format_rules
        if rules is None or all(name in self.text_fields for name in fields):
            return dict(fields)
        if self._field_kinds is None:
            try:
                self._field_kinds = self.field_kinds()
            except (AuthRefused, CrmRejected) as exc:
                # Credentials that may write contacts but not read the field list (a HubSpot
                # private app without the schema scope): values go out as they are, as before.
                log.warning("%s: field list unreadable (%s); values sent unformatted", self.type, exc.error_class)
                self._field_kinds = {}
        return format_fields(fields, self._field_kinds, rules)

    def field_kinds(self) -> dict[str, FieldKind]:
        """CRM field name → its kind, from the CRM's field list (adapters with ``format_rules``)."""
        raise NotImplementedError

    def setting(self, name: str, default: Any = None) -> Any:
        value = self.config.get(name)
        return default if value in (None, "") else value

    # -- inbound --

    def verify(self, request: InboundRequest) -> None:
        """Raise ``InvalidSignature`` when the connection signs and the request does not match."""

    def parse(self, request: InboundRequest) -> list[Contact]:
        """Turn the request into contacts. Raise ``InvalidPayload`` or ``MissingContactId``."""
        raise NotImplementedError

    def handles_verification_ping(self, request: InboundRequest) -> bool:
        """True for a CRM's URL check (Mailchimp's bare GET): answered 200 with no processing."""
        return False

    # -- CRM API --

    def redeem_refresh_token(
        self, *, token_url: str, client_id: str, refresh_token: str, grant: Callable[[], dict[str, str] | None]
    ) -> dict[str, str] | None:
        """Run an OAuth refresh ``grant`` once for everyone presenting ``refresh_token``: once per
        process (``crm_adapters.oauth.REFRESH_GRANTS``) and, through the host's
        ``refresh_guard``, once across its processes. Every adapter that refreshes tokens calls
        this rather than its grant directly. Returns the tokens to use, or None."""
        guard = self.refresh_guard

        def coordinated() -> dict[str, str] | None:
            return grant() if guard is None else guard(refresh_token, grant)

        return REFRESH_GRANTS.redeem(
            token_url=token_url, client_id=client_id, refresh_token=refresh_token, grant=coordinated
        )

    def settings_to_store(self) -> dict[str, Any]:
        """Settings the CRM changed while this adapter was in use (a refreshed OAuth token):
        the caller stores them on the connection, so the next use starts from them instead of
        from a token that no longer works (or a refresh token the CRM has already rotated)."""
        return {}

    def stand_in_answer(self, method: str, url: str, body: str) -> tuple[int, Any] | None:
        """What this CRM would answer ``method url`` with ``body`` (text) in a dry run that sends
        nothing: ``(status, JSON)`` shaped like its real answer, so the adapter carries on
        through the whole registration as it would for real. None: a plain ``200 {}``.
        Adapters whose next step reads the answer (a contact id) override this."""
        return None

    def check(self) -> str | None:
        """Make one cheap authenticated call; raise a typed error if the connection is broken.

        Returns None when the CRM was reached, else a sentence saying what was (and was not)
        checked, shown to the owner instead of "reached the CRM" (a custom webhook without a
        ``test_url`` sends nothing)."""
        raise NotImplementedError

    def find_contact_id(self, email: str) -> str | None:
        raise NotImplementedError

    def load_contact(self, contact_id: str) -> Contact:
        """The contact with local fields and, where the CRM gives them, tags (names)."""
        raise NotImplementedError

    def load_tags(self, contact_id: str) -> list[str]:
        raise NotImplementedError

    def upsert_contact(self, contact: OutboundContact) -> str | None:
        """Create or update by email, never making a duplicate. Returns the contact id (None
        when the target gives none, as a plain webhook may)."""
        raise NotImplementedError

    def update_fields(self, contact_id: str, fields: Mapping[str, Any]) -> str | None:
        """Set CRM-named fields (custom ones included) on an existing contact. Returns the
        contact's new id when the update changed it (Mailchimp's id follows the email), else
        None. Raises ``ContactNotFound`` for a stale id: the caller looks the contact up again
        by email (``find_contact_id``) and retries, as WP Fusion's ``handle_not_found_error``."""
        raise NotImplementedError

    def apply_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        raise NotImplementedError

    def remove_tags(self, contact_id: str, tags: Sequence[str]) -> None:
        raise NotImplementedError

    def list_tags(self) -> list[str]:
        raise NotImplementedError

    def list_fields(self) -> list[str]:
        raise NotImplementedError

    # -- listing (batch import and resync, CONTRACT.md §11) --

    def list_contacts(self, tag: str | None = None, cursor: str | None = None) -> ContactPage:
        """One page of the CRM's contacts (those with ``tag``, a tag name, when given), with
        local fields and, where the listing carries them, tags. ``cursor`` is the previous
        page's ``next_cursor`` (None: the first page). A CRM without a listing API raises
        ``ListingNotSupported`` (this default)."""
        raise ListingNotSupported(f"{self.label or self.type or 'this CRM'} has no API to list contacts")

    # -- HTTP plumbing --

    def call(
        self,
        method: str,
        url: str,
        *,
        not_found_statuses: Iterable[int] = (404,),
        **kwargs: Any,
    ) -> HttpResponse:
        """One CRM request with status handling shared by every adapter.

        2xx returns the response. 401/403 → ``AuthRefused``; ``not_found_statuses`` →
        ``ContactNotFound``; 429 → ``RateLimited`` (with ``Retry-After``); 408, 425, 5xx →
        ``CrmUnavailable``; any other status (3xx included: redirects are never followed) →
        ``CrmRejected``. Transport failures come from the client already typed.
        """
        kwargs.setdefault("timeout", float(self.setting("timeout", self.default_timeout)))
        if self.throttle is None:
            response = self.http.request(method, url, **kwargs)
        else:
            with self.throttle():
                response = self.http.request(method, url, **kwargs)
        self.raise_for_status(response, not_found_statuses=not_found_statuses)
        return response

    def raise_for_status(self, response: HttpResponse, *, not_found_statuses: Iterable[int] = (404,)) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        detail = dict(status=status, body=response.text)
        summary = f"{self.type or 'CRM'} answered HTTP {status}"
        if status in (401, 403):
            raise AuthRefused(f"{summary}: credentials refused", **detail)
        if status in tuple(not_found_statuses):
            raise ContactNotFound(f"{summary}: not found", **detail)
        if status == 429:
            raise RateLimited(
                f"{summary}: rate limited",
                retry_after=self.retry_after_seconds(response),
                **detail,
            )
        if status in (408, 425) or status >= 500:
            raise CrmUnavailable(
                f"{summary}: unavailable",
                retry_after=self.retry_after_seconds(response),
                **detail,
            )
        if 300 <= status < 400 and response.header("Location"):
            raise CrmRejected(f"{summary}: {self.redirect_advice(response)}", **detail)
        raise CrmRejected(f"{summary}: rejected", **detail)

    def redirect_advice(self, response: HttpResponse) -> str:
        """Where a redirect points and the ``base_url`` that reaches it (``parsing.redirect_advice``)."""
        return redirect_advice(response.url, str(response.header("Location")), str(self.setting("base_url", "")))

    def retry_after_seconds(self, response: HttpResponse) -> float | None:
        """The CRM's ``Retry-After`` in seconds. Override where a CRM uses other units."""
        return parse_retry_after(response.header("Retry-After"))
