"""Payload builders shared by the inbound tests (FluentCRM outgoing-webhook shapes)."""

from __future__ import annotations

from typing import Any

CRM_BASE = "https://crm.example.com"
FLUENT_API = CRM_BASE + "/wp-json/fluent-crm/v2"


def subscriber(
    contact_id: int | str = 42,
    email: str | None = "jane.doe@example.com",
    tags: list[dict[str, Any]] | None = (),  # type: ignore[assignment]
    **extra: Any,
) -> dict:
    """A FluentCRM outgoing-webhook subscriber body. ``tags`` defaults to "no tags" (an empty
    list, so no CRM call is needed); ``tags=None`` leaves them out ("not in payload")."""
    body: dict[str, Any] = {"id": contact_id, "first_name": "Jane", "last_name": "Doe", **extra}
    if tags is not None:
        body["tags"] = list(tags)
    if email is not None:
        body["email"] = email
    return body


def fluent_tags(*slugs: str) -> list[dict[str, Any]]:
    return [{"id": index, "title": slug.title(), "slug": slug} for index, slug in enumerate(slugs, 1)]
