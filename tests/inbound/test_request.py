"""Reading the webhook out of the HTTP request: PHP bracket forms, flags, where the key comes
from, and the shared fixtures parsing to their ``expect`` blocks through the adapters."""

from __future__ import annotations

from typing import Any

import pytest
from support import load_fixture
from werkzeug.datastructures import EnvironHeaders

from bridge.inbound.request import (
    InvalidParameter,
    access_key_from,
    build_call,
    headers_from_environ,
    nest_php_keys,
    parse_flag,
)
from crm_adapters.activecampaign import ActiveCampaignAdapter
from crm_adapters.base import DEFAULT_FIELD_MAP
from crm_adapters.fluentcrm import FluentCrmAdapter

ADAPTERS = {"fluentcrm": FluentCrmAdapter, "activecampaign": ActiveCampaignAdapter}
FIXTURE_FILES = ["fluentcrm/full_subscriber_raw.json", "fluentcrm/with_tags.json", "activecampaign/contact_update.json"]


@pytest.mark.parametrize(
    "environ",
    [
        {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "12", "HTTP_HOST": "h", "HTTP_X_ACCESS_KEY": "k"},
        {"CONTENT_TYPE": "", "CONTENT_LENGTH": "", "HTTP_AUTHORIZATION": "Bearer k", "REQUEST_METHOD": "POST"},
        # CGI's duplicates of the two content headers are not headers of their own
        {"HTTP_CONTENT_TYPE": "text/plain", "HTTP_CONTENT_LENGTH": "3", "CONTENT_TYPE": "text/csv"},
        {"HTTP_WEBHOOK_SIGNATURE": "v1,abc", "HTTP_X_HUBSPOT_SIGNATURE_V3": "s", "wsgi.input": object()},
        {"SERVER_NAME": "h", "QUERY_STRING": "a=b"},
    ],
)
def test_headers_from_environ_are_werkzeugs_headers_by_lower_cased_name(environ):
    """Read from the environ at once (the hot path), the same headers ``request.headers`` lists."""
    assert headers_from_environ(environ) == {name.lower(): value for name, value in EnvironHeaders(environ).items()}


def test_php_bracket_keys_become_nested_dicts_and_lists():
    pairs = [
        ("contact[id]", "3"),
        ("contact[fields][plan]", "gold"),
        ("tags[]", "a"),
        ("tags[]", "b"),
        ("list[0]", "x"),
        ("list[1]", "y"),
        ("plain", "1"),
        ("plain", "2"),
    ]
    assert nest_php_keys(pairs) == {
        "contact": {"id": "3", "fields": {"plan": "gold"}},
        "tags": ["a", "b"],
        "list": ["x", "y"],
        "plain": "2",
    }


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_truthy_flags(value):
    assert parse_flag("async", value) is True


@pytest.mark.parametrize("value", ["0", "false", "No", "off", ""])
def test_falsy_flags(value):
    assert parse_flag("async", value) is False


def test_absent_flag_is_none_and_anything_else_is_refused():
    assert parse_flag("async", None) is None
    with pytest.raises(InvalidParameter):
        parse_flag("send_notification", "maybe")


@pytest.mark.parametrize(
    ("parameters", "headers", "expected"),
    [
        ({"access_key": "q"}, {"x-access-key": "h"}, "q"),
        ({}, {"x-access-key": "h"}, "h"),
        ({}, {"authorization": "Bearer b"}, "b"),
        ({}, {"authorization": "Basic b"}, None),
        ({}, {}, None),
    ],
)
def test_access_key_sources(parameters, headers, expected):
    assert access_key_from(parameters, headers) == expected


def test_query_parameters_win_over_form_ones_and_the_key_is_kept_from_the_adapter():
    call = build_call(
        method="POST",
        query={"wpf_action": "update", "contact_id": "9", "access_key": "secret-key"},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"wpf_action=add&contact_id=3&role=editor&contact[id]=3",
        content_type="application/x-www-form-urlencoded",
    )
    assert call.action == "update"
    assert call.access_key == "secret-key"
    assert call.inbound.query == {"wpf_action": "update", "contact_id": "9", "role": "editor"}
    assert call.options().role == "editor"
    assert "access_key" not in call.inbound.query


def test_key_and_action_may_come_in_a_form_body():
    call = build_call(
        method="POST",
        query={},
        headers={},
        body=b"wpf_action=test&access_key=k1",
        content_type="application/x-www-form-urlencoded",
    )
    assert (call.action, call.access_key) == ("test", "k1")
    assert "access_key" not in call.inbound.form


def test_bad_json_is_reported_not_raised():
    call = build_call(method="POST", query={}, headers={}, body=b"{nope", content_type="application/json")
    assert call.body_error is None  # JSON is decoded only once the key was accepted
    assert call.inbound.json is None
    assert call.body_error and "JSON" in call.body_error


def _call_from_fixture(sample: dict[str, Any]):
    return build_call(
        method=sample["method"],
        query=sample["query"],
        headers={"Content-Type": sample["content_type"]},
        body=sample["body"].encode(),
        content_type=sample["content_type"],
    )


@pytest.mark.parametrize("relative", FIXTURE_FILES)
def test_shared_fixtures_parse_to_their_expect_blocks(relative):
    sample = load_fixture(relative)
    adapter = ADAPTERS[relative.split("/")[0]]({"field_map": dict(DEFAULT_FIELD_MAP)}, http=None)  # type: ignore[arg-type]
    call = _call_from_fixture(sample)
    assert call.action == sample["query"]["wpf_action"]
    [contact] = adapter.parse(call.inbound)
    expect = sample["expect"]
    assert contact.contact_id == expect["contact_id"]
    assert contact.email == expect["email"]
    assert contact.fields == expect["fields"]
    assert contact.tags == expect["tags"]
