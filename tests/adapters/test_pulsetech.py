"""PulseTechnologyCRM: data for the contract suite (the REST shape documented in
crm_adapters/pulsetech.py: Bearer token, form bodies, ``{"data", "meta": {"last_page"}}`` pages,
tags as numeric ids)."""

from __future__ import annotations

from adapters.contract import AdapterCase, AdapterContract, Exchange, Operation, Sample, inbound, includes
from crm_adapters.base import OutboundContact
from crm_adapters.errors import ContactNotFound

API = "https://app.pulse.example/api/v1/"
MARIA = {
    "id": 1234,
    "first_name": "Maria",
    "last_name": "Rossi",
    "email": "Maria.Rossi@example.it",
    "custom_fields": {"wp_password": None},
}
TAGS_PAGE_1 = {
    "data": [{"id": 5, "name": "Customers"}, {"id": 9, "name": "VIP"}],
    "meta": {"current_page": 1, "last_page": 2},
}
TAGS_PAGE_2 = {"data": [{"id": 12, "name": "Course Two"}], "meta": {"current_page": 2, "last_page": 2}}
ALL_TAGS = [
    Exchange("GET", "tags", json=TAGS_PAGE_1, params={"page": "1"}),
    Exchange("GET", "tags", json=TAGS_PAGE_2, params={"page": "2"}),
]
NEW = OutboundContact(email="maria.rossi@example.it", fields={"first_name": "Maria", "last_name": "Rossi"})
EMPTY_PAGE = {"data": [], "meta": {"current_page": 1, "last_page": 1}}


def _loaded(contact) -> None:
    assert (contact.contact_id, contact.email, contact.tags) == ("1234", "maria.rossi@example.it", None)
    assert contact.fields == {"first_name": "Maria", "last_name": "Rossi", "email": "maria.rossi@example.it"}


