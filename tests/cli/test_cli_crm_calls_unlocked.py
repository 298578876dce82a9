"""``crm-bridge connection test`` calls the CRM with no database transaction open: on SQLite a
rate-limited CRM's request counter (kept in the database) would otherwise wait for the write
lock its own command holds (see tests/api/test_crm_calls_unlocked.py)."""

from __future__ import annotations

import responses
from support import HUBSPOT_ANY, CrmCallProbe, short_sqlite_busy_timeout

HUBSPOT = "https://api.hubapi.com"


@responses.activate
def test_connection_test_of_hubspot_reaches_it_outside_a_transaction(app, cli_json, make_connection):
    make_connection("hub", "hubspot", access_token="pat-na1-cli-token")
    probe = CrmCallProbe(HUBSPOT_ANY).register(HUBSPOT)
    with short_sqlite_busy_timeout(app):
        code, data = cli_json("connection", "test", "hub")
    assert (code, data) == (0, {"ok": True, "name": "hub", "reached": True, "note": None})
    assert probe.calls == ["GET /crm/v3/objects/contacts"]
    assert probe.in_transaction == [False]


def test_a_dry_run_of_hubspot_answers_on_sqlite_too(app, cli_json, make_connection):
    make_connection("hub", "hubspot", access_token="pat-na1-cli-token")
    with short_sqlite_busy_timeout(app), responses.RequestsMock():  # nothing may leave
        code, data = cli_json("connection", "test", "hub", "--dry-run")
    assert code == 0
    assert data["requests"][0]["url"].startswith(f"{HUBSPOT}/crm/v3/objects/contacts/")
