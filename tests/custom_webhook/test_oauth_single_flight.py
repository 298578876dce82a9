"""Issue 16 item 9: two deliveries that start together on an OAuth2 custom webhook fetch the
token once: the second waits for the first's fetch and uses its token."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from bridge.outbound.client import OutboundClient, OutboundPolicy
from crm_adapters import webhook_oauth
from crm_adapters.base import OutboundContact, OutboundEvent
from crm_adapters.custom_webhook import CustomWebhookAdapter

DEADLINE_S = 10.0


def contact(event_id: str) -> OutboundContact:
    event = OutboundEvent(id=event_id, type="user.registered", occurred_at="2026-01-02T03:04:05+00:00")
    return OutboundContact(email=f"{event_id}@example.com", event=event)


def test_two_deliveries_starting_together_fetch_the_token_once(receiver: Any) -> None:
    entered, release = threading.Event(), threading.Event()
    token_calls: list[int] = []

    def token(request: Any) -> tuple[int, dict[str, str], bytes]:
        token_calls.append(1)
        entered.set()
        release.wait(DEADLINE_S)  # the first fetch stays in flight until the test lets it go
        body = {"access_token": f"access-{len(token_calls)}", "token_type": "Bearer", "expires_in": 3600}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    receiver.routes["/token"] = token
    auth = {"type": "oauth2", "token_url": receiver.url + "/token", "client_id": "c1", "client_secret": "s1"}
    config = {"url": receiver.url + "/hook", "auth": auth}
    key = (auth["token_url"], "c1", "")
    errors: list[BaseException] = []

    def deliver(event_id: str) -> None:
        try:  # each delivery has its own adapter and client, as the worker's threads do
            client = OutboundClient(policy=OutboundPolicy(allow_private=True))
            CustomWebhookAdapter(config, client).upsert_contact(contact(event_id))
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=deliver, args=("dlv_1",))
    second = threading.Thread(target=deliver, args=("dlv_2",))
    first.start()
    assert entered.wait(DEADLINE_S)
    second.start()
    deadline = time.monotonic() + DEADLINE_S  # wait until the second waits, or fetched on its own
    while webhook_oauth.TOKENS.waiting(key) == 0 and len(token_calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    first.join(DEADLINE_S)
    second.join(DEADLINE_S)

    assert not errors
    assert len(token_calls) == 1
    hooks = [r.headers["Authorization"] for r in receiver.requests if r.path == "/hook"]
    assert hooks == ["Bearer access-1", "Bearer access-1"]
