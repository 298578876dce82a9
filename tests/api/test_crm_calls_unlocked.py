"""CRM calls made for an API request never run inside the request's database transaction.

On SQLite every transaction holds the database's write lock (``bridge.database``). A CRM with
a declared rate limit (HubSpot, ActiveCampaign, Mailchimp) counts each request in the limits
storage, by default the database through a connection of its own: inside the request's
transaction that count waited for the lock its own thread held (30 s busy timeout, then 503),
and any CRM call inside a transaction holds every other writer back for the CRM's latency.
"""

from __future__ import annotations

import pytest
import responses
from support import HUBSPOT_ANY, CrmCallProbe, short_sqlite_busy_timeout

HUBSPOT = "https://api.hubapi.com"
HUBSPOT_TOKEN = "pat-na1-hubspot-private-app-token"


# The CRMs with a declared rate limit: (type, settings, the URL their connection test calls).
RATE_LIMITED = {
    "hubspot": ({"access_token": HUBSPOT_TOKEN}, f"{HUBSPOT}/crm/v3/objects/contacts"),
    "activecampaign": (
        {"base_url": "https://acme.api-us1.com", "api_key": "ac-api-key-test-value"},
        "https://acme.api-us1.com/api/3/users/me",
    ),
    "mailchimp": (
        {"api_key": "mc-api-key-test-value-us21", "list_id": "a1b2c3"},
        "https://us21.api.mailchimp.com/3.0/ping",
    ),
}


@responses.activate
@pytest.mark.parametrize("crm", sorted(RATE_LIMITED))
def test_the_connection_test_of_a_rate_limited_crm_reaches_it_outside_the_request_transaction(
    app, api, make_connection, crm
):
    settings, url = RATE_LIMITED[crm]
    make_connection("limited", crm, **settings)
    probe = CrmCallProbe({"results": []})
    responses.add_callback(responses.GET, url, callback=probe)
    with short_sqlite_busy_timeout(app):
        response = api("POST", "/api/connections/limited/test")
    assert (response.status_code, response.get_json()) == (
        200,
        {"ok": True, "name": "limited", "reached": True, "note": None},
    )
    assert probe.in_transaction == [False]


@responses.activate
def test_a_dry_run_that_sends_calls_hubspot_outside_the_request_transaction(app, api, make_connection):
    make_connection("hub", "hubspot", access_token=HUBSPOT_TOKEN)
    probe = CrmCallProbe(HUBSPOT_ANY).register(HUBSPOT)
    with short_sqlite_busy_timeout(app):
        response = api("POST", "/api/connections/hub/dry-run", json={"send": True})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["error"] is None and "upsert_contact → contact id '42'" in body["log"]
    assert probe.calls == [
        "GET /crm/v3/objects/contacts/preset-user@example.com",
        "PATCH /crm/v3/objects/contacts/42",
    ]
    assert probe.in_transaction == [False, False]


def test_a_dry_run_that_does_not_send_answers_on_sqlite_too(app, api, make_connection):
    make_connection("hub", "hubspot", access_token=HUBSPOT_TOKEN)
    with short_sqlite_busy_timeout(app), responses.RequestsMock():  # nothing may leave
        response = api("POST", "/api/connections/hub/dry-run", json={"send": False})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["requests"][0]["url"].startswith(f"{HUBSPOT}/crm/v3/objects/contacts/")
