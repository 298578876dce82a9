"""The dry run: rendered without sending, or really sent; redacted; never writes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from bridge.connections.dry_run import dry_run
from bridge.connections.service import get_connection
from bridge.extensions import db
from bridge.models import ContactLink, Delivery, DeliveryAttempt, User, WebhookEvent

SECRET = "whsec_" + base64.b64encode(b"dry-run-signing-key-0123456789ab").decode()
BEARER = "bearer-token-never-shown"


def row_counts(app) -> dict[str, int]:
    with app.app_context():
        models = (User, ContactLink, Delivery, DeliveryAttempt, WebhookEvent)
        return {m.__name__: db.session.scalar(select(func.count()).select_from(m)) for m in models}


@pytest.fixture
def hook(make_connection, receiver: Any) -> str:
    make_connection(
        "hook",
        "custom_webhook",
        url=receiver.url + "/in/{{contact.meta.signup_country}}",
        body={"email": "{{contact.email}}", "tier": "{{contact.meta.tier}}", "tags": "{{contact.tags}}"},
        auth={"type": "bearer", "token": BEARER},
        signing_secret=SECRET,
        assign_tags=["from-site"],
    )
    return "hook"


def test_dry_run_renders_without_sending(app, client, auth_headers, hook: str, receiver: Any) -> None:
    before = row_counts(app)
    response = client.post("/api/connections/hook/dry-run", json={"preset": "new_us_user"}, headers=auth_headers)
    assert response.status_code == 200
    result = response.get_json()
    assert result["success"] is True and result["error"] is None and result["send"] is False
    (sent,) = result["requests"]
    assert sent["method"] == "POST" and sent["url"] == receiver.url + "/in/US"
    assert json.loads(sent["request_body"]) == {
        "email": "preset-user@example.com",
        "tier": "free",
        "tags": ["from-site"],
    }
    assert sent["request_headers"]["Authorization"] == "[redacted]"
    assert sent["request_headers"]["webhook-signature"] == "[redacted]"
    assert result["responses"][0]["status"] == 200
    assert any("not sent" in line for line in result["log"])
    assert receiver.requests == []
    assert BEARER not in response.get_data(as_text=True) and SECRET not in response.get_data(as_text=True)
    assert row_counts(app) == before


def test_dry_run_can_really_send(app, client, auth_headers, hook: str, receiver: Any) -> None:
    receiver.routes["/in/US"] = lambda r: (202, {"Content-Type": "application/json"}, b'{"queued":true}')
    before = row_counts(app)
    response = client.post("/api/connections/hook/dry-run", json={"send": True}, headers=auth_headers)
    result = response.get_json()
    assert result["error"] is None and result["send"] is True
    assert result["responses"] == [
        {
            "status": 202,
            "response_headers": result["responses"][0]["response_headers"],
            "response_body": '{"queued":true}',  # as the receiver wrote it
        }
    ]
    (seen,) = receiver.requests
    assert seen.headers["Authorization"] == f"Bearer {BEARER}"
    assert json.loads(seen.body)["email"] == "preset-user@example.com"
    assert BEARER not in response.get_data(as_text=True)
    assert row_counts(app) == before


def test_a_failing_target_is_reported_not_raised(client, auth_headers, hook: str, receiver: Any) -> None:
    receiver.routes["/in/US"] = lambda r: (503, {"Retry-After": "30"}, b"down for maintenance")
    result = client.post("/api/connections/hook/dry-run", json={"send": True}, headers=auth_headers).get_json()
    assert result["error"]["error_class"] == "crm_unavailable" and result["error"]["status"] == 503
    assert result["responses"][0]["response_body"] == "down for maintenance"
    assert result["log"][-1].startswith("error: crm_unavailable")


def test_dry_run_for_an_existing_user(app, client, auth_headers, hook: str) -> None:
    from bridge.accounts.users import create_user

    with app.app_context():
        user = create_user(email="grace@example.com", first_name="Grace", meta={"tier": "pro"}, signup_country="UK")
        db.session.commit()
        user_id = user.id
    result = client.post("/api/connections/hook/dry-run", json={"user_id": user_id}, headers=auth_headers).get_json()
    assert result["subject"] == {"user_id": user_id}
    assert result["requests"][0]["url"].endswith("/in/UK")
    assert json.loads(result["requests"][0]["request_body"])["email"] == "grace@example.com"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/api/connections/nope/dry-run", {}, 404, "not_found"),
        ("/api/connections/hook/dry-run", {"user_id": 999}, 404, "not_found"),
        ("/api/connections/hook/dry-run", {"preset": "martian"}, 400, "invalid_parameter"),
        ("/api/connections/hook/dry-run", {"send": "yes please"}, 400, "invalid_parameter"),
        ("/api/connections/hook/dry-run", ["not", "an", "object"], 400, "invalid_payload"),
    ],
)
def test_bad_requests(client, auth_headers, hook: str, path: str, body: Any, status: int, code: str) -> None:
    response = client.post(path, json=body, headers=auth_headers)
    assert response.status_code == status and response.get_json()["error"] == code


def test_token_is_required(client, hook: str) -> None:
    assert client.post("/api/connections/hook/dry-run", json={}).status_code == 401


def test_oauth_sequence_is_shown_without_sending(app, make_connection, receiver: Any) -> None:
    auth = {
        "type": "oauth2",
        "token_url": receiver.url + "/token",
        "client_id": "cid",
        "client_secret": "client-secret-xyz",
        "scope": "s",
    }
    make_connection("oauth", "custom_webhook", url=receiver.url + "/hook", auth=auth)
    with app.app_context():
        result = dry_run(get_connection("oauth"), preset="new_us_user", send=False)
    assert [r["url"] for r in result["requests"]] == [receiver.url + "/token", receiver.url + "/hook"]
    assert "client-secret-xyz" not in json.dumps(result)
    assert receiver.requests == []


def test_allowlist_refusal_shows_in_a_rendered_dry_run(app, make_connection) -> None:
    app.config["BRIDGE_OUTBOUND_ALLOWLIST"] = "*.example.com"
    make_connection("elsewhere", "custom_webhook", url="https://hooks.other.net/in")
    with app.app_context():
        result = dry_run(get_connection("elsewhere"), send=False)
    assert result["error"]["error_class"] == "outbound_denied"
    assert result["requests"][0]["url"] == "https://hooks.other.net/in"
