"""PulseTechnologyCRM: data for the contract suite, shaped after the API's one public client
(WP Fusion's class-pulsetech.php 3.47.11; shared/reference/pulsetech.md)."""

from __future__ import annotations

import json
from pathlib import Path

from adapters.contract import AdapterCase, AdapterContract, Exchange, Operation, Sample, inbound
from crm_adapters.base import OutboundContact
from crm_adapters.errors import ContactNotFound

API = "https://app.pulse.example/api/v1/"
# tests/fixtures/pulsetech/api/answers.json: shaped after WP Fusion's class-pulsetech.php 3.47.11
# (its note names the source): flat contacts, tags as ids named through the paginated tag list.
ANSWERS = json.loads((Path(__file__).resolve().parents[1] / "fixtures/pulsetech/api/answers.json").read_text())
MARIA = ANSWERS["contact"]
NOT_FOUND = ANSWERS["contact_not_found"]["json"]
TAGS_PAGE_1 = ANSWERS["tags_page_1"]
TAGS_PAGE_2 = ANSWERS["tags_page_2"]
ALL_TAGS = [
    Exchange("GET", "tags", json=TAGS_PAGE_1),  # the first page has no ``page`` (sync_tags)
    Exchange("GET", "tags", json=TAGS_PAGE_2, params={"page": "2"}),
]
NEW = OutboundContact(email="maria.rossi@example.it", fields={"first_name": "Maria", "last_name": "Rossi"})


def _loaded(contact) -> None:
    assert (contact.contact_id, contact.email, contact.tags) == ("1234", "maria.rossi@example.it", None)
    assert contact.fields == {"first_name": "Maria", "last_name": "Rossi", "email": "maria.rossi@example.it"}


def find(email: str, answer: dict, status: int = 200) -> Exchange:
    """``get_contact_id``: ``POST contact/find/`` with the email as a form."""
    return Exchange("POST", "contact/find/", status=status, json=answer, sends={"email": email})


class TestPulseTech(AdapterContract):
    case = AdapterCase(
        type="pulsetech",
        config={"base_url": "https://app.pulse.example", "access_token": "pt-token-1"},
        api=API,
        auth_header=("Authorization", "Bearer pt-token-1"),
        fixtures=["pulsetech/id_in_query.json", "pulsetech/contact_entity.json"],
        samples=[
            Sample(
                "contact id as the form's id (format_post_data)",
                inbound(body="id=77&email=A%40B.it", content_type="application/x-www-form-urlencoded"),
                {"contact_id": "77", "email": "a@b.it", "fields": {"email": "a@b.it"}, "tags": None},
            ),
        ],
        operations={
            "check": Operation("check", (), [Exchange("GET", "tags", json=TAGS_PAGE_1)]),
            "find_contact_id": Operation(
                "find_contact_id", ("maria.rossi@example.it",), [find("maria.rossi@example.it", MARIA)], returns="1234"
            ),
            "find_contact_id_missing": Operation(
                "find_contact_id", ("nobody@example.it",), [find("nobody@example.it", NOT_FOUND, 404)], returns=None
            ),
            "load_contact": Operation(
                "load_contact", ("1234",), [Exchange("GET", "contacts/1234", json=MARIA)], check=_loaded
            ),
            "load_contact_missing": Operation(
                "load_contact",
                ("999",),
                [Exchange("GET", "contacts/999", status=404, json=NOT_FOUND)],
                raises=ContactNotFound,
            ),
            # The contact's tags are ids (paginated too); their names come from the tag list.
            "load_tags": Operation(
                "load_tags",
                ("1234",),
                [
                    Exchange("GET", "contacts/1234/tags", json={"data": [{"id": 12}], "meta": {"last_page": 2}}),
                    Exchange(
                        "GET",
                        "contacts/1234/tags",
                        json={"data": [{"id": 9}], "meta": {"last_page": 2}},
                        params={"page": "2"},
                    ),
                    *ALL_TAGS,
                ],
                returns=["Course Two", "VIP"],
            ),
            "upsert_new": Operation(
                "upsert_contact",
                (NEW,),
                [
                    find(NEW.email, NOT_FOUND, 404),
                    Exchange(
                        "POST",
                        "contacts",
                        status=201,
                        json={**MARIA, "id": 1300},
                        sends={
                            "email": NEW.email,
                            "first_name": "Maria",
                            "last_name": "Rossi",
                            "is_marketable": "true",
                        },
                    ),
                ],
                returns="1300",
            ),
            "upsert_existing": Operation(
                "upsert_contact",
                (NEW,),
                [find(NEW.email, MARIA), Exchange("PUT", "contacts/1234", json=MARIA, sends={"first_name": "Maria"})],
                returns="1234",
            ),
            "update_fields_custom": Operation(
                "update_fields",
                ("1234", {"wp_password": "s3cret-Passw0rd", "first_name": "M"}),
                [
                    Exchange(
                        "PUT",
                        "contacts/1234",
                        json=MARIA,
                        sends={"wp_password": "s3cret-Passw0rd", "first_name": "M"},
                    )
                ],
                returns=None,
            ),
            # No tag-creation call exists: "Newcomers" is not in Pulse, so it is not applied.
            "apply_tags": Operation(
                "apply_tags",
                ("1234", ["vip", "Newcomers"]),
                [*ALL_TAGS, Exchange("POST", "contacts/1234/tag-apply", json={}, sends={"tag_id[]": ["9"]})],
            ),
            "remove_tags": Operation(
                "remove_tags",
                ("1234", ["Course Two", "unknown"]),
                [*ALL_TAGS, Exchange("POST", "contacts/1234/untag", json={}, sends={"tag_id[]": ["12"]})],
            ),
            "list_tags": Operation("list_tags", (), ALL_TAGS, returns=["Customers", "VIP", "Course Two"]),
            "list_fields": Operation(
                "list_fields",
                (),
                [
                    Exchange(
                        "GET",
                        "contact/available-fields",
                        json=ANSWERS["available_fields"],
                    )
                ],
                returns=["address_1.country_name", "email", "first_name", "wp_password"],
            ),
        },
    )


