"""An inbound webhook as plain data: what an adapter's ``parse`` and ``verify`` read.

Its own module so that ``parsing`` (which reads its body) and ``base`` (the adapter contract)
can both use it without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class InboundRequest:
    """An inbound webhook as plain data: what ``parse`` and ``verify`` read.

    ``query`` has ``access_key`` removed; ``headers`` keys are lower-cased; ``form`` is the
    form body parsed into nested dicts (PHP bracket keys, ``contact[tags]=a`` →
    ``{"contact": {"tags": "a"}}``); ``json`` is the parsed JSON body or None.
    """

    method: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = ""
    json: Any = None
    form: Mapping[str, Any] = field(default_factory=dict)
    # The full URL the CRM called (scheme, host, path, query as received). Only signature
    # schemes that sign the URI need it (HubSpot v3); empty when the caller does not know it.
    url: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def has_body(self) -> bool:
        return bool(self.body.strip())
