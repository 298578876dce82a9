"""ActiveCampaign adapter.

Settings: ``base_url`` (the account's API URL, e.g. ``https://ACCOUNT.api-us1.com``; ``/api/3/``
is added) and ``api_key`` (sent as the ``Api-Token`` header).

Inbound: ActiveCampaign webhooks are form-encoded with PHP bracket keys
(``contact[email]=…``); ``contact[tags]`` is one string joined by ", ".
API: https://developers.activecampaign.com/reference
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from crm_adapters.base import (
    Adapter,
    Contact,
    InboundRequest,
    Setting,
    normalise_email,
    split_tags,
    stringify_id,
)
from crm_adapters.errors import InvalidPayload, MissingContactId


class ActiveCampaignAdapter(Adapter):
    type: ClassVar[str] = "activecampaign"
    label: ClassVar[str] = "ActiveCampaign"
    settings: ClassVar[list[Setting]] = [
        Setting("base_url", "API URL", required=True, kind="url"),
        Setting("api_key", "API key", required=True, secret=True),
    ]
    capabilities: ClassVar[frozenset[str]] = frozenset({"tags", "custom_fields"})

    def parse(self, request: InboundRequest) -> list[Contact]:
        source: Any = request.form if request.form else request.json
        if request.has_body and source is None:
            raise InvalidPayload("body is neither a form nor JSON")
        source = source or {}
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
                fields=self.to_local_fields(crm_fields),
                tags=tags,
                raw=dict(source),
            )
        ]
