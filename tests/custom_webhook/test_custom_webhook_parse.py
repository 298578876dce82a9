"""Inbound parsing of a generic JSON contact."""

from __future__ import annotations

import json

import pytest

from bridge.outbound.client import OutboundClient
from crm_adapters.base import InboundRequest
from crm_adapters.custom_webhook import CustomWebhookAdapter
from crm_adapters.errors import ContactNotFound, InvalidPayload, MissingContactId


def parse(payload: object, query: dict[str, str] | None = None) -> list:
    body = json.dumps(payload).encode()
    request = InboundRequest("POST", query=query or {}, body=body, content_type="application/json", json=payload)
    return CustomWebhookAdapter({}, OutboundClient()).parse(request)


def test_generic_contact() -> None:
    (contact,) = parse({"id": 12, "email": " Ada@Example.com", "first_name": "Ada", "tags": "vip, new"})
    assert contact.contact_id == "12" and contact.email == "ada@example.com"
    assert contact.fields == {"email": "ada@example.com", "first_name": "Ada"}
    assert contact.tags == ["vip", "new"]


def test_wrapped_contact_and_query_id_wins() -> None:
    (contact,) = parse({"contact": {"contact_id": "9", "email": "b@example.com", "tags": ["a"]}}, {"contact_id": "77"})
    assert contact.contact_id == "77" and contact.tags == ["a"]


def test_tags_absent_means_not_in_payload() -> None:
    assert parse({"id": 1})[0].tags is None


def test_list_of_contacts() -> None:
    assert [c.contact_id for c in parse([{"id": 1}, {"id": 2}])] == ["1", "2"]


def test_bad_payloads() -> None:
    with pytest.raises(MissingContactId):
        parse({"email": "x@example.com"})
    with pytest.raises(InvalidPayload):
        parse(["not an object"])


def test_contacts_cannot_be_loaded() -> None:
    adapter = CustomWebhookAdapter({}, OutboundClient())
    with pytest.raises(ContactNotFound):
        adapter.load_contact("1")
    assert adapter.find_contact_id("a@example.com") is None and adapter.load_tags("1") == []
