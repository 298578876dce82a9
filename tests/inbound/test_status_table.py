"""Every row of CONTRACT.md §3's status table, over HTTP: status, error code, body shape, and
for errors that nothing but the inbound log row was written."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, ClassVar

import pytest
import responses

from crm_adapters.base import InboundRequest, Setting
from crm_adapters.errors import InvalidSignature
from crm_adapters.fluentcrm import FluentCrmAdapter

from .conftest import FLUENT_SETTINGS
from .payloads import FLUENT_API, fluent_tags, subscriber

ADD_KEYS = {
    "success",
    "action",
    "connection",
    "contact_id",
    "user_id",
    "created",
    "username",
    "role",
    "tags",
    "notification_sent",
    "password_returned",
}
UPDATE_KEYS = {
    "success",
    "action",
    "connection",
    "contact_id",
    "user_id",
    "matched",
    "updated_fields",
    "tags",
    "tags_added",
    "tags_removed",
}


class SignedAdapter(FluentCrmAdapter):
    """FluentCRM parsing plus an HMAC signature and a Mailchimp-style bare-GET URL check."""

    type: ClassVar[str] = "signed_test"
    settings: ClassVar[list[Setting]] = [
        *FluentCrmAdapter.settings,
        Setting("webhook_secret", "Signing secret", secret=True),
    ]

    def verify(self, request: InboundRequest) -> None:
        expected = hmac.new(self.config["webhook_secret"].encode(), request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.header("x-signature") or "", expected):
            raise InvalidSignature("signature mismatch")

    def handles_verification_ping(self, request: InboundRequest) -> bool:
        return request.method == "GET" and not request.has_body


@pytest.fixture
def signed_key(make_connection, register_adapter) -> str:
    register_adapter(SignedAdapter)
    return make_connection("signed", "signed_test", webhook_secret="s3cret-signing", **FLUENT_SETTINGS)


def expect_error(response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["success"] is False
    assert body["error"] == code
    assert body["message"]
    return body


def test_add_creates_a_user(hook, fluent_key, table_counts):
    response = hook("add", fluent_key, subscriber(tags=fluent_tags("vip")))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == ADD_KEYS
    assert body["created"] is True
    assert body["contact_id"] == "42"
    assert body["connection"] == "fluent"
    assert body["tags"] == ["vip"]
    assert body["password_returned"] == "off"
    assert table_counts()["user_account"] == 1


def test_update_answers_with_changes(hook, fluent_key):
    hook("add", fluent_key, subscriber(tags=fluent_tags("vip")))
    response = hook("update", fluent_key, subscriber(first_name="Janet", tags=fluent_tags("gold")))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == UPDATE_KEYS
    assert body["matched"] is True
    assert body["updated_fields"] == ["first_name"]
    assert (body["tags"], body["tags_added"], body["tags_removed"]) == (["gold"], ["gold"], ["vip"])


@pytest.mark.parametrize("action", ["update", "update_tags"])
def test_unknown_contact_is_a_200_without_writes(hook, fluent_key, only_log_row, action):
    with only_log_row():
        response = hook(action, fluent_key, subscriber(contact_id=999, email="nobody@example.com"))
    assert response.status_code == 200
    assert response.get_json() == {
        "success": True,
        "action": action,
        "matched": False,
        "reason": "no matching user",
    }


def test_async_is_accepted_and_queued(hook, fluent_key, table_counts):
    before = table_counts()
    response = hook("add", fluent_key, subscriber(), **{"async": "true"})
    assert response.status_code == 202
    body = response.get_json()
    assert body["success"] is True and body["queued"] is True and body["action"] == "add"
    assert isinstance(body["job_id"], int)
    after = table_counts()
    assert after["delivery"] - before["delivery"] == 1
    assert after["user_account"] == before["user_account"]


def test_test_action(hook, fluent_key, only_log_row):
    with only_log_row():
        response = hook("test", fluent_key)
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "connection": "fluent"}


@pytest.mark.parametrize(
    ("action", "body", "params", "code"),
    [
        (None, subscriber(), {}, "missing_action"),
        ("delete", subscriber(), {}, "unknown_action"),
        ("add", "{not json", {}, "invalid_payload"),
        ("add", [1, 2], {}, "invalid_payload"),
        ("add", {"email": "a@example.com"}, {}, "missing_contact_id"),
        ("add", subscriber(), {"send_notification": "maybe"}, "invalid_parameter"),
        ("add", subscriber(), {"async": "2"}, "invalid_parameter"),
        ("add", subscriber(), {"role": "no-such-role"}, "unknown_role"),
        ("add", subscriber(), {"role": "administrator"}, "forbidden_role"),
        ("update", subscriber(), {"role": "administrator"}, "forbidden_role"),
    ],
)
def test_400s(hook, fluent_key, only_log_row, action, body, params, code):
    if action == "update":
        hook("add", fluent_key, subscriber())
    with only_log_row():
        response = hook(action, fluent_key, body, **params)
    expect_error(response, 400, code)


@pytest.mark.parametrize("key", [None, "", "cbk_wrong"])
def test_403_invalid_access_key(hook, fluent_key, only_log_row, table_counts, key):
    before = table_counts()["rate_limit_counter"]
    response = hook("add", key, subscriber())
    expect_error(response, 403, "invalid_access_key")
    counts = table_counts()
    assert counts["user_account"] == 0
    assert counts["rate_limit_counter"] == before + 1  # a failed attempt is counted


def test_403_invalid_signature_and_a_valid_one(hook, signed_key, only_log_row):
    body = '{"id": 5, "email": "signed@example.com", "tags": []}'
    with only_log_row():
        expect_error(hook("add", signed_key, body, headers={"X-Signature": "bad"}), 403, "invalid_signature")
    with only_log_row():
        expect_error(hook("add", signed_key, body), 403, "invalid_signature")
    good = hmac.new(b"s3cret-signing", body.encode(), hashlib.sha256).hexdigest()
    response = hook("add", signed_key, body, headers={"X-Signature": good})
    assert response.status_code == 200 and response.get_json()["created"] is True


def test_verification_ping_answers_verified(hook, signed_key, monkeypatch, only_log_row):
    monkeypatch.setattr(SignedAdapter, "verify", lambda self, request: None)
    with only_log_row():
        response = hook("add", signed_key, method="GET")
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "verified": True}


def test_413_payload_too_large(app, hook, fluent_key, only_log_row):
    app.config.update(BRIDGE_MAX_BODY_BYTES=200, MAX_CONTENT_LENGTH=200)
    with only_log_row():
        response = hook("add", fluent_key, subscriber(bio="x" * 500))
    expect_error(response, 413, "payload_too_large")


def test_422_missing_email_when_the_crm_cannot_supply_one(hook, make_connection, only_log_row):
    key = make_connection("bare", "fluentcrm")  # no API settings: the payload is all there is
    with only_log_row():
        response = hook("add", key, subscriber(email=None, tags=None))
    expect_error(response, 422, "missing_email")


@responses.activate
def test_422_missing_email_even_after_loading(hook, fluent_key, only_log_row):
    responses.get(f"{FLUENT_API}/subscribers/42", json={"subscriber": {"id": 42, "email": None, "tags": []}})
    with only_log_row():
        response = hook("add", fluent_key, subscriber(email=None))
    expect_error(response, 422, "missing_email")
    assert len(responses.calls) == 1


def test_429_after_more_than_20_failed_attempts(hook, fluent_key, only_log_row):
    for _ in range(20):
        expect_error(hook("test", "cbk_wrong"), 403, "invalid_access_key")
    assert hook("test", fluent_key).status_code == 200  # 20 failures: not yet more than 20
    expect_error(hook("test", "cbk_wrong"), 403, "invalid_access_key")
    with only_log_row():
        response = hook("test", fluent_key)  # refused unchecked, even with the right key
    expect_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60


@responses.activate
@pytest.mark.parametrize("status", [500, 401, 503])
def test_502_when_the_crm_fails(hook, fluent_key, only_log_row, status):
    responses.get(f"{FLUENT_API}/subscribers/42", status=status, json={"message": "nope"})
    with only_log_row():
        response = hook("add", fluent_key, subscriber(email=None, tags=None))
    expect_error(response, 502, "crm_unavailable")


def test_503_when_no_connection_exists(hook, only_log_row):
    with only_log_row():
        response = hook("add", "cbk_anything", subscriber())
    expect_error(response, 503, "not_configured")


def test_get_root_without_action_is_a_page(client, only_log_row, table_counts):
    before = table_counts()
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "crm-bridge is running" in response.get_data(as_text=True)
    assert table_counts() == before


def test_get_with_a_key_but_no_action_is_json(client, fluent_key):
    response = client.get("/", query_string={"access_key": fluent_key})
    expect_error(response, 400, "missing_action")


def test_413_for_a_chunked_body_without_content_length(app, live_server, fluent_key, table_counts):
    """Werkzeug finds a chunked body too large only while reading it: still a JSON 413 and a log row."""
    import requests

    app.config.update(BRIDGE_MAX_BODY_BYTES=1000, MAX_CONTENT_LENGTH=1000)
    before = table_counts()

    def chunks():
        for _ in range(20):
            yield b"x" * 200

    response = requests.post(
        live_server.url + "/",
        params={"wpf_action": "add", "access_key": fluent_key},
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    after = table_counts()
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == {"webhook_event": 1}


def test_a_chunked_body_within_the_limit_is_read_whole(live_server, fluent_key):
    import json

    import requests

    body = json.dumps(subscriber(bio="y" * 3000)).encode()
    response = requests.post(
        live_server.url + "/",
        params={"wpf_action": "add", "access_key": fluent_key},
        data=iter([body[:1000], body[1000:]]),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] is True