class TestPulseTech(AdapterContract):
    case = AdapterCase(
        type="pulsetech",
        config={"base_url": "https://app.pulse.example", "access_token": "pt-token-1"},
        api=API,
        auth_header=("Authorization", "Bearer pt-token-1"),
        fixtures=["pulsetech/id_in_query.json", "pulsetech/contact_entity.json"],
        samples=[
            Sample(
                "contact wrapped in a contact object",
                inbound(body='{"contact": {"id": "77", "email": "A@B.it"}}', content_type="application/json"),
                {"contact_id": "77", "email": "a@b.it", "fields": {"email": "a@b.it"}, "tags": None},
            ),
        ],
        operations={
            "check": Operation("check", (), [Exchange("GET", "me", json={"data": {"id": 1}})]),
            "find_contact_id": Operation(
                "find_contact_id",
                ("maria.rossi@example.it",),
                [
                    Exchange(
                        "GET",
                        "contacts",
                        json={"data": [MARIA], "meta": {"last_page": 1}},
                        params={"email": "maria.rossi@example.it"},
                    )
                ],
                returns="1234",
            ),
            "find_contact_id_missing": Operation(
                "find_contact_id", ("nobody@example.it",), [Exchange("GET", "contacts", json=EMPTY_PAGE)], returns=None
            ),
            "load_contact": Operation(
                "load_contact", ("1234",), [Exchange("GET", "contacts/1234", json={"data": MARIA})], check=_loaded
            ),
            "load_contact_missing": Operation(
                "load_contact",
                ("999",),
                [Exchange("GET", "contacts/999", status=404, json={"message": "Contact not found"})],
                raises=ContactNotFound,
            ),
            # The contact's tags are ids; their names come from the paginated tag list.
            "load_tags": Operation(
                "load_tags",
                ("1234",),
                [Exchange("GET", "contacts/1234/tags", json={"data": [12, {"id": 9}]}), *ALL_TAGS],
                returns=["Course Two", "VIP"],
            ),
            "upsert_new": Operation(
                "upsert_contact",
                (NEW,),
                [
                    Exchange("GET", "contacts", json=EMPTY_PAGE, params={"email": NEW.email}),
                    Exchange(
                        "POST",
                        "contacts",
                        status=201,
                        json={"data": {**MARIA, "id": 1300}},
                        sends={"email": NEW.email, "first_name": "Maria", "last_name": "Rossi"},
                    ),
                ],
                returns="1300",
            ),
            "upsert_existing": Operation(
                "upsert_contact",
                (NEW,),
                [
                    Exchange("GET", "contacts", json={"data": [MARIA], "meta": {"last_page": 1}}),
                    Exchange("PUT", "contacts/1234", json={"data": MARIA}, sends={"first_name": "Maria"}),
                ],
                returns="1234",
            ),
            "update_fields_custom": Operation(
                "update_fields",
                ("1234", {"wp_password": "s3cret-Passw0rd", "first_name": "M"}),
                [
                    Exchange(
                        "PUT",
                        "contacts/1234",
                        json={"data": MARIA},
                        sends={"custom_fields[wp_password]": "s3cret-Passw0rd", "first_name": "M"},
                    )
                ],
                returns=None,
            ),
            "apply_tags": Operation(
                "apply_tags",
                ("1234", ["vip", "Newcomers"]),
                [
                    *ALL_TAGS,
                    Exchange(
                        "POST",
                        "tags",
                        status=201,
                        json={"data": {"id": 20, "name": "Newcomers"}},
                        sends={"name": "Newcomers"},
                    ),
                    Exchange("POST", "contacts/1234/tag-apply", json={"data": [9, 20]}, sends={"tags[]": ["9", "20"]}),
                ],
            ),
            "remove_tags": Operation(
                "remove_tags",
                ("1234", ["Course Two", "unknown"]),
                [*ALL_TAGS, Exchange("POST", "contacts/1234/untag", json={"data": []}, sends={"tags[]": ["12"]})],
            ),
            "list_tags": Operation("list_tags", (), ALL_TAGS, returns=["Customers", "VIP", "Course Two"]),
            "list_fields": Operation(
                "list_fields",
                (),
                [
                    Exchange(
                        "GET",
                        "custom-fields",
                        json={"data": [{"key": "wp_password", "label": "Password"}], "meta": {"last_page": 1}},
                    )
                ],
                check=includes("first_name", "email", "wp_password"),
            ),
        },
    )


def test_refused_token_is_refreshed_once_and_the_call_retried() -> None:
    """With refresh credentials, a 401 trades the refresh token for a new access token."""
    import responses

    from bridge.outbound.client import OutboundClient, OutboundPolicy
    from crm_adapters.pulsetech import PulseTechAdapter

    config = {
        "base_url": "https://app.pulse.example",
        "access_token": "old",
        "refresh_token": "r1",
        "client_id": "cid",
        "client_secret": "csecret",
    }
    adapter = PulseTechAdapter(config, OutboundClient(policy=OutboundPolicy(allow_private=True)))
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.get(
            API + "me",
            status=401,
            json={"message": "Unauthenticated."},
            match=[responses.matchers.header_matcher({"Authorization": "Bearer old"})],
        )
        rsps.post(
            "https://app.pulse.example/oauth/token",
            json={"access_token": "new", "refresh_token": "r2", "expires_in": 3600},
            match=[
                responses.matchers.urlencoded_params_matcher(
                    {
                        "grant_type": "refresh_token",
                        "refresh_token": "r1",
                        "client_id": "cid",
                        "client_secret": "csecret",
                    }
                )
            ],
        )
        rsps.get(
            API + "me",
            json={"data": {"id": 1}},
            match=[responses.matchers.header_matcher({"Authorization": "Bearer new"})],
        )
        adapter.check()
    assert adapter.refreshed_tokens == {"access_token": "new", "refresh_token": "r2"}
    assert adapter.settings_to_store() == {"access_token": "new", "refresh_token": "r2"}  # the caller stores them
