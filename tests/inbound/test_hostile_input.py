"""Issue 18: hostile bodies, keys and contacts at the WP Fusion endpoint (and the activity
webhook's JSON). Every refusal is a 4xx JSON answer with its log row, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from bridge.extensions import db
from bridge.inbound import request as inbound_request
from bridge.models import User, WebhookEvent
from bridge.ratelimit import failed_key_limiter

from .payloads import subscriber
from .test_status_table import expect_error

WRONG_KEY = "wrong-key-0000000000000000"
SECRET = "activity-secret-for-hostile-tests"


def log_rows(app) -> list[WebhookEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))
        db.session.expunge_all()
        return rows


def failures_counted(app, address: str = "127.0.0.1") -> int:
    with app.test_request_context():
        limiter = failed_key_limiter()
        return limiter.limiter.get_window_stats(limiter.item, limiter.namespace, address).remaining


def form(pairs: list[tuple[str, str]]) -> str:
    from urllib.parse import urlencode

    return urlencode(pairs)


FORM = "application/x-www-form-urlencoded"


# -- item 1: the key and the rate limit before any parsing of the body -------------------------


def test_wrong_key_is_refused_before_the_form_is_nested(app, hook, fluent_key, monkeypatch):
    nested: list[int] = []
    real = inbound_request.nest_php_keys
    monkeypatch.setattr(inbound_request, "nest_php_keys", lambda pairs: nested.append(1) or real(pairs))
    body = "&".join(["t[]=1"] * 20_000)
    remaining_before = failures_counted(app)
    response = hook("add", WRONG_KEY, body, content_type=FORM)
    expect_error(response, 403, "invalid_access_key")
    assert [row.status_code for row in log_rows(app)] == [403]
    assert nested == []  # the body was split to look for a key, never nested
    assert failures_counted(app) == remaining_before - 1  # counted: the rate limit applies


def test_nesting_is_linear_and_keeps_php_semantics():
    pairs = [("t[]", str(n)) for n in range(50_000)] + [("x[5]", "a"), ("x[]", "b")]
    nested = inbound_request.nest_php_keys(pairs)
    assert nested["t"] == [str(n) for n in range(50_000)]
    assert nested["x"] == {"5": "a", "1": "b"}  # a count of numeric keys, as before


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("t[]", "1")] * 1_001, "more than 1000 form fields"),
        ([("a[b][c][d][e][f][g][h]", "1")], "nest at most 6 levels"),
    ],
)
def test_oversized_or_deep_forms_are_invalid_payload(hook, fluent_key, only_log_row, pairs, message):
    with only_log_row():
        response = hook("add", fluent_key, form([("email", "a@example.com"), *pairs]), content_type=FORM)
    assert message in expect_error(response, 400, "invalid_payload")["message"]


def test_a_form_at_the_limits_is_read(hook, fluent_key):
    pairs = [("id", "7"), ("email", "seven@example.com"), ("a[b][c][d][e][f][g]", "deep")]
    pairs += [("tags[]", f"t{n}") for n in range(1_000 - len(pairs))]
    response = hook("add", fluent_key, form(pairs), content_type=FORM)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_multipart_with_too_many_parts_is_invalid_payload_not_too_large(client, fluent_key, only_log_row):
    data = {"email": "a@example.com", **{f"f{n}": "1" for n in range(2_000)}}
    with only_log_row():
        response = client.post(
            f"/?wpf_action=add&access_key={fluent_key}", data=data, content_type="multipart/form-data"
        )
    assert "1000 form fields" in expect_error(response, 400, "invalid_payload")["message"]


# -- item 4: bodies that used to give 500 and lose their log row ------------------------------


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "body",
    [
        deep_json(10_000),
        '{"id": 1, "email": "a@example.com", "first_name": "\\ud800"}',
        '{"id": 1, "email": "a@example.com", "first_name": "a\\u0000b"}',
        '{"id": 1, "email": "a@example.com", "first_name": NaN}',
    ],
    ids=["deep", "lone-surrogate", "nul", "nan"],
)
def test_json_no_database_can_store_is_invalid_payload(app, hook, fluent_key, only_log_row, body):
    with only_log_row():
        response = hook("add", fluent_key, body)
    expect_error(response, 400, "invalid_payload")
    [row] = log_rows(app)
    assert row.status_code == 400 and row.outcome == "invalid_payload"


@pytest.mark.parametrize("body", [deep_json(10_000), '{"first_name": "\\ud800"}', '{"a": "\\u0000"}'])
def test_hostile_json_with_a_wrong_key_is_403_and_logged(app, hook, fluent_key, body):
    response = hook("add", WRONG_KEY, body)
    expect_error(response, 403, "invalid_access_key")
    [row] = log_rows(app)
    assert row.status_code == 403 and WRONG_KEY not in (row.payload or "")


def test_a_nul_in_the_query_contact_id_is_invalid_payload_and_logged(app, hook, fluent_key, only_log_row):
    with only_log_row():
        response = hook("update", fluent_key, subscriber(), contact_id="4\x002")
    expect_error(response, 400, "invalid_payload")
    [row] = log_rows(app)
    assert row.status_code == 400


def test_a_nul_in_a_query_parameter_name_is_invalid_payload(client, fluent_key, only_log_row):
    with only_log_row():
        response = client.post(f"/?wpf_action=update&access_key={fluent_key}&x%00y=1&async=1", json=subscriber())
    expect_error(response, 400, "invalid_payload")


def test_a_nul_in_a_form_field_is_invalid_payload(hook, fluent_key, only_log_row):
    with only_log_row():
        response = hook("add", fluent_key, "id=1&email=a%40example.com&first_name=a%00b", content_type=FORM)
    expect_error(response, 400, "invalid_payload")


@pytest.mark.parametrize("body", [deep_json(10_000), '{"crm_lead_id": "\\ud800"}', '{"crm_lead_id": "a\\u0000"}'])
def test_activity_webhook_refuses_json_it_cannot_store(client, body):
    response = client.post(
        "/webhooks/crm/lead",
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {SECRET}"},
    )
    assert response.status_code == 400
    assert response.get_json()["ok"] is False


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "CRM_WEBHOOK_SECRET": SECRET}


# -- item 5: emails and contact ids ------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    ["a" * 10_000 + "@example.com", "eve@x\r\nBcc: all@example.com", "no-at-sign.example.com", "nul\x00@example.com"],
    ids=["long", "crlf", "no-at", "nul"],
)
def test_add_with_an_unusable_email_is_refused(app, hook, fluent_key, only_log_row, email):
    with only_log_row():
        response = hook("add", fluent_key, subscriber(email=email))
    expect_error(response, 400, "invalid_payload")
    with app.app_context():
        assert db.session.scalar(select(User).where(User.email.like("%example%"))) is None


@pytest.mark.parametrize("contact_id", [[1, 2], {"a": 1}, True, "x" * 500], ids=["array", "object", "true", "long"])
def test_a_contact_id_that_is_not_an_id_is_refused(hook, fluent_key, only_log_row, contact_id):
    with only_log_row():
        response = hook("add", fluent_key, subscriber(contact_id=contact_id))
    expect_error(response, 400, "invalid_payload")


def test_nan_contact_id_is_refused(hook, fluent_key, only_log_row):
    body = json.dumps(subscriber()).replace('"id": 42', '"id": NaN')
    with only_log_row():
        response = hook("add", fluent_key, body)
    expect_error(response, 400, "invalid_payload")


def test_more_than_1000_tags_are_refused(hook, fluent_key, only_log_row):
    tags = [{"slug": f"t{n}"} for n in range(1_001)]
    with only_log_row():
        response = hook("add", fluent_key, subscriber(tags=tags))
    assert "1000 tags" in expect_error(response, 400, "invalid_payload")["message"]


def test_a_plain_valid_contact_still_works(hook, fluent_key):
    response = hook("add", fluent_key, subscriber(contact_id=42.0, email="Jane.Doe+crm@Example.com"))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["contact_id"] == "42"


# -- item 8: disagreeing keys -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "headers", "body"),
    [
        ("access_key={good}&access_key=" + WRONG_KEY, {}, None),
        ("access_key={good}", {"X-Access-Key": WRONG_KEY}, None),
        ("access_key={good}", {"Authorization": f"Bearer {WRONG_KEY}"}, None),
        ("", {"X-Access-Key": "{good}"}, f"access_key={WRONG_KEY}"),
    ],
    ids=["two-in-query", "query-and-header", "query-and-bearer", "header-and-form"],
)
def test_keys_that_disagree_are_refused(app, client, fluent_key, query, headers, body):
    headers = {name: value.replace("{good}", fluent_key) for name, value in headers.items()}
    remaining_before = failures_counted(app)
    response = client.post(
        "/?wpf_action=test&" + query.replace("{good}", fluent_key),
        headers=headers,
        data=body,
        content_type=FORM if body else None,
    )
    assert "disagree" in expect_error(response, 403, "invalid_access_key")["message"]
    assert failures_counted(app) == remaining_before - 1
    [row] = log_rows(app)
    assert fluent_key not in (row.path + (row.payload or "")) and WRONG_KEY not in (row.path + (row.payload or ""))


def test_the_same_key_twice_is_one_key(client, fluent_key):
    response = client.post(f"/?wpf_action=test&access_key={fluent_key}", headers={"X-Access-Key": fluent_key})
    assert response.status_code == 200


# -- item 6: percent-encoded key names are scrubbed in every log --------------------------------


@pytest.mark.parametrize("name", ["%61ccess_key", "access%5Fkey", "%41ccess%5fkey"])
def test_encoded_key_names_are_scrubbed_from_log_lines_and_the_inbound_log(app, client, fluent_key, name):
    from bridge.outbound.redaction import scrub_text

    assert fluent_key not in scrub_text(f'"GET /?wpf_action=test&{name}={fluent_key} HTTP/1.1" 200')
    response = client.get(f"/?wpf_action=test&{name}={fluent_key}")
    if name.startswith("%41"):  # ACCESS_KEY is not our parameter: a missing key, still never logged
        assert response.status_code == 403
    [row] = log_rows(app)
    assert fluent_key not in row.path + (row.payload or "") + (row.message or "")
