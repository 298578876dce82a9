"""ActiveCampaign: data for the contract suite (API v3 shapes: contacts, contact/sync, fields,
tags, contactTags; offset pagination with ``meta.total``)."""

from __future__ import annotations

from adapters.contract import AdapterCase, AdapterContract, Exchange, Operation, Sample, inbound, includes
from crm_adapters.base import OutboundContact
from crm_adapters.errors import ContactNotFound

CONTACT = {"id": "3", "email": "Jane@Example.com", "firstName": "Jane", "lastName": "Doe", "phone": ""}
FIELDS = {
    "fields": [{"id": "4", "title": "WP Password", "perstag": "WP_PASSWORD", "type": "text"}],
    "meta": {"total": "1"},
}
TAGS_PAGE_1 = {
    "tags": [{"id": str(i), "tag": f"tag{i}", "tagType": "contact"} for i in range(1, 101)],
    "meta": {"total": "101"},
}
TAGS_PAGE_2 = {"tags": [{"id": "101", "tag": "vip", "tagType": "contact"}], "meta": {"total": "101"}}
ALL_TAGS = [
    Exchange("GET", "tags", json=TAGS_PAGE_1, params={"offset": "0", "limit": "100"}),
    Exchange("GET", "tags", json=TAGS_PAGE_2, params={"offset": "100", "limit": "100"}),
]
CONTACT_TAGS = {"contactTags": [{"contact": "3", "tag": "101", "id": "55"}, {"contact": "3", "tag": "2", "id": "56"}]}
NEW = OutboundContact(email="jane@example.com", fields={"first_name": "Jane", "last_name": "Doe"})


def _loaded(contact) -> None:
    assert (contact.contact_id, contact.email, contact.tags) == ("3", "jane@example.com", None)
    assert contact.fields == {"first_name": "Jane", "last_name": "Doe", "email": "jane@example.com"}


class TestActiveCampaign(AdapterContract):
    case = AdapterCase(
        type="activecampaign",
        config={"base_url": "https://acct.api-us1.com", "api_key": "ac-key-123"},
        api="https://acct.api-us1.com/api/3/",
        auth_header=("Api-Token", "ac-key-123"),
        fixtures=["activecampaign/contact_update.json"],
        samples=[
            Sample(
                "a contact without tags in the payload",
                inbound(
                    body="type=subscribe&contact%5Bid%5D=8&contact%5Bemail%5D=X%40Y.org",
                    content_type="application/x-www-form-urlencoded",
                ),
                {"contact_id": "8", "email": "x@y.org", "fields": {"email": "x@y.org"}, "tags": None},
            ),
            Sample(
                "tags present but empty: the contact has none",
                inbound(
                    body="contact%5Bid%5D=8&contact%5Btags%5D=",
                    content_type="application/x-www-form-urlencoded",
                ),
                {"contact_id": "8", "email": None, "fields": {}, "tags": []},
            ),
        ],
        operations={
            "check": Operation("check", (), [Exchange("GET", "users/me", json={"user": {"id": "1"}})]),
            "find_contact_id": Operation(
                "find_contact_id",
                ("jane@example.com",),
                [
                    Exchange(
                        "GET",
                        "contacts",
                        json={"contacts": [CONTACT], "meta": {"total": "1"}},
                        params={"email": "jane@example.com"},
                    )
                ],
                returns="3",
            ),
            "find_contact_id_missing": Operation(
                "find_contact_id",
                ("nobody@example.com",),
                [Exchange("GET", "contacts", json={"contacts": [], "meta": {"total": "0"}})],
                returns=None,
            ),
            "load_contact": Operation(
                "load_contact",
                ("3",),
                [Exchange("GET", "contacts/3", json={"contact": CONTACT, "fieldValues": [], "contactTags": []})],
                check=_loaded,
            ),
            "load_contact_missing": Operation(
                "load_contact",
                ("99",),
                [
                    Exchange(
                        "GET", "contacts/99", status=404, json={"message": "No Result found for Subscriber with id 99"}
                    )
                ],
                raises=ContactNotFound,
            ),
            "load_tags": Operation(
                "load_tags",
                ("3",),
                [Exchange("GET", "contacts/3/contactTags", json=CONTACT_TAGS), *ALL_TAGS],
                returns=["vip", "tag2"],
            ),
            # contact/sync is ActiveCampaign's own upsert: one call whether or not the contact exists.
            "upsert_new": Operation(
                "upsert_contact",
                (NEW,),
                [
                    Exchange(
                        "POST",
                        "contact/sync",
                        status=201,
                        json={"contact": {**CONTACT, "id": "9"}},
                        sends={"contact": {"email": "jane@example.com", "firstName": "Jane", "lastName": "Doe"}},
                    )
                ],
                returns="9",
            ),
            "upsert_existing": Operation(
                "upsert_contact",
                (NEW,),
                [
                    Exchange(
                        "POST",
                        "contact/sync",
                        status=200,
                        json={"contact": CONTACT},
                        sends={"contact": {"email": "jane@example.com"}},
                    )
                ],
                returns="3",
            ),
            "update_fields_custom": Operation(
                "update_fields",
                ("3", {"WP_PASSWORD": "s3cret-Passw0rd", "first_name": "J"}),
                [
                    Exchange("GET", "fields", json=FIELDS),
                    Exchange(
                        "PUT",
                        "contacts/3",
                        json={"contact": CONTACT},
                        sends={
                            "contact": {"firstName": "J", "fieldValues": [{"field": "4", "value": "s3cret-Passw0rd"}]}
                        },
                    ),
                ],
                returns=None,
            ),
            # Known tag linked; unknown tag created, then linked.
            "apply_tags": Operation(
                "apply_tags",
                ("3", ["vip", "Brand New"]),
                [
                    Exchange("GET", "tags", json={"tags": [{"id": "101", "tag": "VIP"}]}, params={"search": "vip"}),
                    Exchange(
                        "POST",
                        "contactTags",
                        status=201,
                        json={"contactTag": {"id": "60"}},
                        sends={"contactTag": {"contact": "3", "tag": "101"}},
                    ),
                    Exchange(
                        "GET",
                        "tags",
                        json={"tags": [{"id": "7", "tag": "Brand New Old"}]},
                        params={"search": "Brand New"},
                    ),
                    Exchange(
                        "POST",
                        "tags",
                        status=201,
                        json={"tag": {"id": "102", "tag": "Brand New"}},
                        sends={"tag": {"tag": "Brand New", "tagType": "contact"}},
                    ),
                    Exchange(
                        "POST",
                        "contactTags",
                        status=201,
                        json={"contactTag": {"id": "61"}},
                        sends={"contactTag": {"contact": "3", "tag": "102"}},
                    ),
                ],
            ),
            "remove_tags": Operation(
                "remove_tags",
                ("3", ["vip"]),
                [
                    Exchange("GET", "tags", json={"tags": [{"id": "101", "tag": "vip"}]}, params={"search": "vip"}),
                    Exchange("GET", "contacts/3/contactTags", json=CONTACT_TAGS),
                    Exchange("DELETE", "contactTags/55", json={}),
                ],
            ),
            "list_tags": Operation("list_tags", (), ALL_TAGS, returns=[f"tag{i}" for i in range(1, 101)] + ["vip"]),
            "list_fields": Operation(
                "list_fields",
                (),
                [Exchange("GET", "fields", json=FIELDS)],
                check=includes("email", "firstName", "WP_PASSWORD"),
            ),
        },
    )
