"""ActiveCampaign held against the production API (issue 17, items 5-7 and field values): tag
search and contact tags are paged like every listing, a deleted contact still answers 200, and
custom field values are written as their field types say.

The fake answers listings as ActiveCampaign does: ``limit`` items (20 when not given, at most
100) from ``offset``, ``search`` matching names that *contain* the text, ``meta.total``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from adapters import test_activecampaign as case
from adapters.contract import Exchange, Operation
from adapters.recorded import recorded
from crm_adapters.errors import ContactNotFound

API = case.TestActiveCampaign.case.api
TAGS = recorded("activecampaign/tags_search.json")
CONTACT_TAGS = recorded("activecampaign/contact_tags.json")["contactTags"]
DELETED = recorded("activecampaign/deleted_contact.json")["json"]
FIELDS = recorded("activecampaign/custom_fields.json")["json"]
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


def listing(request: Any, key: str, items: list[dict[str, Any]]) -> tuple[int, dict[str, str], str]:
    query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
    if "search" in query:
        items = [item for item in items if query["search"].lower() in str(item.get("tag", "")).lower()]
    limit = min(int(query.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
    offset = int(query.get("offset", 0))
    page = items[offset : offset + limit]
    return 200, {}, json.dumps({key: page, "meta": {"total": str(len(items))}})


class FakeActiveCampaign:
    """Tags, one contact's tag links, and what was posted."""

    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.posted: list[tuple[str, Any]] = []
        rsps.add_callback("GET", f"{API}tags", callback=lambda r: listing(r, "tags", TAGS["tags"]))
        rsps.add_callback("POST", f"{API}tags", callback=self.create_tag)
        rsps.add_callback(
            "GET", f"{API}contacts/77/contactTags", callback=lambda r: listing(r, "contactTags", CONTACT_TAGS)
        )
        rsps.add_callback("POST", f"{API}contactTags", callback=self.record)
        rsps.add_callback("DELETE", f"{API}contactTags/5100", callback=self.record)

    def create_tag(self, request: Any) -> tuple[int, dict[str, str], str]:
        name = json.loads(request.body)["tag"]["tag"]
        if any(tag["tag"].lower() == name.lower() for tag in TAGS["tags"]):
            return 422, {}, json.dumps(TAGS["create_duplicate"])
        return self.record(request)

    def record(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.posted.append((f"{request.method} {urlsplit(request.url).path}", json.loads(request.body or "null")))
        return 201, {}, json.dumps({"contactTag": {"id": "9000"}})


@pytest.fixture
def fake() -> Iterator[FakeActiveCampaign]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeActiveCampaign(rsps)


def adapter() -> Any:
    return case.TestActiveCampaign().adapter()


def test_applying_a_tag_beyond_the_first_20_search_results_uses_it(fake: FakeActiveCampaign) -> None:
    adapter().apply_tags("77", ["VIP"])
    assert fake.posted == [("POST /api/3/contactTags", {"contactTag": {"contact": "77", "tag": "200"}})]


def test_removing_a_tag_beyond_the_first_20_results_removes_it(fake: FakeActiveCampaign) -> None:
    adapter().remove_tags("77", ["VIP"])
    assert [call for call, _ in fake.posted] == ["DELETE /api/3/contactTags/5100"]


def test_load_tags_reads_every_contact_tag(fake: FakeActiveCampaign) -> None:
    tags = adapter().load_tags("77")
    assert len(tags) == 25 and "VIP" in tags


def test_a_deleted_contact_is_not_found() -> None:
    operation = Operation(
        "load_contact", ("77",), [Exchange("GET", "contacts/77", json=DELETED)], raises=ContactNotFound
    )
    error = case.TestActiveCampaign().run(operation)
    assert "deleted+77@example.com" in error.message


def test_an_update_that_lands_on_a_deleted_contact_is_not_found() -> None:
    operation = Operation(
        "update_fields",
        ("77", {"first_name": "Jo"}),
        [Exchange("PUT", "contacts/77", json={"contact": DELETED["contact"]})],
        raises=ContactNotFound,
    )
    case.TestActiveCampaign().run(operation)


def test_custom_field_values_are_written_as_their_types_say() -> None:
    """Dates "Y-m-d H:i:s" (UTC), several values joined with "||", as WP Fusion writes them."""
    operation = Operation(
        "update_fields",
        ("77", {"BIRTHDAY": "1990-05-17", "INTERESTS": ["news", "offers"], "PLAN": "pro"}),
        [
            Exchange("GET", "fields", json=FIELDS),
            Exchange(
                "PUT",
                "contacts/77",
                json={"contact": {"id": "77", "email": "jo@example.com"}},
                sends={
                    "contact": {
                        "fieldValues": [
                            {"field": "4", "value": "1990-05-17 00:00:00"},
                            {"field": "5", "value": "news||offers"},
                            {"field": "6", "value": "pro"},
                        ]
                    }
                },
            ),
        ],
    )
    case.TestActiveCampaign().run(operation)
