"""The dry run of a CRM connection (issue 16 item 8): every request a registration would make
(method, URL, headers with secrets masked, body), answered by stand-ins shaped like the CRM's
recorded answers, and no error the CRM did not give."""

from __future__ import annotations

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
