"""Property-based test of the WP Fusion endpoint (issue 18): whatever the body, content type,
parameters and keys, the answer is never a 5xx, always JSON, and every request writes exactly
one inbound log row. Bounded (a few hundred examples, no per-example deadline) so the suite
stays fast; the connection has no CRM settings, so no example waits on a network call."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bridge.extensions import db
from bridge.models import WebhookEvent

WRONG_KEY = "wrong-key-0000000000000000"
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "text/plain",
    "text/html",
    "",
]
PARAMETER_NAMES = ["contact_id", "role", "send_notification", "async", "access_key", "wpf_action", "id", "email"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["\ud800", "a\x00b", "eve@x\r\nBcc: y@z", "jane@example.com", "x" * 300]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
)
contacts = st.fixed_dictionaries(
    {"id": json_values, "email": json_values},
    optional={"tags": json_values, "first_name": json_values, "user_pass": json_values},
)
form_keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["id", "email", "tags[]", "contact[id]", "contact[email]", "a[b][c][d][e][f][g][h]", "access_key"]),
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    json_values.map(lambda value: json.dumps(value).encode()),
    contacts.map(lambda value: json.dumps(value).encode()),
    st.lists(st.tuples(form_keys, st.text(max_size=20)), max_size=12).map(
        lambda pairs: urlencode(pairs, encoding="utf-8", errors="surrogatepass").encode()
    ),
    st.integers(0, 5_000).map(lambda depth: ("[" * depth + "]" * depth).encode()),
)


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_FAILED_KEY_LIMIT": 1_000_000}  # wrong keys must not end the run in 429s


@pytest.mark.timeout(600)
def test_any_request_gets_a_json_4xx_or_2xx_and_one_log_row(app, client, make_connection):
    key = make_connection("fluent", "fluentcrm")  # no CRM settings: nothing is loaded over the network

    def log_rows() -> int:
        with app.app_context():
            count = db.session.scalar(select(func.count()).select_from(WebhookEvent)) or 0
            db.session.remove()
            return count

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        method=st.sampled_from(["POST", "POST", "GET", "PUT"]),
        action=st.one_of(st.sampled_from(["add", "update", "update_tags", "test"]), st.text(min_size=1, max_size=8)),
        key_choice=st.sampled_from(["query", "header", "bearer", "wrong", "none", "both"]),
        parameters=st.dictionaries(st.sampled_from(PARAMETER_NAMES), st.text(max_size=20), max_size=4),
        content_type=st.sampled_from(CONTENT_TYPES),
        body=bodies,
    )
    def check(
        method: str,
        action: str,
        key_choice: str,
        parameters: dict[str, str],
        content_type: str,
        body: bytes,
    ) -> None:
        query: dict[str, str] = {**parameters, "wpf_action": action}
        headers: dict[str, str] = {}
        if key_choice in ("query", "both"):
            query["access_key"] = key
        if key_choice == "header":
            headers["X-Access-Key"] = key
        if key_choice == "bearer":
            headers["Authorization"] = f"Bearer {key}"
        if key_choice in ("wrong", "both"):
            headers["X-Access-Key"] = WRONG_KEY
        before = log_rows()
        response = client.open(
            "/",
            method=method,
            query_string=query,
            headers=headers,
            data=body,
            content_type=content_type or None,
        )
        if method == "PUT":
            assert response.status_code == 405
            assert response.is_json
            return
        assert response.status_code < 500, response.get_data(as_text=True)
        assert response.is_json and isinstance(response.get_json(), dict)
        assert log_rows() == before + 1

    check()
