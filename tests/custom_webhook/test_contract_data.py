"""Data the shared adapter contract suite (tests/adapters/contract.py) needs for custom_webhook.

Declared as plain data in the shape of the suite's ``AdapterCase``/``Operation``/``Exchange``/
``Sample`` (field for field) so the lead can hook it in with a few lines; the tests below run the
same declarations against the adapter with ``responses`` (ordered), so the data is known good.

A custom webhook is a one-way endpoint: it cannot search or load contacts (``find_contact_id``
is None, ``load_contact`` raises ``ContactNotFound``), tags ride in the payload (``apply_tags``
and ``remove_tags`` send nothing), and ``upsert`` returns an id only when ``response_id_path``
finds one in the answer.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses
from responses import matchers
from responses.registries import OrderedRegistry

from bridge.outbound.client import OutboundClient, OutboundPolicy
from crm_adapters.base import InboundRequest, OutboundContact, OutboundEvent
from crm_adapters.custom_webhook import SETTINGS_ONLY, CustomWebhookAdapter
from crm_adapters.errors import ContactNotFound

API = "https://hooks.example.com"
TOKEN = "contract-token-123"
NEW = OutboundContact(
    email="new@example.com",
    fields={"email": "new@example.com", "first_name": "Nia"},
    tags=["vip"],
    first_name="Nia",
    last_name="Okafor",
    username="nia",
    meta={"plan": "pro"},
    event=OutboundEvent(id="dlv_101", type="user.registered", occurred_at="2026-02-03T04:05:06+00:00"),
)
EXPECTED_NEW_BODY = {
    "type": "user.registered",
    "id": "dlv_101",
    "contact": {"email": "new@example.com", "first_name": "Nia", "tags": ["vip"], "meta": {"plan": "pro"}},
}

CASE: dict[str, Any] = {
    "type": "custom_webhook",
    "config": {
        "url": API + "/crm/contacts",
        "method": "POST",
        "auth": {"type": "bearer", "token": TOKEN},
        "response_id_path": "data.id",
    },
    "api": API,
    "auth_header": ("Authorization", f"Bearer {TOKEN}"),
    "fixtures": [],  # no CRM-specific fixtures: the inbound format is generic JSON
    "operations": {
        "check": {"method": "check", "args": (), "exchanges": [], "returns": SETTINGS_ONLY},
        "find_contact_id": {
            "method": "find_contact_id",
            "args": ("new@example.com",),
            "exchanges": [],
            "returns": None,
        },
        "find_contact_id_missing": {
            "method": "find_contact_id",
            "args": ("x@example.com",),
            "exchanges": [],
            "returns": None,
        },
        "load_contact": {"method": "load_contact", "args": ("42",), "exchanges": [], "raises": ContactNotFound},
        "load_contact_missing": {
            "method": "load_contact",
            "args": ("404",),
            "exchanges": [],
            "raises": ContactNotFound,
        },
        "load_tags": {"method": "load_tags", "args": ("42",), "exchanges": [], "returns": []},
        "upsert_new": {
            "method": "upsert_contact",
            "args": (NEW,),
            "exchanges": [
                {
                    "method": "POST",
                    "path": "/crm/contacts",
                    "status": 201,
                    "json": {"data": {"id": 42}},
                    "sends": EXPECTED_NEW_BODY,
                }
            ],
            "returns": "42",
        },
        "upsert_existing": {
            "method": "upsert_contact",
            "args": (NEW,),
            "exchanges": [
                {
                    "method": "POST",
                    "path": "/crm/contacts",
                    "status": 200,
                    "json": {"ok": True},
                    "sends": EXPECTED_NEW_BODY,
                }
            ],
            "returns": None,  # the endpoint gave no id
        },
        "update_fields_custom": {
            "method": "update_fields",
            "args": ("42", {"favourite_colour": "teal"}),
            "exchanges": [
                {
                    "method": "POST",
                    "path": "/crm/contacts",
                    "status": 200,
                    "json": {},
                    "sends": {
                        "type": "contact.updated",
                        "contact": {"id": "42", "fields": {"favourite_colour": "teal"}},
                    },
                }
            ],
            "returns": None,
        },
        "apply_tags": {"method": "apply_tags", "args": ("42", ["vip"]), "exchanges": [], "returns": None},
        "remove_tags": {"method": "remove_tags", "args": ("42", ["vip"]), "exchanges": [], "returns": None},
        "list_tags": {"method": "list_tags", "args": (), "exchanges": [], "returns": []},
        "list_fields": {"method": "list_fields", "args": (), "exchanges": [], "returns": []},
    },
    "samples": [
        {
            "name": "generic json",
            "request": InboundRequest(
                "POST",
                body=b'{"id": 42, "email": "Nia@Example.com", "first_name": "Nia", "tags": ["vip", "pro"]}',
                content_type="application/json",
                json={"id": 42, "email": "Nia@Example.com", "first_name": "Nia", "tags": ["vip", "pro"]},
            ),
            "expect": {
                "contact_id": "42",
                "email": "nia@example.com",
                "tags": ["vip", "pro"],
                "fields": {"first_name": "Nia"},
            },
        },
        {
            "name": "form with comma tags",
            "request": InboundRequest(
                "POST",
                body=b"contact_id=7&tags=a,+b",
                content_type="application/x-www-form-urlencoded",
                form={"contact_id": "7", "tags": "a, b"},
            ),
            "expect": {"contact_id": "7", "email": None, "tags": ["a", "b"]},
        },
    ],
}


def is_subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and is_subset(v, actual[k]) for k, v in expected.items())
    return expected == actual


@pytest.mark.parametrize("name", sorted(CASE["operations"]))
def test_declared_operation_matches_the_adapter(name: str) -> None:
    operation = CASE["operations"][name]
    adapter = CustomWebhookAdapter(CASE["config"], OutboundClient(policy=OutboundPolicy(allow_private=True)))
    with responses.RequestsMock(registry=OrderedRegistry) as mock:
        for exchange in operation["exchanges"]:
            mock.add(
                exchange["method"],
                CASE["api"] + exchange["path"],
                status=exchange["status"],
                json=exchange["json"],
                match=[matchers.header_matcher(dict([CASE["auth_header"]]))],
            )
        if operation.get("raises"):
            with pytest.raises(operation["raises"]):
                getattr(adapter, operation["method"])(*operation["args"])
        else:
            assert getattr(adapter, operation["method"])(*operation["args"]) == operation["returns"]
        for call, exchange in zip(mock.calls, operation["exchanges"], strict=True):
            assert is_subset(exchange["sends"], json.loads(call.request.body))


@pytest.mark.parametrize("sample", CASE["samples"], ids=lambda s: s["name"])
def test_declared_samples_parse(sample: dict[str, Any]) -> None:
    (contact,) = CustomWebhookAdapter({}, OutboundClient()).parse(sample["request"])
    expect = sample["expect"]
    assert (contact.contact_id, contact.email, contact.tags) == (expect["contact_id"], expect["email"], expect["tags"])
    assert is_subset(expect.get("fields", {}), contact.fields)
