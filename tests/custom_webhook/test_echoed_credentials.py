"""Issue 18 item 7: a CRM that echoes the request back (as httpbin's ``/anything`` does: the
request's headers and URL in a JSON body, here with PHP's ``\\/`` escaping) cannot put the
credentials the client sent, in any encoding, into attempts, the API or the database: not
Basic's base64 nor what it decodes to, not an OAuth token fetched at run time."""

from __future__ import annotations

import base64
import json
from typing import Any

import requests

from bridge.extensions import db
from bridge.models import Delivery

USER = "hook-user"
PASSWORD = "pa/ss+w0rd?long-enough"  # "/" and "+" encode differently in JSON, URLs and base64
CLIENT_SECRET = "client-secret-0123456789"
TOKEN = "runtime-oauth-token-6f2c9a"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def echo(status: int):
    def reply(request: Any) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps({"headers": request.headers, "url": request.path, "method": request.method})
        return status, {"Content-Type": "application/json"}, body.replace("/", "\\/").encode()

    return reply


def token(request: Any) -> tuple[int, dict[str, str], bytes]:
    answer = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}
    return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()


def leaked(text: str) -> list[str]:
    """The credentials found in ``text``, whatever escaping it went through."""
    plain = text.replace("\\", "")
    forms = (BASIC, f"{USER}:{PASSWORD}", PASSWORD, TOKEN, CLIENT_SECRET)
    return [form for form in forms if form in plain]


def test_echoed_credentials_never_reach_attempts_api_or_storage(
    app, live_server: Any, auth_headers: dict[str, str], make_connection, receiver: Any, start_worker, dump_database
) -> None:
    receiver.routes["/basic"] = echo(400)  # refused: the echo also lands in the error message
    receiver.routes["/oauth"] = echo(200)
    receiver.routes["/token"] = token
    make_connection(
        "basic",
        "custom_webhook",
        url=receiver.url + "/basic",
        auth={"type": "basic", "username": USER, "password": PASSWORD},
    )
    oauth = {
        "type": "oauth2",
        "token_url": receiver.url + "/token",
        "client_id": "client-1",
        "client_secret": CLIENT_SECRET,
    }
    make_connection("oauth", "custom_webhook", url=receiver.url + "/oauth", auth=oauth)
    registered = requests.post(
        f"{live_server.url}/api/users", json={"email": "echo@example.com"}, headers=auth_headers, timeout=30
    )
    assert registered.status_code == 201, registered.text

    assert start_worker(concurrency=2).wait_until_processed(2, timeout=60)
    sent = {r.path.split("?")[0]: r.headers.get("Authorization") for r in receiver.requests}
    assert sent["/basic"] == f"Basic {BASIC}" and sent["/oauth"] == f"Bearer {TOKEN}"  # the echo carried them

    with app.app_context():
        rows = {row.connection.name: (row.id, row.status) for row in db.session.query(Delivery)}
    assert rows["basic"][1] == "dead" and rows["oauth"][1] == "succeeded"
    for delivery_id, _ in rows.values():
        shown = requests.get(f"{live_server.url}/api/deliveries/{delivery_id}", headers=auth_headers, timeout=30)
        assert shown.status_code == 200
        assert shown.json()["attempt_log"][0]["exchanges"]  # the echo was recorded, scrubbed
        assert leaked(shown.text) == []
    assert leaked(dump_database()) == []
