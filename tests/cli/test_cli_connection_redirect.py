"""``connection test`` against a CRM that redirects http:// to https:// names the base_url to set."""

from __future__ import annotations

import json
from pathlib import Path

import responses

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures/mautic/http_to_https_301.json").read_text())


@responses.activate
def test_test_says_where_the_crm_redirects_and_which_base_url_to_set(make_connection, cli_json):
    make_connection("mautic", "mautic", base_url="http://crm.example.com", username="api", password="pw-123")
    responses.get(FIXTURE["request"], status=301, headers=FIXTURE["headers"], body=FIXTURE["body"])
    code, data = cli_json("connection", "test", "mautic")
    assert code == 1 and data["error_class"] == "crm_rejected" and data["status"] == 301
    assert "redirects to https://crm.example.com/api/contacts" in data["message"]
    assert "set base_url to https://crm.example.com" in data["message"]
