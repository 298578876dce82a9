"""``Adapter.list_contacts`` (batch import and resync) for every adapter, against `responses`
shaped after each CRM's documented listing: the first page's request, the cursor it hands on,
and what a CRM without a listing API says."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from support import load_fixture

from bridge.outbound.client import OutboundClient, OutboundPolicy
from crm_adapters.activecampaign import ActiveCampaignAdapter
from crm_adapters.base import Adapter
from crm_adapters.custom_webhook import CustomWebhookAdapter
from crm_adapters.errors import AuthRefused, ListingNotSupported
from crm_adapters.fluentcrm import FluentCrmAdapter
from crm_adapters.hubspot import HubSpotAdapter
from crm_adapters.mailchimp import MailchimpAdapter
from crm_adapters.mautic import MauticAdapter
from crm_adapters.pulsetech import PulseTechAdapter


def make(adapter: type[Adapter], **config: Any) -> Adapter:
    return adapter(config, OutboundClient(policy=OutboundPolicy(allow_private=True)))


def query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


@responses.activate
def test_fluentcrm_lists_a_tag_by_its_id_page_by_page():
    recorded = load_fixture("fluentcrm/api/list_by_tag_page.json")["response"]["json"]
    base = "https://crm.example.com/wp-json/fluent-crm/v2"
    tags = {"tags": {"total": 1, "current_page": 1, "last_page": 1, "data": [{"id": 12, "slug": "promo-5af224"}]}}
    responses.get(f"{base}/tags", json=tags)
    first = {**recorded, "subscribers": {**recorded["subscribers"], "last_page": 3, "total": 3}}
    responses.get(f"{base}/subscribers", json=first)
    adapter = make(FluentCrmAdapter, base_url="https://crm.example.com", username="u", app_password="p")

    page = adapter.list_contacts("promo-5af224")

    assert query(responses.calls[1]) == {"tags[]": ["12"], "per_page": ["100"], "page": ["1"]}
    assert [(c.contact_id, c.email, c.tags) for c in page.contacts] == [
        ("105", "cap2-5af224@example.com", ["promo-5af224"])
    ]
    assert (page.next_cursor, page.total) == ("2:12", 3)
    adapter.list_contacts("promo-5af224", page.next_cursor)
    assert len(responses.calls) == 3  # the tag is resolved once: its id rides in the cursor
    assert query(responses.calls[2])["page"] == ["2"]


@responses.activate
def test_fluentcrm_lists_nothing_for_a_tag_it_does_not_have():
    base = "https://crm.example.com/wp-json/fluent-crm/v2"
    responses.get(f"{base}/tags", json={"tags": {"last_page": 1, "data": []}})
    page = make(FluentCrmAdapter, base_url="https://crm.example.com").list_contacts("missing")
    assert (page.contacts, page.next_cursor, page.total) == ([], None, 0)


@responses.activate
def test_pulsetech_lists_contacts_tagged_by_name():
    responses.get(
        "https://app.pulse.example/api/v1/contacts/tagged/",
        json={"data": [{"id": 7, "email": "Ann@Example.com", "first_name": "Ann"}], "meta": {"last_page": 2}},
    )
    page = make(PulseTechAdapter, base_url="https://app.pulse.example", access_token="t").list_contacts("gold")
    assert query(responses.calls[0])["tag_name"] == ["gold"]
    assert [(c.contact_id, c.email, c.tags) for c in page.contacts] == [("7", "ann@example.com", None)]
    assert page.next_cursor == "2"


@responses.activate
def test_hubspot_pages_with_after_cursors_and_reads_a_lists_members_in_one_call():
    api = "https://api.hubapi.com"
    responses.post(
        f"{api}/crm/v3/lists/search",
        json={"lists": [{"listId": "12", "name": "VIP", "objectTypeId": "0-1"}], "hasMore": False},
    )
    responses.get(
        f"{api}/crm/v3/lists/12/memberships",
        json={"results": [{"recordId": "501"}, {"recordId": "502"}], "paging": {"next": {"after": "AbC"}}},
    )
    responses.post(
        f"{api}/crm/v3/objects/contacts/batch/read",
        json={"results": [{"id": "501", "properties": {"email": "a@x.io", "firstname": "A"}}]},
    )
    adapter = make(HubSpotAdapter, access_token="tok")
    page = adapter.list_contacts("VIP")
    assert [(c.contact_id, c.email, c.fields.get("first_name")) for c in page.contacts] == [("501", "a@x.io", "A")]
    assert page.next_cursor == "12|AbC"
    responses.get(f"{api}/crm/v3/lists/12/memberships", json={"results": [], "paging": {}})
    last = adapter.list_contacts("VIP", page.next_cursor)
    assert query(responses.calls[-1])["after"] == ["AbC"]
    assert (last.contacts, last.next_cursor) == ([], None)


@responses.activate
def test_hubspot_lists_every_contact_without_a_tag():
    responses.get(
        "https://api.hubapi.com/crm/v3/objects/contacts",
        json={"results": [{"id": "9", "properties": {"email": "b@x.io"}}], "paging": {"next": {"after": "9"}}},
    )
    page = make(HubSpotAdapter, access_token="tok").list_contacts()
    assert query(responses.calls[0])["limit"] == ["100"]
    assert (page.contacts[0].contact_id, page.next_cursor) == ("9", "|9")


@responses.activate
def test_activecampaign_lists_a_tag_by_offset():
    api = "https://acct.api-us1.com/api/3"
    responses.get(f"{api}/tags", json={"tags": [{"id": "4", "tag": "gold"}], "meta": {"total": "1"}})
    responses.get(
        f"{api}/contacts",
        json={"contacts": [{"id": "31", "email": "C@x.io", "firstName": "Cy"}], "meta": {"total": "150"}},
    )
    adapter = make(ActiveCampaignAdapter, base_url="https://acct.api-us1.com", api_key="k")
    page = adapter.list_contacts("gold")
    listing = query(responses.calls[-1])
    assert (listing["tagid"], listing["offset"], listing["limit"]) == (["4"], ["0"], ["100"])
    assert [(c.contact_id, c.email, c.fields.get("first_name")) for c in page.contacts] == [("31", "c@x.io", "Cy")]
    assert (page.next_cursor, page.total) == ("100:4", 150)


@responses.activate
def test_mailchimp_lists_a_tags_segment_by_offset_with_member_tags():
    api = "https://us1.api.mailchimp.com/3.0/lists/L1"
    responses.get(f"{api}/tag-search", json={"tags": [{"id": 55, "name": "gold"}], "total_items": 1})
    member = {"id": "abc", "email_address": "D@x.io", "merge_fields": {"FNAME": "Di"}, "tags": [{"name": "gold"}]}
    responses.get(f"{api}/segments/55/members", json={"members": [member], "total_items": 101})
    page = make(MailchimpAdapter, api_key="key-us1", list_id="L1").list_contacts("gold")
    assert query(responses.calls[-1]) == {"count": ["100"], "offset": ["0"]}
    assert [(c.contact_id, c.email, c.tags) for c in page.contacts] == [("abc", "d@x.io", ["gold"])]
    assert (page.next_cursor, page.total) == ("100:55", 101)


@responses.activate
def test_mautic_searches_by_tag_with_start():
    responses.get(
        "https://m.example.com/api/contacts",
        json={"total": "3", "contacts": {"8": {"id": 8, "fields": {"all": {"email": "e@x.io"}}, "tags": []}}},
    )
    page = make(MauticAdapter, base_url="https://m.example.com", username="u", password="p").list_contacts("gold")
    assert (query(responses.calls[0])["search"], query(responses.calls[0])["start"]) == (["tag:gold"], ["0"])
    assert [(c.contact_id, c.email, c.tags) for c in page.contacts] == [("8", "e@x.io", [])]
    assert page.next_cursor is None


def test_a_crm_without_a_listing_api_says_so():
    adapter = make(CustomWebhookAdapter, method="POST", url="https://hooks.example.com/x")
    with pytest.raises(ListingNotSupported, match="Custom webhook has no API to list contacts"):
        adapter.list_contacts()


@responses.activate
def test_a_refused_listing_is_a_typed_error():
    responses.get("https://crm.example.com/wp-json/fluent-crm/v2/subscribers", status=401, json={})
    with pytest.raises(AuthRefused):
        make(FluentCrmAdapter, base_url="https://crm.example.com").list_contacts()


def test_rate_limits_are_declared():
    assert (HubSpotAdapter.rate_limit.requests, HubSpotAdapter.rate_limit.seconds) == (100, 10)
    assert (ActiveCampaignAdapter.rate_limit.requests, ActiveCampaignAdapter.rate_limit.seconds) == (5, 1)
    assert MailchimpAdapter.rate_limit.concurrent == 10
    assert FluentCrmAdapter.rate_limit is None
