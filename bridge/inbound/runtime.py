"""What one inbound webhook runs with: the connection ready to use, the plan for each contact,
and the typed refusals. Shared by :mod:`bridge.inbound.service` (the order of work) and
:mod:`bridge.inbound.changes` (what a contact does to a user)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import has_app_context

from bridge.connections.service import adapter_for
from bridge.connections.settings import UnreadableSecrets, effective_settings, settings_for_type
from bridge.errors import ApiError
from bridge.extensions import db
from bridge.inbound.keys import KeyedConnection
from bridge.models import Connection
from bridge.outbound.client import OutboundClient, outbound_client
from bridge.outbound.kept_clients import kept_clients
from crm_adapters.base import Adapter, Contact, HttpResponse
from crm_adapters.errors import AdapterError


class InboundRejected(ApiError):
    """A webhook the rules refuse (4xx) or cannot serve now (502, 503). Nothing was written."""


class InboundJobRejected(AdapterError):
    """A queued webhook the rules refuse: final, retrying cannot help."""

    error_class = "inbound_rejected"


class LazyOutboundClient:
    """Checks the outbound client out on the first CRM call only: most webhooks carry
    everything and never call the CRM, and the update path is hot.

    The client is this thread's kept one for the connection (``kept_clients``), reset for this
    webhook: an id-only ``update`` is one CRM read, and with a session per webhook each read
    paid a new TCP (and TLS) connection to the CRM. Outside an app, a fresh client."""

    def __init__(self, secrets: tuple[str, ...], connection_id: int | None = None) -> None:
        self.secrets = secrets
        self.connection_id = connection_id
        self._client: OutboundClient | None = None

    @property
    def client(self) -> OutboundClient:
        if self._client is None:
            if has_app_context():
                self._client = kept_clients("inbound").checkout(self.connection_id, self.secrets)
            else:
                self._client = outbound_client(self.secrets)
        return self._client

    def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        return self.client.request(method, url, **kwargs)


@dataclass
class ConnectionRuntime:
    """A connection ready to serve one webhook: settings decrypted once, adapter built once.

    The ``Connection`` row itself is loaded only when something needs it (creating a user,
    linking a contact, queueing a job): the update path works with ``connection_id`` alone, so
    a runtime built from a cached :class:`~bridge.inbound.keys.KeyedConnection` costs no query.
    """

    connection_id: int
    name: str
    settings: dict[str, Any]
    adapter: Adapter
    can_call_crm: bool
    loaded: Connection | None = None

    @property
    def connection(self) -> Connection:
        if self.loaded is None:
            found = db.session.get(Connection, self.connection_id)
            if found is None:
                raise InboundRejected(403, "invalid_access_key", "the access key is missing or wrong")
            self.loaded = found
        return self.loaded

    @classmethod
    def prepare(cls, connection: Connection, http: OutboundClient | None = None) -> ConnectionRuntime:
        declared = settings_for_type(connection.type)
        settings = effective_settings(connection)
        secrets = [str(settings[s.name]) for s in declared if s.secret and settings.get(s.name)]
        client = http or LazyOutboundClient(tuple(secrets), connection.id)
        adapter = adapter_for(connection.type, settings, client, connection_id=connection.id)
        complete = all(settings.get(s.name) not in (None, "") for s in declared if s.required)
        return cls(connection.id, connection.name, settings, adapter, complete, connection)

    @classmethod
    def from_keyed(cls, keyed: KeyedConnection) -> ConnectionRuntime:
        """A runtime from a cached key snapshot: a fresh adapter and lazy outbound client per
        request (the kept client is reset per webhook: clients record exchanges), the decrypted
        settings shared (a shallow copy).

        A connection with a secret this SECRET_KEY cannot decrypt is refused with 503
        ``secret_unreadable``: its adapter would call the CRM without credentials or skip a
        signature check. 503 as for ``not_configured`` (the closest in CONTRACT §3): the server
        is misconfigured, not the request, and the CRM retries a 5xx, so webhooks sent meanwhile
        go through once the key is restored or the secret set again."""
        if keyed.unreadable:
            message = str(UnreadableSecrets(keyed.name, keyed.unreadable))
            raise InboundRejected(503, "secret_unreadable", message)
        settings = dict(keyed.settings)
        adapter = adapter_for(
            keyed.type,
            settings,
            LazyOutboundClient(keyed.secrets, keyed.connection_id),
            connection_id=keyed.connection_id,
        )
        return cls(keyed.connection_id, keyed.name, settings, adapter, keyed.can_call_crm)


@dataclass
class InboundOutcome:
    """What a webhook did: the response body plus what the inbound log records."""

    body: dict[str, Any]
    outcome: str
    status: int = 200
    contact_id: str | None = None
    user_id: int | None = None


@dataclass
class ContactResult:
    body: dict[str, Any]
    outcome: str
    user_id: int | None = None
    chosen_password: str | None = field(default=None, repr=False)  # to hash once the user is committed
    changed: bool = True  # an ``add`` that matched a user: whether it changed anything (batch counts)
    fingerprint: str | None = None  # a user the batch import made set-based (``undo`` compares it)


@dataclass
class Credentials:
    """A new user's password. ``generated`` is set when we made the password up: it is hashed
    cheaply (``passwords.hash_generated_password``) when the user is created, inside the unit,
    after the race for the contact is settled. A password the CRM chose is hashed slowly: before
    the transaction (``password_hash``) for a queued webhook, else after the commit that created
    the user (``chosen``), so neither a request that finds the user nor the loser of a race for
    it pays for a hash, and no slow hash holds SQLite's write lock."""

    password_hash: str | None
    generated: str | None = field(default=None, repr=False)
    chosen: str | None = field(default=None, repr=False)


@dataclass
class ContactPlan:
    """A contact completed from the CRM, with credentials ready in case it creates a user."""

    contact: Contact
    credentials: Credentials | None = None


def text_value(value: Any) -> str | None:
    """A CRM value as trimmed text, None when empty."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None
