"""HubSpot: data for the contract suite (CRM v3 contacts, lists as tags, v3 signatures)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from adapters.contract import AdapterCase, AdapterContract, Exchange, Operation, Sample, inbound, includes
from crm_adapters.base import InboundRequest, OutboundContact
from crm_adapters.errors import ContactNotFound, DuplicateContact

API = "https://api.hubapi.com"
SECRET = "hs-client-secret"
URL = "https://bridge.example.com/?wpf_action=update&access_key=k"
SAM = {
    "id": "3501",
    "properties": {"email": "Sam@Example.com", "firstname": "Sam", "lastname": "Lee", "hs_object_id": "3501"},
}
NOT_FOUND = {"status": "error", "message": "resource not found", "category": "OBJECT_NOT_FOUND"}
LISTS_PAGE_1 = {
    "lists": [
        {"listId": "11", "name": "Customers", "processingType": "MANUAL", "objectTypeId": "0-1"},
        {"listId": "12", "name": "VIP", "processingType": "MANUAL", "objectTypeId": "0-1"},
    ],
    "hasMore": True,
    "offset": 2,
    "total": 3,
}
LISTS_PAGE_2 = {
    "lists": [{"listId": "13", "name": "Course Two", "processingType": "MANUAL", "objectTypeId": "0-1"}],
    "hasMore": False,
    "offset": 3,
    "total": 3,
}
ALL_LISTS = [
    Exchange("POST", "/crm/v3/lists/search", json=LISTS_PAGE_1, sends={"offset": 0}),
    Exchange("POST", "/crm/v3/lists/search", json=LISTS_PAGE_2, sends={"offset": 2}),
]
NEW = OutboundContact(email="sam@example.com", fields={"first_name": "Sam", "last_name": "Lee"})
BATCH = json.dumps(
    [
        {
            "objectId": 1,
            "subscriptionType": "contact.propertyChange",
            "propertyName": "email",
            "propertyValue": "A@x.io",
        },
        {
            "objectId": 1,
            "subscriptionType": "contact.propertyChange",
            "propertyName": "firstname",
            "propertyValue": "Al",
        },
        {"objectId": 77, "subscriptionType": "deal.creation"},
    ]
)


def signed(
    *,
    age_s: float = 0,
    secret: str = SECRET,
    body: str = '[{"objectId": 1}]',
    url: str = URL,
    tamper: bool = False,
    sent_url: str | None = None,
) -> InboundRequest:
    """A request signed the way HubSpot signs (method + URI + body + timestamp in ms).
    ``sent_url`` is the URL as received when it differs from the signed one (escapes)."""
    timestamp = str(int((time.time() - age_s) * 1000))
    message = f"POST{url}{body}{timestamp}".encode()
    signature = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()
    return inbound(
        "POST",
        body=body + (" " if tamper else ""),
        content_type="application/json",
        url=url if sent_url is None else sent_url,
        headers={"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp},
    )


def _loaded(contact) -> None:
    assert (contact.contact_id, contact.email, contact.tags) == ("3501", "sam@example.com", None)
    assert contact.fields == {"first_name": "Sam", "last_name": "Lee", "email": "sam@example.com"}


class TestHubSpot(AdapterContract):
    case = AdapterCase(
        type="hubspot",
        config={"access_token": "pat-na1-token"},
        signing_config={"client_secret": SECRET},
        api=API,
        auth_header=("Authorization", "Bearer pat-na1-token"),
        fixtures=["hubspot/workflow_contact.json", "hubspot/webhook_batch.json"],
        retry_after_header=("10", 10.0),  # seconds, as HTTP defines it
        samples=[
            Sample(
                "newer workflow webhook: flat properties",
                inbound(
                    body='{"hs_object_id": 42, "email": "Flat@Ex.com", "firstname": "Flo"}',
                    content_type="application/json",
                ),
                {
                    "contact_id": "42",
                    "email": "flat@ex.com",
                    "fields": {"first_name": "Flo", "email": "flat@ex.com"},
                    "tags": None,
                },
            ),
            Sample(
                "batch: events for one contact merge; other objects are skipped",
                inbound(body=BATCH, content_type="application/json"),
                {
                    "contact_ids": ["1"],
                    "each": [{"email": "a@x.io", "fields": {"first_name": "Al", "email": "a@x.io"}, "tags": None}],
                },
            ),
        ],
        signed_requests=[
            ("a fresh, correct signature", lambda: signed(), True),
            (
                "HubSpot signs the URI with some escapes decoded",
                lambda: signed(url=URL + "&n=a:b@c", sent_url=URL + "&n=a%3Ab%40c"),
                True,
            ),
            ("a body changed after signing", lambda: signed(tamper=True), False),
            ("another app's secret", lambda: signed(secret="other"), False),
            ("older than five minutes", lambda: signed(age_s=301), False),
            (
                "no signature headers",
                lambda: inbound("POST", body="[]", content_type="application/json", url=URL),
                False,
            ),
            ("no URL to check against", lambda: signed(url=""), False),
        ],
        operations={
            "check": Operation(
                "check", (), [Exchange("GET", "/crm/v3/objects/contacts", json={"results": []}, params={"limit": "1"})]
            ),
            "find_contact_id": Operation(
                "find_contact_id",
                ("sam@example.com",),
                [Exchange("GET", "/crm/v3/objects/contacts/sam@example.com", json=SAM, params={"idProperty": "email"})],
                returns="3501",
            ),
            "find_contact_id_missing": Operation(
                "find_contact_id",
                ("nobody@example.com",),
                [Exchange("GET", "/crm/v3/objects/contacts/nobody@example.com", status=404, json=NOT_FOUND)],
                returns=None,
            ),
            "load_contact": Operation(
                "load_contact",
                ("3501",),
                [
                    Exchange(
                        "GET",
                        "/crm/v3/objects/contacts/3501",
                        json=SAM,
                        params={"properties": "email,firstname,lastname"},
                    )
                ],
                check=_loaded,
            ),
            "load_contact_missing": Operation(
                "load_contact",
                ("9",),
                [Exchange("GET", "/crm/v3/objects/contacts/9", status=404, json=NOT_FOUND)],
                raises=ContactNotFound,
            ),
            "load_tags": Operation(
                "load_tags",
                ("3501",),
                [
                    Exchange(
                        "GET",
                        "/crm/v3/lists/records/0-1/3501/memberships",
                        json={"results": [{"listId": "13"}, {"listId": "12"}], "total": 2},
                    ),
                    *ALL_LISTS,
                ],
                returns=["Course Two", "VIP"],
            ),
            "upsert_new": Operation(
                "upsert_contact",
                (NEW,),
                [
                    Exchange("GET", "/crm/v3/objects/contacts/sam@example.com", status=404, json=NOT_FOUND),
                    Exchange(
                        "POST",
                        "/crm/v3/objects/contacts",
                        status=201,
                        json=SAM,
                        sends={"properties": {"email": "sam@example.com", "firstname": "Sam", "lastname": "Lee"}},
                    ),
                ],
                returns="3501",
            ),
            "upsert_existing": Operation(
                "upsert_contact",
                (NEW,),
                [
                    Exchange("GET", "/crm/v3/objects/contacts/sam@example.com", json=SAM),
                    Exchange(
                        "PATCH",
                        "/crm/v3/objects/contacts/3501",
                        json=SAM,
                        sends={"properties": {"firstname": "Sam", "lastname": "Lee"}},
                    ),
                ],
                returns="3501",
            ),
            "update_fields_custom": Operation(
                "update_fields",
                ("3501", {"wp_password": "s3cret-Passw0rd"}),
                [
                    Exchange(  # a custom property: its type is read first (field_format)
                        "GET",
                        "/crm/v3/properties/contacts",
                        json={"results": [{"name": "wp_password", "type": "string", "fieldType": "text"}]},
                    ),
                    Exchange(
                        "PATCH",
                        "/crm/v3/objects/contacts/3501",
                        json=SAM,
                        sends={"properties": {"wp_password": "s3cret-Passw0rd"}},
                    ),
                ],
                returns=None,
            ),
            "apply_tags": Operation(
                "apply_tags",
                ("3501", ["vip", "Newcomers"]),
                [
                    *ALL_LISTS,
                    Exchange(
                        "POST",
                        "/crm/v3/lists",
                        json={"list": {"listId": "20", "name": "Newcomers"}},
                        sends={"name": "Newcomers", "objectTypeId": "0-1", "processingType": "MANUAL"},
                    ),
                    Exchange(
                        "PUT", "/crm/v3/lists/12/memberships/add", json={"recordIdsAdded": ["3501"]}, sends=["3501"]
                    ),
                    Exchange(
                        "PUT", "/crm/v3/lists/20/memberships/add", json={"recordIdsAdded": ["3501"]}, sends=["3501"]
                    ),
                ],
            ),
            "remove_tags": Operation(
                "remove_tags",
                ("3501", ["Customers", "unknown"]),
                [*ALL_LISTS, Exchange("PUT", "/crm/v3/lists/11/memberships/remove", json={}, sends=["3501"])],
            ),
            "list_tags": Operation("list_tags", (), ALL_LISTS, returns=["Customers", "VIP", "Course Two"]),
            "list_fields": Operation(
                "list_fields",
                (),
                [
                    Exchange(
                        "GET",
                        "/crm/v3/properties/contacts",
                        json={"results": [{"name": "email"}, {"name": "firstname"}, {"name": "wp_password"}]},
                    )
                ],
                check=includes("email", "firstname", "wp_password"),
            ),
        },
    )


def test_create_that_loses_a_race_updates_the_existing_contact() -> None:
    """HubSpot answers 409 "Existing ID: N" when the email was created meanwhile: update N."""
    operation = Operation(
        "upsert_contact",
        (NEW,),
        [
            Exchange("GET", "/crm/v3/objects/contacts/sam@example.com", status=404, json=NOT_FOUND),
            Exchange(
                "POST",
                "/crm/v3/objects/contacts",
                status=409,
                json={
                    "status": "error",
                    "message": "Contact already exists. Existing ID: 3501",
                    "category": "CONFLICT",
                },
            ),
            Exchange("PATCH", "/crm/v3/objects/contacts/3501", json=SAM, sends={"properties": {"firstname": "Sam"}}),
        ],
    )
    assert TestHubSpot().run(operation) == "3501"


def test_a_conflict_without_an_existing_id_is_a_duplicate_contact_error() -> None:
    operation = Operation(
        "upsert_contact",
        (NEW,),
        [
            Exchange("GET", "/crm/v3/objects/contacts/sam@example.com", status=404, json=NOT_FOUND),
            Exchange("POST", "/crm/v3/objects/contacts", status=409, json={"status": "error", "category": "CONFLICT"}),
        ],
        raises=DuplicateContact,
    )
    assert TestHubSpot().run(operation).status == 409
