"""FluentCRM quirks seen against the real API (issues 16 and 17): custom field values come only
when asked for, a 422 is either "not found" or a validation error, and tag creation is not
atomic. Mocked with ``responses`` from the recorded exchanges (shared/fixtures/fluentcrm/api,
tests/fixtures/fluentcrm/api)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import responses
from responses import matchers
from support import load_fixture

from bridge.connections.crm_locks import tag_guard_for
from bridge.outbound.client import OutboundClient
from bridge.outbound.policy import OutboundPolicy
from crm_adapters.base import OutboundContact
from crm_adapters.errors import ContactNotFound, CrmRejected
from crm_adapters.fluentcrm import FluentCrmAdapter

API = "https://crm.example.com/wp-json/fluent-crm/v2"
SETTINGS = {"base_url": "https://crm.example.com", "username": "api", "app_password": "secret app password"}


def fixture(name: str) -> dict[str, Any]:
    return load_fixture(f"fluentcrm/api/{name}.json")


def answer(name: str) -> dict[str, Any]:
    recorded = fixture(name)["response"]
    return {"status": recorded["status"], "json": recorded["json"]}


def adapter(**settings: Any) -> FluentCrmAdapter:
    client = OutboundClient(policy=OutboundPolicy(allow_private=True))
    return FluentCrmAdapter({**SETTINGS, **settings}, client)


def tag_listing(*tags: dict[str, Any]) -> dict[str, Any]:
    return {"tags": {"total": len(tags), "current_page": 1, "last_page": 1, "data": list(tags)}}


PROMO = {"id": 12, "title": "Promo 5af224", "slug": "promo-5af224"}
SYNC = f"{API}/subscribers/sync-segments"


@responses.activate
def test_load_contact_reads_tags_and_custom_values_in_one_request():
    """Issue 17 item 10: a mapped custom field loads its value (``with[]=subscriber.custom_values``)."""
    recorded = fixture("get_with_tags_and_custom_values")
    contact_id = str(recorded["response"]["json"]["subscriber"]["id"])
    responses.get(
        f"{API}/subscribers/{contact_id}",
        json=recorded["response"]["json"],
        match=[matchers.query_param_matcher(recorded["request"]["query"])],
    )
    field_map = {"email": "email", "first_name": "first_name", "username": "wp_username"}
    contact = adapter(field_map=field_map).load_contact(contact_id)
    subscriber = recorded["response"]["json"]["subscriber"]
    assert contact.fields["username"] == subscriber["custom_values"]["wp_username"]
    assert contact.tags == [tag["slug"] for tag in subscriber["tags"]]
    assert len(responses.calls) == 1


@responses.activate
@pytest.mark.parametrize(
    ("method", "recorded", "expected"),
    [
        ("load_contact", "get_missing_id", ContactNotFound),
        ("update_fields", "update_missing_404", ContactNotFound),
        ("update_fields", "create_invalid_email_422", CrmRejected),
        ("update_fields", "create_duplicate_422", CrmRejected),
        ("find_contact_id", "create_invalid_email_422", CrmRejected),
    ],
)
def test_a_422_is_not_found_only_when_the_body_says_so(method, recorded, expected):
    """Issue 17 item 11: FluentCRM answers 422 for a missing contact and for validation errors."""
    responses.add(responses.GET, f"{API}/subscribers/11", **answer(recorded))
    responses.add(responses.GET, f"{API}/subscribers/0", **answer(recorded))
    responses.add(responses.PUT, f"{API}/subscribers/11", **answer(recorded))
    args = {"load_contact": ("11",), "update_fields": ("11", {"email": "bad"}), "find_contact_id": ("x@example.com",)}
    with pytest.raises(expected) as info:
        getattr(adapter(), method)(*args[method])
    assert type(info.value) is expected  # ContactNotFound is no CrmRejected, nor the reverse


@responses.activate
def test_a_slug_taken_422_means_read_the_tags_again():
    """Someone else created the tag between our listing and our create: use theirs."""
    responses.get(f"{API}/tags", json=tag_listing())
    responses.get(f"{API}/tags", json=tag_listing())
    responses.post(f"{API}/tags", **answer("create_tag_slug_taken_422"))
    responses.get(f"{API}/tags", json=tag_listing(PROMO))
    responses.post(SYNC, json={"message": "Successfully updated the subscriber."})
    adapter().apply_tags("105", ["Promo 5af224"])
    sync = responses.calls[-1].request
    assert sync.url == SYNC and b'"attach": [12]' in sync.body


@responses.activate
def test_tags_are_listed_once_per_crm_account_and_again_on_a_miss():
    responses.get(f"{API}/tags", json=tag_listing(PROMO))
    responses.post(SYNC, json={})
    adapter().apply_tags("1", ["promo-5af224"])
    adapter().apply_tags("2", ["Promo 5af224"])  # a new adapter, as for every delivery
    assert [c.request.method for c in responses.calls] == ["GET", "POST", "POST"]
    responses.get(f"{API}/tags", json=tag_listing(PROMO, {"id": 13, "title": "Other", "slug": "other"}))
    adapter().apply_tags("3", ["other"])
    assert [c.request.method for c in responses.calls][3:] == ["GET", "POST"]


@responses.activate
def test_with_two_tags_of_one_slug_the_oldest_is_always_used():
    """What an earlier race left behind (seen live): every push picks the same one."""
    responses.get(f"{API}/tags", json=tag_listing({**PROMO, "id": 14}, PROMO))
    responses.post(SYNC, json={})
    adapter().apply_tags("1", ["promo-5af224"])
    assert b'"attach": [12]' in responses.calls[-1].request.body


def test_the_host_tag_guard_lets_one_creator_in_at_a_time(app):
    """``bridge.connections.crm_locks``: a file lock (SQLite) or an advisory lock (PostgreSQL),
    which two processes see as one: two holders here use two file descriptors or two database
    connections, as two processes would."""
    with app.app_context():
        first, second = tag_guard_for(1), tag_guard_for(1)
    assert first is not None and second is not None
    inside, release, second_in = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        release.wait(10)

    def run(guard, create) -> None:
        with app.app_context():
            guard(create)

    holder = threading.Thread(target=run, args=(first, hold))
    holder.start()
    assert inside.wait(10)
    waiter = threading.Thread(target=run, args=(second, second_in.set))
    waiter.start()
    assert not second_in.wait(0.3)  # blocked while the first holds the lock
    release.set()
    assert second_in.wait(10)
    holder.join(10)
    waiter.join(10)


@responses.activate
def test_a_new_contact_is_created_with_its_tags_in_one_write():
    """A registration is one write (recorded: create_with_tag); the tag step then sends nothing."""
    recorded = fixture("create_with_tag")
    responses.get(f"{API}/tags", json=tag_listing(PROMO))
    responses.post(
        f"{API}/subscribers",
        json=recorded["response"]["json"],
        match=[matchers.json_params_matcher({"tags": [12]}, strict_match=False)],
    )
    crm = adapter()
    contact_id = crm.upsert_contact(OutboundContact(email="cap2-5af224@example.com", tags=["promo-5af224"]))
    crm.apply_tags(str(contact_id), ["promo-5af224"])
    assert contact_id == "105"
    assert [c.request.method for c in responses.calls] == ["GET", "POST"]
