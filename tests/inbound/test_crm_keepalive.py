"""Webhooks that read the CRM keep their HTTP connection to it (a real loopback server, HTTP/1.1
keep-alive), and each webhook still starts clean: no cookie of an earlier one is sent."""

from __future__ import annotations

import json
from typing import Any

from support import Received, load_fixture

GET_BY_ID = load_fixture("fluentcrm/api/get_by_id.json")
CONTACT_PATH = "/wp-json/fluent-crm/v2/subscribers/11"


def serve_contact(receiver: Any, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(GET_BY_ID["response"]["json"]).encode()

    def answer(_: Received) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json", **(headers or {})}, body

    receiver.routes[CONTACT_PATH] = answer


def loopback_fluent(make_connection: Any, receiver: Any) -> str:
    return make_connection("fluent", "fluentcrm", base_url=receiver.url, username="api-user", app_password="pw pw")


def test_id_only_updates_reuse_one_connection_to_the_crm(hook, make_connection, receiver):
    serve_contact(receiver)
    key = loopback_fluent(make_connection, receiver)
    added = hook("add", key, contact_id="11")
    assert added.status_code == 200, added.get_json()
    for _ in range(2):
        updated = hook("update", key, contact_id="11")
        assert updated.status_code == 200 and updated.get_json()["matched"] is True, updated.get_json()
    reads = [r for r in receiver.requests if r.path.startswith(CONTACT_PATH)]
    assert len(reads) == 3  # one read per webhook, all with the connection's credentials
    assert all(r.headers["Authorization"].startswith("Basic ") for r in reads)
    assert len({r.client for r in reads}) == 1  # one TCP connection: kept alive between webhooks


def test_a_kept_connection_sends_no_cookie_of_an_earlier_webhook(hook, make_connection, receiver):
    serve_contact(receiver, {"Set-Cookie": "wordpress_sec=abc; Path=/"})
    key = loopback_fluent(make_connection, receiver)
    assert hook("add", key, contact_id="11").status_code == 200
    assert hook("update", key, contact_id="11").status_code == 200
    reads = [r for r in receiver.requests if r.path.startswith(CONTACT_PATH)]
    assert len(reads) == 2 and len({r.client for r in reads}) == 1
    assert "Cookie" not in reads[1].headers
