"""Mautic: data for the contract suite (REST API: contacts keyed by id, contacts/new dedupes on
email, tags by name with ``-`` to remove, ``start``/``limit`` pages with ``total``; signed
webhooks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace

from support import FIXTURES

from adapters.contract import AdapterCase, AdapterContract, Exchange, Operation, Sample, basic, inbound, includes
from crm_adapters.base import InboundRequest, OutboundContact
from crm_adapters.errors import ContactNotFound

SECRET = "mautic-webhook-secret"
LENA = {
    "id": 47,
    "fields": {
        "core": {
            "email": {"alias": "email", "value": "Lena@Example.de"},
            "firstname": {"alias": "firstname", "value": "Lena"},
            "lastname": {"alias": "lastname", "value": "Schmidt"},
        },
        "all": {"id": 47, "email": "Lena@Example.de", "firstname": "Lena", "lastname": "Schmidt"},
    },
    "tags": [{"id": 3, "tag": "members"}],
}
NOT_FOUND = {"errors": [{"code": 404, "message": "Item was not found.", "details": []}]}
NEW = OutboundContact(email="lena@example.de", fields={"first_name": "Lena", "last_name": "Schmidt"})
BATCH = json.dumps(
    {
        "mautic.lead_post_save_new": [
            {"contact": {"id": 48, "fields": {"all": {"email": "b@x.de"}}}, "timestamp": "t"}
        ],
        "mautic.lead_points_change": [
            {
                "lead": {"id": 49, "fields": {"all": {"email": "c@x.de"}}, "tags": []},
                "points": {"old_points": 0, "new_points": 5},
            }
        ],
    }
)
TAGS_PAGE_1 = {"total": 3, "tags": [{"id": 1, "tag": "members"}, {"id": 2, "tag": "vip"}]}
TAGS_PAGE_2 = {"total": 3, "tags": [{"id": 3, "tag": "course-two"}]}


def signed(*, secret: str = SECRET, tamper: bool = False, header: bool = True) -> InboundRequest:
    body = json.loads((FIXTURES / "mautic" / "lead_update.json").read_text())["body"]
    signature = base64.b64encode(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()).decode()
    headers = {"Webhook-Signature": signature} if header else {}
    return inbound(body=body + (" " if tamper else ""), content_type="application/json", headers=headers)


def _loaded(contact) -> None:
    assert (contact.contact_id, contact.email, contact.tags) == ("47", "lena@example.de", ["members"])
    assert contact.fields == {"first_name": "Lena", "last_name": "Schmidt", "email": "lena@example.de"}


class TestMautic(AdapterContract):
    case = AdapterCase(
        type="mautic",
        config={"base_url": "https://mautic.example.de", "username": "api", "password": "pw-123"},
        api="https://mautic.example.de/api/",
        auth_header=("Authorization", basic("api", "pw-123")),
        fixtures=["mautic/lead_update.json"],
        samples=[
            Sample(
                "every contact of every event list",
                inbound(body=BATCH, content_type="application/json"),
                {
                    "contact_ids": ["48", "49"],
                    "each": [
                        {"email": "b@x.de", "fields": {"email": "b@x.de"}, "tags": None},
                        {"email": "c@x.de", "fields": {"email": "c@x.de"}, "tags": []},
                    ],
                },
            ),
            Sample(
                "a campaign 'send a webhook' form post",
                inbound(body="id=50&email=D%40x.de&firstname=Dee", content_type="application/x-www-form-urlencoded"),
                {
                    "contact_id": "50",
                    "email": "d@x.de",
                    "fields": {"first_name": "Dee", "email": "d@x.de"},
                    "tags": None,
                },
            ),
        ],
        signing_config={"webhook_secret": SECRET},
        signed_requests=[
            ("the body signed with the webhook secret", lambda: signed(), True),
            ("a body changed after signing", lambda: signed(tamper=True), False),
            ("another secret", lambda: signed(secret="other"), False),
            ("no Webhook-Signature header", lambda: signed(header=False), False),
        ],
        operations={
            "check": Operation(
                "check", (), [Exchange("GET", "contacts", json={"total": "0", "contacts": []}, params={"limit": "1"})]
            ),
            "find_contact_id": Operation(
                "find_contact_id",
                ("lena@example.de",),
                [
                    Exchange(
                        "GET",
                        "contacts",
                        json={"total": "1", "contacts": {"47": LENA}},
                        params={"search": "email:lena@example.de"},
                    )
                ],
                returns="47",
            ),
            "find_contact_id_missing": Operation(
                "find_contact_id",
                ("nobody@example.de",),
                [Exchange("GET", "contacts", json={"total": "0", "contacts": []})],
                returns=None,
            ),
            "load_contact": Operation(
                "load_contact", ("47",), [Exchange("GET", "contacts/47", json={"contact": LENA})], check=_loaded
            ),
            "load_contact_missing": Operation(
                "load_contact",
                ("9",),
                [Exchange("GET", "contacts/9", status=404, json=NOT_FOUND)],
                raises=ContactNotFound,
            ),
            "load_tags": Operation(
                "load_tags", ("47",), [Exchange("GET", "contacts/47", json={"contact": LENA})], returns=["members"]
            ),
            # contacts/new dedupes on email: the same call creates or updates.
            "upsert_new": Operation(
                "upsert_contact",
                (NEW,),
                [
                    Exchange(
                        "POST",
                        "contacts/new",
                        status=201,
                        json={"contact": {**LENA, "id": 60}},
                        sends={
                            "email": NEW.email,
                            "firstname": "Lena",
                            "lastname": "Schmidt",
                            "overwriteWithBlank": False,
                        },
                    )
                ],
                returns="60",
            ),
            "upsert_existing": Operation(
                "upsert_contact",
                (NEW,),
                [Exchange("POST", "contacts/new", status=200, json={"contact": LENA}, sends={"email": NEW.email})],
                returns="47",
            ),
            "update_fields_custom": Operation(
                "update_fields",
                ("47", {"wp_password": "s3cret-Passw0rd", "last_name": "S"}),
                [
                    Exchange(  # a custom field: its type is read first (field_format)
                        "GET", "fields/contact", json={"total": 1, "fields": [{"alias": "wp_password", "type": "text"}]}
                    ),
                    Exchange(
                        "PATCH",
                        "contacts/47/edit",
                        json={"contact": LENA},
                        sends={"wp_password": "s3cret-Passw0rd", "lastname": "S"},
                    ),
                ],
                returns=None,
            ),
            "apply_tags": Operation(
                "apply_tags",
                ("47", ["vip", "brand-new"]),
                [Exchange("PATCH", "contacts/47/edit", json={"contact": LENA}, sends={"tags": ["vip", "brand-new"]})],
            ),
            "remove_tags": Operation(
                "remove_tags",
                ("47", ["members"]),
                [Exchange("PATCH", "contacts/47/edit", json={"contact": LENA}, sends={"tags": ["-members"]})],
            ),
            "list_tags": Operation(
                "list_tags",
                (),
                [
                    Exchange("GET", "tags", json=TAGS_PAGE_1, params={"start": "0"}),
                    Exchange("GET", "tags", json=TAGS_PAGE_2, params={"start": "2"}),
                ],
                returns=["members", "vip", "course-two"],
            ),
            "list_fields": Operation(
                "list_fields",
                (),
                [
                    Exchange(
                        "GET",
                        "fields/contact",
                        json={"total": 2, "fields": [{"alias": "email"}, {"alias": "wp_password"}]},
                    )
                ],
                check=includes("email", "wp_password"),
            ),
        },
    )


def test_access_token_is_sent_as_bearer_instead_of_basic() -> None:
    operation = Operation("check", (), [Exchange("GET", "contacts", json={"total": "0", "contacts": []})])

    class WithToken(TestMautic):
        case = replace(
            TestMautic.case,
            auth_header=("Authorization", "Bearer tok"),
            config={"base_url": "https://mautic.example.de", "access_token": "tok"},
        )

    WithToken().run(operation)
