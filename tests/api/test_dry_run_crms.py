"""The dry run of a CRM connection (issue 16 item 8): every request a registration would make
(method, URL, headers with secrets masked, body), answered by stand-ins shaped like the CRM's
recorded answers, and no error the CRM did not give."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import parse_qs

from support import load_fixture

BASE = "https://crm.example.com"
FLUENT_API = BASE + "/wp-json/fluent-crm/v2"
PASSWORD = "app-pass-never-shown"
PULSE_TOKEN = "pulse-token-never-shown"


def dry_run(client, auth_headers, name: str) -> dict[str, Any]:
    response = client.post(f"/api/connections/{name}/dry-run", json={"preset": "new_us_user"}, headers=auth_headers)
    assert response.status_code == 200, response.get_json()
    assert PASSWORD not in response.get_data(as_text=True) and PULSE_TOKEN not in response.get_data(as_text=True)
    return response.get_json()


def test_fluentcrm_shows_the_whole_registration_and_no_invented_error(make_connection, client, auth_headers) -> None:
    make_connection(
        "fluent", "fluentcrm", base_url=BASE, username="api", app_password=PASSWORD, assign_tags=["Newsletter"]
    )
    result = dry_run(client, auth_headers, "fluent")

    assert result["success"] is True and result["error"] is None
    methods_urls = [(r["method"], r["url"].split("?")[0]) for r in result["requests"]]
    assert methods_urls[-2:] == [
        ("POST", FLUENT_API + "/tags"),  # create the tag FluentCRM lacks (after reading the list)
        ("POST", FLUENT_API + "/subscribers"),  # create the contact with its tag: one write
    ]
    assert set(methods_urls[:-2]) == {("GET", FLUENT_API + "/tags")}
    create = result["requests"][-1]
    assert create["request_headers"]["Authorization"] == "[redacted]"
    assert json.loads(create["request_body"]) == {
        "first_name": "Preset",
        "last_name": "User",
        "email": "preset-user@example.com",
        "status": "subscribed",
        "tags": [1],  # the id the stand-in tag answer gave
    }
    recorded = load_fixture("fluentcrm/api/create_subscriber.json")["response"]["json"]
    stand_in = json.loads(result["responses"][-1]["response_body"])
    assert set(stand_in) == set(recorded) and "id" in stand_in["contact"]
    assert "upsert_contact → contact id '1'" in result["log"]
    assert not any("error" in line for line in result["log"])


def test_the_cli_dry_run_shows_headers_and_bodies(make_connection, runner) -> None:
    make_connection("fluent", "fluentcrm", base_url=BASE, username="api", app_password=PASSWORD)
    result = runner.invoke(args=["bridge", "connection", "test", "fluent", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"POST {FLUENT_API}/subscribers" in result.stdout
    assert "Authorization: [redacted]" in result.stdout and PASSWORD not in result.stdout
    assert '"email":"preset-user@example.com"' in result.stdout.replace(" ", "")
    assert "stand-in answer, not sent" in result.stdout and "error:" not in result.stdout


def test_pulsetech_finds_then_creates_with_the_apis_own_shapes(make_connection, client, auth_headers) -> None:
    make_connection("pulse", "pulsetech", base_url=BASE, access_token=PULSE_TOKEN)
    result = dry_run(client, auth_headers, "pulse")

    assert result["error"] is None
    assert [(r["method"], r["url"]) for r in result["requests"]] == [
        ("POST", BASE + "/api/v1/contact/find/"),
        ("POST", BASE + "/api/v1/contacts"),
    ]
    assert parse_qs(result["requests"][1]["request_body"])["is_marketable"] == ["true"]
    assert [r["status"] for r in result["responses"]] == [404, 201]
    assert "contact id '1'" in " ".join(result["log"])


def test_a_stand_in_the_adapter_cannot_read_is_not_reported_as_the_crms_error(
    make_connection, client, auth_headers, monkeypatch
) -> None:
    from crm_adapters import fluentcrm_stand_ins

    monkeypatch.setattr(fluentcrm_stand_ins, "answer", lambda method, url, body: None)  # a plain 200 {}
    make_connection("fluent", "fluentcrm", base_url=BASE, username="api", app_password=PASSWORD)
    result = dry_run(client, auth_headers, "fluent")
    assert result["error"] is None
    assert any(line.startswith("stopped:") for line in result["log"])


def test_mautic_creates_through_contacts_new(make_connection, client, auth_headers) -> None:
    make_connection("mautic", "mautic", base_url=BASE, access_token=PULSE_TOKEN, assign_tags=["members"])
    result = dry_run(client, auth_headers, "mautic")
    assert result["error"] is None
    assert [(r["method"], r["url"]) for r in result["requests"]] == [
        ("POST", BASE + "/api/contacts/new"),
        ("PATCH", BASE + "/api/contacts/1/edit"),  # the tags, on the id the stand-in gave
    ]
    assert result["requests"][0]["request_headers"]["Authorization"] == "[redacted]"


def calls(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["method"], r["url"]) for r in result["requests"]]


def answers(result: dict[str, Any]) -> list[Any]:
    return [json.loads(r["response_body"]) if r["response_body"] else None for r in result["responses"]]


def test_hubspot_finds_creates_then_makes_and_fills_a_list_per_tag(app, make_connection, client, auth_headers) -> None:
    make_connection("hub", "hubspot", base_url=BASE, access_token=PULSE_TOKEN, assign_tags=["Newsletter", "VIP"])
    result = dry_run(client, auth_headers, "hub")

    assert result["error"] is None and not any(line.startswith("stopped:") for line in result["log"])
    contacts, lists = BASE + "/crm/v3/objects/contacts", BASE + "/crm/v3/lists"
    assert calls(result) == [
        ("GET", contacts + "/preset-user@example.com?idProperty=email&properties=email"),  # not there yet
        ("POST", contacts),  # so it is created
        ("POST", lists + "/search"),  # the portal's lists: none is a tag yet
        ("POST", lists),  # a MANUAL list per tag
        ("POST", lists),
        ("PUT", lists + "/101/memberships/add"),  # the new contact joins each
        ("PUT", lists + "/102/memberships/add"),
    ]
    assert [r["status"] for r in result["responses"]] == [404, 201, 200, 200, 200, 200, 200]
    assert result["requests"][0]["request_headers"]["Authorization"] == "[redacted]"
    assert json.loads(result["requests"][3]["request_body"]) == {
        "name": "Newsletter",
        "objectTypeId": "0-1",
        "processingType": "MANUAL",
    }
    assert json.loads(result["requests"][5]["request_body"]) == ["1"]  # the id the create answered
    found, created, searched, new_list, *_ = answers(result)
    assert found["category"] == "OBJECT_NOT_FOUND"
    assert created["id"] == "1" and created["properties"]["email"] == "preset-user@example.com"
    assert set(searched) == set(load_fixture("hubspot/lists_search_all_types.json")["json"])
    recorded_list = load_fixture("hubspot/lists_search_all_types.json")["json"]["lists"][0]
    assert set(recorded_list) <= set(new_list["list"]) and new_list["list"]["name"] == "Newsletter"
    assert "upsert_contact → contact id '1'" in result["log"]
    assert "apply_tags ['Newsletter', 'VIP']" in result["log"]
    nothing_counted_against_the_crms_rate_limit(app)


def test_activecampaign_syncs_then_creates_and_links_each_tag(app, make_connection, client, auth_headers) -> None:
    make_connection("ac", "activecampaign", base_url=BASE, api_key=PASSWORD, assign_tags=["Newsletter", "VIP"])
    result = dry_run(client, auth_headers, "ac")

    assert result["error"] is None and not any(line.startswith("stopped:") for line in result["log"])
    api = BASE + "/api/3"
    assert calls(result) == [
        ("POST", api + "/contact/sync"),  # create or update by email, one call
        ("GET", api + "/tags?search=Newsletter&limit=100&offset=0"),  # no such tag yet
        ("POST", api + "/tags"),
        ("POST", api + "/contactTags"),
        ("GET", api + "/tags?search=VIP&limit=100&offset=0"),
        ("POST", api + "/tags"),
        ("POST", api + "/contactTags"),
    ]
    assert [r["status"] for r in result["responses"]] == [201, 200, 201, 201, 200, 201, 201]
    assert result["requests"][0]["request_headers"]["Api-Token"] == "[redacted]"
    assert json.loads(result["requests"][0]["request_body"]) == {
        "contact": {"firstName": "Preset", "lastName": "User", "email": "preset-user@example.com"}
    }
    links = [json.loads(result["requests"][i]["request_body"]) for i in (3, 6)]
    assert links == [{"contactTag": {"contact": "1", "tag": "101"}}, {"contactTag": {"contact": "1", "tag": "102"}}]
    synced, searched, tag, link, *_ = answers(result)
    assert set(synced["contact"]) <= set(load_fixture("activecampaign/deleted_contact.json")["json"]["contact"])
    assert searched["tags"] == [] and set(searched) <= {"tags", "meta"}
    assert set(tag["tag"]) <= set(load_fixture("activecampaign/tags_search.json")["tags"][0])
    assert set(link["contactTag"]) <= set(load_fixture("activecampaign/contact_tags.json")["contactTags"][0])
    assert "upsert_contact → contact id '1'" in result["log"]
    nothing_counted_against_the_crms_rate_limit(app)


def test_mailchimp_upserts_the_member_then_tags_it(app, make_connection, client, auth_headers) -> None:
    make_connection(
        "chimp", "mailchimp", base_url=BASE, api_key=PASSWORD + "-us1", list_id="a6b5da1054", assign_tags=["VIP"]
    )
    result = dry_run(client, auth_headers, "chimp")

    member = hashlib.md5(b"preset-user@example.com", usedforsecurity=False).hexdigest()
    members = f"{BASE}/lists/a6b5da1054/members/{member}"
    assert result["error"] is None
    assert calls(result) == [("PUT", members), ("POST", members + "/tags")]
    assert [r["status"] for r in result["responses"]] == [200, 204]
    upserted, tagged = answers(result)
    recorded = load_fixture("mailchimp/member_email_changed.json")["json"]
    assert set(upserted) <= set(recorded) and tagged is None  # 204: no body
    assert (upserted["id"], upserted["status"], upserted["list_id"]) == (member, "subscribed", "a6b5da1054")
    assert upserted["merge_fields"] == {"FNAME": "Preset", "LNAME": "User"}
    assert json.loads(result["requests"][1]["request_body"]) == {"tags": [{"name": "VIP", "status": "active"}]}
    assert f"upsert_contact → contact id '{member}'" in result["log"]
    nothing_counted_against_the_crms_rate_limit(app)


def nothing_counted_against_the_crms_rate_limit(app) -> None:
    """A dry run sends nothing, so it takes nothing from the CRM's shared rate-limit window
    (counting would also wait on the SQLite write lock its own request holds)."""
    from sqlalchemy import func, select

    from bridge.extensions import db
    from bridge.models import RateLimitCounter

    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RateLimitCounter)) == 0