def test_an_error_answer_above_200_is_an_error_even_when_2xx() -> None:
    """handle_http_response: a 201 whose JSON has ``error`` failed; only "Contact not found"
    means "none"."""
    import pytest
    import responses

    from bridge.outbound.client import OutboundClient, OutboundPolicy
    from crm_adapters.errors import CrmRejected
    from crm_adapters.pulsetech import PulseTechAdapter

    adapter = PulseTechAdapter(
        {"base_url": "https://app.pulse.example", "access_token": "t"},
        OutboundClient(policy=OutboundPolicy(allow_private=True)),
    )
    with responses.RequestsMock() as rsps:
        rsps.post(API + "contact/find/", status=422, json={"error": "The email must be a valid email address."})
        with pytest.raises(CrmRejected, match="valid email"):
            adapter.find_contact_id("not-an-email")
        rsps.post(API + "contact/find/", status=404, json={"error": "Contact not found"})
        rsps.post(API + "contacts", status=201, json={"error": "Duplicate contact"})
        with pytest.raises(CrmRejected, match="Duplicate"):
            adapter.upsert_contact(OutboundContact(email="x@example.it"))


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
            API + "tags",
            status=401,
            json={"message": "Unauthenticated."},
            match=[responses.matchers.header_matcher({"Authorization": "Bearer old"})],
        )
        rsps.post(
            "https://portal.thepulsespot.com/oauth/token",  # the portal's, as class-pulsetech.php posts it
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
            API + "tags",
            json={"data": [], "meta": {"last_page": 1}},
            match=[responses.matchers.header_matcher({"Authorization": "Bearer new"})],
        )
        adapter.check()
    assert adapter.refreshed_tokens == {"access_token": "new", "refresh_token": "r2"}
    assert adapter.settings_to_store() == {"access_token": "new", "refresh_token": "r2"}  # the caller stores them


def test_the_token_url_is_the_portals_as_the_client_derives_it() -> None:
    from bridge.outbound.client import OutboundClient
    from crm_adapters.pulsetech import PulseTechAdapter

    def token_url(**config: str) -> str:
        return PulseTechAdapter(config, OutboundClient()).token_url

    assert token_url(base_url="https://acme.pulse.example") == "https://portal.thepulsespot.com/oauth/token"
    dev = "https://app.acme.dev.thepulsespot.com/"
    assert token_url(base_url=dev) == "https://portal.acme.dev.thepulsespot.com/oauth/token"
    assert token_url(base_url=dev, token_url="https://sso.example/token") == "https://sso.example/token"
