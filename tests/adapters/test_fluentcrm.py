"""FluentCRM: data for the contract suite. Mocks replay the exchanges recorded from a real
FluentCRM 2.9.84 under shared/fixtures/fluentcrm/api."""

from __future__ import annotations

import json
from typing import Any

import responses
from support import FIXTURES

from adapters.contract import AdapterCase, AdapterContract, Exchange, Operation, Sample, basic, inbound, includes
from crm_adapters.base import OutboundContact
from crm_adapters.errors import ContactNotFound, CrmRejected, DuplicateContact

API = "https://crm.example.com/wp-json/fluent-crm/v2"


def recorded(name: str, **changes: Any) -> Exchange:
    """A recorded exchange as a mock: same method, path, query, request body and answer."""
    data = json.loads((FIXTURES / "fluentcrm" / "api" / f"{name}.json").read_text())
    request, response = data["request"], data["response"]
    exchange = Exchange(
        request["method"],
        request["path"].removeprefix("/wp-json/fluent-crm/v2"),
        status=response["status"],
        json=response["json"],
        params={k: str(v) for k, v in request["query"].items()} or None,
        sends=request["json"],
    )
    for key, value in changes.items():
        setattr(exchange, key, value)
    return exchange


TAG_PAGE_1 = {
    "tags": {
        "total": 3,
        "per_page": 2,
        "current_page": 1,
        "last_page": 2,
        "data": [
            {"id": 3, "title": "VIP 4fe81a", "slug": "vip-4fe81a"},
            {"id": 2, "title": "PutTag", "slug": "puttag"},
        ],
    }
}
TAG_PAGE_2 = {
    "tags": {
        "total": 3,
        "per_page": 2,
        "current_page": 2,
        "last_page": 2,
        "data": [
            {"id": 1, "title": "Smoke 97", "slug": "smoke-97"},
        ],
    }
}
ALL_TAGS = [
    Exchange("GET", "/tags", json=TAG_PAGE_1, params={"page": "1"}),
    Exchange("GET", "/tags", json=TAG_PAGE_2, params={"page": "2"}),
]
SUBSCRIBER_WITH_TAGS = {
    "subscriber": {
        "id": 11,
        "email": "Capture-4fe81a@example.com",
        "first_name": "Capt",
        "last_name": "Ture",
        "tags": [{"id": 3, "title": "VIP 4fe81a", "slug": "vip-4fe81a"}],
    }
}
NEW = OutboundContact(email="capture-4fe81a@example.com", fields={"first_name": "Cap", "last_name": "Ture"})
FIRST_CREATE = {"email": NEW.email, "first_name": "Cap", "last_name": "Ture", "status": "subscribed"}


def _loaded(contact: Any) -> None:
    assert contact.email == "capture-4fe81a@example.com"
    assert contact.fields == {"first_name": "Capt", "last_name": "Ture", "email": "capture-4fe81a@example.com"}
    assert contact.tags == []


