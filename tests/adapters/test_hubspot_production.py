"""HubSpot held against the production API (issue 17, items 1-4 and field values): generic
``object.*`` webhook events, ``Retry-After`` in seconds, paged list memberships, tags named
like lists that take no memberships, typed property values."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from adapters import test_hubspot as case
from adapters.contract import Exchange, Operation, inbound
from adapters.recorded import recorded
from crm_adapters.base import OutboundContact
from crm_adapters.errors import CrmRejected, RateLimited

LISTS = recorded("hubspot/lists_search_all_types.json")
ALL_LISTS = Exchange("POST", "/crm/v3/lists/search", json=LISTS["json"], sends={"offset": 0})
PROPERTIES = Exchange("GET", "/crm/v3/properties/contacts", json=recorded("hubspot/contact_properties.json")["json"])


def run(operation: Operation, **config: object) -> object:
    return case.TestHubSpot().run(operation, **config)


def test_generic_object_events_for_contacts_are_read() -> None:
    """Newer subscriptions send ``object.propertyChange`` … with ``objectTypeId: "0-1"``."""
    sample = recorded("hubspot/generic_webhook_batch.json")
    request = inbound(body=sample["body"], content_type=sample["content_type"])
    contacts = case.TestHubSpot().adapter().parse(request)
    assert [c.contact_id for c in contacts] == sample["expect"]["contact_ids"]
    assert contacts[0].email == "ana@example.com"


def test_retry_after_is_read_in_seconds() -> None:
    answer = recorded("hubspot/rate_limited_429.json")
    operation = Operation(
        "load_contact",
        ("3501",),
        [Exchange("GET", "/crm/v3/objects/contacts/3501", status=429, json=answer["json"], headers=answer["headers"])],
        raises=RateLimited,
    )
    assert run(operation).retry_after == pytest.approx(answer["expect"]["retry_after"])


def test_load_tags_follows_every_page_of_memberships() -> None:
    pages = recorded("hubspot/memberships_paged.json")["pages"]
    path = "/crm/v3/lists/records/0-1/3501/memberships"
    operation = Operation(
        "load_tags",
        ("3501",),
        [
            Exchange("GET", path, json=pages[0]),
            Exchange("GET", path, json=pages[1], params={"after": pages[0]["paging"]["next"]["after"]}),
            ALL_LISTS,
        ],
    )
    assert run(operation) == ["Customers"]  # list 13 is not a tag list here; list 11 was on page 1


def lists_search(request: Any) -> tuple[int, dict[str, str], str]:
    """HubSpot's list search: ``processingTypes``, when given, filters the lists."""
    wanted = json.loads(request.body).get("processingTypes")
    lists = [item for item in LISTS["json"]["lists"] if not wanted or item["processingType"] in wanted]
    return 200, {}, json.dumps({**LISTS["json"], "lists": lists, "total": len(lists)})


def test_a_tag_named_like_a_snapshot_list_uses_that_list() -> None:
    """A SNAPSHOT list takes memberships like a MANUAL one: no create (refused: the name is taken)."""
    adapter = case.TestHubSpot().adapter()
    with responses.RequestsMock() as rsps:
        rsps.add_callback("POST", f"{case.API}/crm/v3/lists/search", callback=lists_search)
        added = rsps.put(f"{case.API}/crm/v3/lists/14/memberships/add", json={"recordIdsAdded": ["3501"]})
        adapter.apply_tags("3501", ["webinar 2025"])
        assert added.call_count == 1
        assert "Webinar 2025" in adapter.list_tags()


@pytest.mark.parametrize(
    ("tag", "says"),
    [("Engaged", "active (DYNAMIC) list"), ("Partners", "objectTypeId 0-2")],
)
def test_a_tag_named_like_a_list_that_takes_no_memberships_says_so(tag: str, says: str) -> None:
    """No create that HubSpot would refuse as a duplicate name: the error names the list and why."""
    error = run(Operation("apply_tags", ("3501", [tag]), [ALL_LISTS], raises=CrmRejected))
    assert says in error.message and tag in error.message and "rename" in error.message


