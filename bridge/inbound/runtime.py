"""What one inbound webhook runs with: the connection ready to use, the plan for each contact,
and the typed refusals. Shared by :mod:`bridge.inbound.service` (the order of work) and
:mod:`bridge.inbound.changes` (what a contact does to a user)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.adapters import adapter_class
from bridge.connections import effective_settings, settings_for_type
from bridge.errors import ApiError
from bridge.http import OutboundClient, outbound_client
from bridge.models import Connection
from crm_adapters.base import Adapter, Contact, HttpResponse
from crm_adapters.errors import AdapterError


class InboundRejected(ApiError):
    """A webhook the rules refuse (4xx) or cannot serve now (502). Nothing was written."""


class InboundJobRejected(AdapterError):
    """A queued webhook the rules refuse: final, retrying cannot help."""

    error_class = "inbound_rejected"


class LazyOutboundClient:
    """Builds the outbound client (a ``requests`` session) on the first CRM call only: most
    webhooks carry everything and never call the CRM, and the update path is hot."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.secrets = secrets
        self._client: OutboundClient | None = None

    @property
    def client(self) -> OutboundClient:
        if self._client is None:
            self._client = outbound_client(self.secrets)
        return self._client

    def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        return self.client.request(method, url, **kwargs)


@dataclass
class ConnectionRuntime:
    """A connection ready to serve one webhook: settings decrypted once, adapter built once."""

    connection: Connection
    connection_id: int
    name: str
    settings: dict[str, Any]
    adapter: Adapter
    can_call_crm: bool

    @classmethod
    def prepare(cls, connection: Connection, http: OutboundClient | None = None) -> ConnectionRuntime:
        declared = settings_for_type(connection.type)
        settings = effective_settings(connection)
        secrets = [str(settings[s.name]) for s in declared if s.secret and settings.get(s.name)]
        client = http or LazyOutboundClient(tuple(secrets))
        adapter = adapter_class(connection.type)(settings, client)
        complete = all(settings.get(s.name) not in (None, "") for s in declared if s.required)
        return cls(connection, connection.id, connection.name, settings, adapter, complete)


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


@dataclass
class Credentials:
    """A new user's password, hashed before the write transaction (hashing is deliberately slow
    and must not hold SQLite's write lock). ``generated`` is set when we made the password up."""

    password_hash: str
    generated: str | None = field(default=None, repr=False)


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