class TestFluentCrm(AdapterContract):
    case = AdapterCase(
        type="fluentcrm",
        config={"base_url": "https://crm.example.com/", "username": "api", "app_password": "abcd efgh ijkl"},
        api=API,
        auth_header=("Authorization", basic("api", "abcd efgh ijkl")),
        fixtures=["fluentcrm/full_subscriber_raw.json", "fluentcrm/with_tags.json"],
        samples=[
            Sample(
                "form body wrapped in subscriber[...] with a custom field mapped",
                inbound(
                    body="subscriber%5Bid%5D=5&subscriber%5Bemail%5D=A%40B.io&subscriber%5Bcustom_field%5D%5Blevel%5D=gold",
                    content_type="application/x-www-form-urlencoded",
                ),
                {"contact_id": "5", "email": "a@b.io", "fields": {"email": "a@b.io"}, "tags": None},
            ),
        ],
        operations={
            "check": Operation("check", (), [Exchange("GET", "/tags", json=TAG_PAGE_2, params={"per_page": "1"})]),
            "find_contact_id": Operation(
                "find_contact_id", ("capture-4fe81a@example.com",), [recorded("get_by_email")], returns="11"
            ),
            "find_contact_id_missing": Operation(
                "find_contact_id", ("nobody-4fe81a@example.com",), [recorded("get_by_email_missing")], returns=None
            ),
            "load_contact": Operation("load_contact", ("11",), [recorded("get_by_id")], check=_loaded),
            "load_contact_missing": Operation(
                "load_contact", ("99999999",), [recorded("get_missing_id")], raises=ContactNotFound
            ),
            "load_tags": Operation(
                "load_tags",
                ("11",),
                [Exchange("GET", "/subscribers/11", json=SUBSCRIBER_WITH_TAGS)],
                returns=["vip-4fe81a"],
            ),
            # New contact: one create, without __force_update (it cannot touch an existing one).
            "upsert_new": Operation(
                "upsert_contact",
                (NEW,),
                [
                    recorded("create_subscriber", sends=FIRST_CREATE),
                ],
                returns="11",
            ),
            # Existing contact: the create is refused as a duplicate, then the contact is looked up
            # and updated in place; its status is left alone.
            "upsert_existing": Operation(
                "upsert_contact",
                (NEW,),
                [
                    recorded("create_duplicate_422", sends=FIRST_CREATE),
                    recorded("get_by_email", params={"get_by_email": NEW.email}),
                    recorded("update_fields", sends={"subscriber": {"first_name": "Cap", "last_name": "Ture"}}),
                ],
                returns="11",
            ),
            "update_fields_custom": Operation(
                "update_fields",
                ("11", {"first_name": "Captain", "wp_password": "s3cret-Passw0rd"}),
                [
                    recorded(
                        "update_fields",
                        sends={
                            "subscriber": {"first_name": "Captain", "custom_values": {"wp_password": "s3cret-Passw0rd"}}
                        },
                    )
                ],
                returns=None,
            ),
            # Known tag attached by id (all pages read); unknown one created first, after a
            # second listing under the creation lock (another worker may just have made it).
            "apply_tags": Operation(
                "apply_tags",
                ("11", ["smoke-97", "New Tag"]),
                [
                    *ALL_TAGS,
                    *ALL_TAGS,
                    Exchange(
                        "POST",
                        "/tags",
                        json={"item": {"id": 7, "title": "New Tag", "slug": "new-tag"}},
                        sends={"title": "New Tag"},
                    ),
                    recorded(
                        "sync_segments_attach_slug", sends={"subscribers": [11], "attach": [1, 7], "find_by": "id"}
                    ),
                ],
            ),
            "remove_tags": Operation(
                "remove_tags",
                ("11", ["VIP 4fe81a", "not-a-tag"]),
                [*ALL_TAGS, recorded("update_detach_tag_id")],
            ),
            "list_tags": Operation("list_tags", (), ALL_TAGS, returns=["vip-4fe81a", "puttag", "smoke-97"]),
            "list_fields": Operation(
                "list_fields",
                (),
                [Exchange("GET", "/custom-fields/contacts", json={"fields": [{"slug": "wp_password", "label": "Pw"}]})],
                check=includes("first_name", "last_name", "email", "wp_password"),
            ),
        },
    )


def test_an_existing_contact_is_never_overwritten_by_the_create_nor_resubscribed() -> None:
    """The contract suite matches bodies as subsets; this checks what must be absent: the first
    create carries no ``__force_update`` (else it would overwrite the existing contact and its
    status) and the update that follows sends no ``status``."""
    api = TestFluentCrm.case.api
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        for exchange in (
            recorded("create_duplicate_422"),
            recorded("get_by_email", params={"get_by_email": NEW.email}),
            recorded("update_fields"),
        ):
            rsps.add(exchange.method, api + exchange.path, status=exchange.status, json=exchange.json)
        assert TestFluentCrm().adapter().upsert_contact(NEW) == "11"
        create, _lookup, update = rsps.calls
    assert json.loads(create.request.body) == FIRST_CREATE
    assert "status" not in json.loads(update.request.body)["subscriber"]


def test_a_contact_refused_as_duplicate_but_not_found_is_created_with_force_update() -> None:
    """The create is refused (the email is taken) but the look-up misses (the contact was
    deleted in between): the last create carries __force_update, which creates or updates."""
    operation = Operation(
        "upsert_contact",
        (NEW,),
        [
            recorded("create_duplicate_422", sends=FIRST_CREATE),
            recorded("get_by_email_missing", params={"get_by_email": NEW.email}),
            recorded("create_force_update", sends={**FIRST_CREATE, "__force_update": "yes"}),
        ],
        returns="11",
    )
    TestFluentCrm().run(operation)


def test_a_fluentcrm_that_ignores_force_update_gives_a_duplicate_contact_error() -> None:
    """Recorded: a FluentCRM that does not honour __force_update answers 422 "unique" to every
    create; after the look-up misses too, that is a final error, not a loop."""
    refused = recorded("create_duplicate_422", sends=FIRST_CREATE)
    operation = Operation(
        "upsert_contact",
        (NEW,),
        [
            refused,
            recorded("get_by_email_missing", params={"get_by_email": NEW.email}),
            recorded("create_duplicate_422", sends={**FIRST_CREATE, "__force_update": "yes"}),
        ],
        raises=DuplicateContact,
    )
    error = TestFluentCrm().run(operation)
    assert error.status == 422 and not error.retryable


def test_a_422_that_is_not_a_taken_email_is_not_taken_for_a_duplicate() -> None:
    """A create refused for another reason (a required field) is the CRM's refusal, not an
    existing contact: no look-up, no update."""
    operation = Operation(
        "upsert_contact",
        (NEW,),
        [
            Exchange(
                "POST",
                "/subscribers",
                status=422,
                json={"email": {"required": "Email is required"}},
                sends=FIRST_CREATE,
            )
        ],
        raises=CrmRejected,
    )
    error = TestFluentCrm().run(operation)
    assert error.status == 422