def test_removing_a_tag_named_like_an_active_list_removes_nothing() -> None:
    run(Operation("remove_tags", ("3501", ["Engaged"]), [ALL_LISTS]))


def test_a_list_created_meanwhile_is_used_instead_of_failing() -> None:
    empty = {"lists": [], "hasMore": False, "offset": 0, "total": 0}
    made = {"lists": [{"listId": "21", "name": "Fresh", "processingType": "MANUAL", "objectTypeId": "0-1"}]}
    taken = {**LISTS["create_taken"], "message": "List with name Fresh already exists"}
    operation = Operation(
        "apply_tags",
        ("3501", ["Fresh"]),
        [
            Exchange("POST", "/crm/v3/lists/search", json=empty),
            Exchange("POST", "/crm/v3/lists", status=400, json=taken),
            Exchange("POST", "/crm/v3/lists/search", json=made),
            Exchange("PUT", "/crm/v3/lists/21/memberships/add", json={"recordIdsAdded": ["3501"]}),
        ],
    )
    run(operation)


def test_property_values_are_written_as_their_types_say() -> None:
    """Dates midnight-UTC milliseconds, booleans "true"/"false", checkboxes joined with ";"."""
    fields = {
        "birth_date": "1990-05-17",
        "last_login": "2025-01-30T10:15:00Z",
        "newsletter_opt_in": "1",
        "interests": ["news", "offers"],
        "wp_password": "x",
    }
    operation = Operation(
        "update_fields",
        ("3501", fields),
        [
            PROPERTIES,
            Exchange(
                "PATCH",
                "/crm/v3/objects/contacts/3501",
                json=case.SAM,
                sends={
                    "properties": {
                        "birth_date": 642902400000,
                        "last_login": 1738232100000,
                        "newsletter_opt_in": "true",
                        "interests": "news;offers",
                        "wp_password": "x",
                    }
                },
            ),
        ],
    )
    run(operation)


def test_a_new_contact_gets_typed_values_and_standard_fields_need_no_property_list() -> None:
    plain = OutboundContact(email="sam@example.com", fields={"first_name": "Sam"})
    run(
        Operation(
            "upsert_contact",
            (plain,),
            [
                Exchange("GET", "/crm/v3/objects/contacts/sam@example.com", status=404, json=case.NOT_FOUND),
                Exchange("POST", "/crm/v3/objects/contacts", status=201, json=case.SAM),
            ],
        )
    )
    dated = OutboundContact(email="sam@example.com", fields={"newsletter_opt_in": 0})
    run(
        Operation(
            "upsert_contact",
            (dated,),
            [
                PROPERTIES,
                Exchange("GET", "/crm/v3/objects/contacts/sam@example.com", status=404, json=case.NOT_FOUND),
                Exchange(
                    "POST",
                    "/crm/v3/objects/contacts",
                    status=201,
                    json=case.SAM,
                    sends={"properties": {"newsletter_opt_in": "false"}},
                ),
            ],
        )
    )


def test_a_token_that_cannot_read_properties_still_updates_with_values_as_given() -> None:
    """A private app without the schema scope: 403 on the property list, the update still goes."""
    missing_scopes = {
        "status": "error",
        "message": "This app hasn't been granted all required scopes",
        "category": "MISSING_SCOPES",
    }
    operation = Operation(
        "update_fields",
        ("3501", {"birth_date": "1990-05-17"}),
        [
            Exchange("GET", "/crm/v3/properties/contacts", status=403, json=missing_scopes),
            Exchange(
                "PATCH",
                "/crm/v3/objects/contacts/3501",
                json=case.SAM,
                sends={"properties": {"birth_date": "1990-05-17"}},
            ),
        ],
    )
    run(operation)
