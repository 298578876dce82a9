"""FluentCRM (WordPress) adapter.

Settings: ``base_url`` (the WordPress site; ``/wp-json/fluent-crm/v2`` is added), ``username``
and ``app_password`` (a WordPress application password; Basic auth).

API: https://rest-api.fluentcrm.com/ . Quirks seen in the recorded exchanges under
``shared/fixtures/fluentcrm/api``: a missing contact is a 422 ``{"message":"Subscriber not
found"}``, not a 404.

Inbound: FluentCRM's "Outgoing Webhook" automation action posts the subscriber (JSON or form);
tags, when present, are objects whose ``slug`` is the tag name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from crm_adapters.base import Adapter, Contact, InboundRequest, Setting, normalise_email, stringify_id
from crm_adapters.errors import InvalidPayload, MissingContactId

API_PATH = "/wp-json/fluent-crm/v2"
NOT_FOUND = (404, 422)


def _tag_name(tag: Any) -> str | None:
    if isinstance(tag, Mapping):
        value = tag.get("slug") or tag.get("title")
        return str(value) if value else None
    return str(tag).strip() or None if tag is not None else None


class FluentCrmAdapter(Adapter):
    type: ClassVar[str] = "fluentcrm"
    label: ClassVar[str] = "FluentCRM"
    settings: ClassVar[list[Setting]] = [
        Setting("base_url", "WordPress site URL", required=True, kind="url"),
        Setting("username", "WordPress username", required=True),
        Setting("app_password", "Application password", required=True, secret=True),
    ]
    capabilities: ClassVar[frozenset[str]] = frozenset({"tags", "custom_fields"})

    # -- inbound --

    def parse(self, request: InboundRequest) -> list[Contact]:
        body: Any = request.json if request.json is not None else dict(request.form)
        if request.has_body and request.json is None and not request.form:
            raise InvalidPayload("body is neither JSON nor a form")
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
        for group in ("custom_field", "custom_fields", "custom_values"):
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
            fields=self.to_local_fields(crm_fields),
            tags=tags,
            raw=dict(subscriber),
        )

    # -- API --

    @property
    def api_base(self) -> str:
        return str(self.setting("base_url", "")).rstrip("/") + API_PATH

    @property
    def auth(self) -> tuple[str, str]:
        return (str(self.setting("username", "")), str(self.setting("app_password", "")))

    def _get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", self.api_base + path, auth=self.auth, **kwargs).json()

    def check(self) -> None:
        self._get("/tags", params={"per_page": 1})

    def load_contact(self, contact_id: str) -> Contact:
        data = self._get(f"/subscribers/{contact_id}", not_found_statuses=NOT_FOUND) or {}
        subscriber = data.get("subscriber")
        if not isinstance(subscriber, Mapping):
            raise InvalidPayload("FluentCRM answered without a subscriber object")
        return self._contact_from(subscriber)

    def load_tags(self, contact_id: str) -> list[str]:
        return self.load_contact(contact_id).tags or []
