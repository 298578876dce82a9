"""``connection test`` on a custom webhook (issue 16 item 7): it makes the request the owner
chose (``test_url``/``test_method``, through the outbound policy) or says plainly that only the
settings were checked; it never claims to have reached a target it did not call."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.outbound.client import OutboundClient, OutboundPolicy
from crm_adapters.custom_webhook import SETTINGS_ONLY, CustomWebhookAdapter
from crm_adapters.errors import AuthRefused, OutboundDenied

METADATA = "http://169.254.169.254/latest/meta-data/"


def run_test(runner: Any, name: str) -> tuple[int, Any, str]:
    text = runner.invoke(args=["bridge", "connection", "test", name])
    data = runner.invoke(args=["bridge", "connection", "test", name, "--json"])
    return data.exit_code, json.loads(data.stdout), text.stdout + text.stderr


@pytest.mark.parametrize("url", [METADATA, "https://no-such-host.invalid/hook"])
def test_without_test_url_the_answer_says_nothing_was_sent(runner, make_connection, url: str) -> None:
    make_connection("hook", "custom_webhook", url=url, auth={"type": "bearer", "token": "tok-123456"})
    code, data, text = run_test(runner, "hook")
    assert code == 0
    assert data == {"ok": True, "name": "hook", "reached": False, "note": SETTINGS_ONLY}
    assert "reached the CRM" not in text and "nothing was sent" in text


def test_test_url_is_called_with_the_connection_auth_and_no_contact_data(runner, make_connection, receiver) -> None:
    make_connection(
        "hook",
        "custom_webhook",
        url=receiver.url + "/hook",
        test_url=receiver.url + "/ping",
        test_method="HEAD",
        auth={"type": "api_key", "header": "X-Api-Key", "value": "key-123456"},
    )
    code, data, text = run_test(runner, "hook")
    assert (code, data["reached"], data["note"]) == (0, True, None)
    assert "reached the CRM" in text
    assert [(r.method, r.path, r.headers.get("X-Api-Key"), r.body) for r in receiver.requests] == [
        ("HEAD", "/ping", "key-123456", b"")
    ] * 2


def test_a_refused_test_url_fails_the_test(runner, make_connection, receiver) -> None:
    receiver.routes["/ping"] = lambda r: (401, {}, b'{"error":"bad key"}')
    make_connection("hook", "custom_webhook", url=receiver.url + "/hook", test_url=receiver.url + "/ping")
    result = runner.invoke(args=["bridge", "connection", "test", "hook", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error_class"] == AuthRefused.error_class


def test_test_url_goes_through_the_outbound_policy() -> None:
    client = OutboundClient(policy=OutboundPolicy(allow_private=False))
    adapter = CustomWebhookAdapter({"url": "https://example.com/hook", "test_url": METADATA}, client)
    with pytest.raises(OutboundDenied):
        adapter.check()
    assert client.exchanges and client.exchanges[0]["error_class"] == "outbound_denied"
