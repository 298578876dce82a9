"""The custom webhook end to end against a loopback receiver (a real threaded HTTP server)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bridge.outbound.client import OutboundClient, OutboundPolicy
from crm_adapters.base import OutboundContact, OutboundEvent
from crm_adapters.custom_webhook import CustomWebhookAdapter, WebhookConfigError
from crm_adapters.errors import AuthRefused, CrmRejected, OutboundDenied, PayloadTooLarge

SECRET = "whsec_" + base64.b64encode(b"current-signing-key-0123456789ab").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"previous-signing-key-0123456789").decode()


def ada(event_id: str = "dlv_17") -> OutboundContact:
    return OutboundContact(
        email="ada@example.com",
        fields={"email": "ada@example.com", "first_name": "Ada"},
        tags=["vip", "newsletter"],
        first_name="Ada",
        last_name="Lovelace",
        username="ada",
        meta={"signup_country": "US", "tier": "free", "score": 42, "vip": True},
        event=OutboundEvent(id=event_id, type="user.registered", occurred_at="2026-01-02T03:04:05+00:00"),
    )


def webhook(config: dict[str, Any], *, allow_private: bool = True) -> tuple[CustomWebhookAdapter, OutboundClient]:
    client = OutboundClient(policy=OutboundPolicy(allow_private=allow_private))
    return CustomWebhookAdapter(config, client), client


def test_headers_query_and_nested_typed_body_arrive_as_configured(receiver: Any) -> None:
    adapter, _ = webhook(
        {
            "method": "PUT",
            "url": receiver.url + "/hooks/{{contact.meta.signup_country|lower}}",
            "headers": {"X-Tenant": "acme", "X-Email": "{{ user.email }}"},
            "query": {"source": "crm-bridge", "tier": "{{contact.meta.tier}}", "tag": "{{contact.tags}}"},
            "body": {
                "profile": {"email": "{{contact.email}}", "name": "{{contact.first_name}} {{contact.last_name}}"},
                "tags": "{{ contact.tags }}",
                "score": "{{contact.meta.score}}",
                "vip": "{{contact.meta.vip}}",
                "missing": "{{contact.meta.not_there}}",
                "event": {"type": "{{event.type}}", "id": "{{event.id}}", "at": "{{event.occurred_at}}"},
                "list": [1, "{{contact.meta.score + 1}}", {"u": "{{contact.username}}"}],
                "literal": True,
            },
        }
    )
    assert adapter.upsert_contact(ada()) is None
    (seen,) = receiver.requests
    assert seen.method == "PUT"
    assert seen.path == "/hooks/us?source=crm-bridge&tier=free&tag=vip&tag=newsletter"
    assert seen.headers["X-Tenant"] == "acme"
    assert seen.headers["X-Email"] == "ada@example.com"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Idempotency-Key"] == "dlv_17"
    assert json.loads(seen.body) == {
        "profile": {"email": "ada@example.com", "name": "Ada Lovelace"},
        "tags": ["vip", "newsletter"],
        "score": 42,
        "vip": True,
        "missing": None,
        "event": {"type": "user.registered", "id": "dlv_17", "at": "2026-01-02T03:04:05+00:00"},
        "list": [1, 43, {"u": "ada"}],
        "literal": True,
    }


def test_without_a_body_template_the_standard_envelope_is_sent(receiver: Any) -> None:
    adapter, _ = webhook({"url": receiver.url + "/in"})
    adapter.upsert_contact(ada())
    sent = json.loads(receiver.requests[0].body)
    assert sent["type"] == "user.registered" and sent["id"] == "dlv_17"
    assert sent["contact"]["email"] == "ada@example.com"
    assert sent["contact"]["tags"] == ["vip", "newsletter"]
    assert sent["contact"]["meta"]["signup_country"] == "US"


def test_get_sends_no_body(receiver: Any) -> None:
    adapter, _ = webhook({"method": "GET", "url": receiver.url + "/ping", "query": {"e": "{{contact.email}}"}})
    adapter.upsert_contact(ada())
    (seen,) = receiver.requests
    assert seen.method == "GET" and seen.body == b""
    assert seen.path == "/ping?e=ada%40example.com"
    assert "Content-Type" not in seen.headers


def test_signature_verifies_with_standardwebhooks(receiver: Any) -> None:
    adapter, client = webhook({"url": receiver.url + "/signed", "signing_secret": SECRET})
    adapter.upsert_contact(ada("dlv_99"))
    seen = receiver.requests[0]
    assert seen.headers["webhook-id"] == "dlv_99"
    assert Webhook(SECRET).verify(seen.body, seen.headers)["id"] == "dlv_99"
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(seen.body, seen.headers)
    assert seen.headers["webhook-signature"] not in json.dumps(client.exchanges)


def test_during_rotation_both_signatures_are_sent(receiver: Any) -> None:
    adapter, _ = webhook(
        {"url": receiver.url + "/signed", "signing_secret": SECRET, "previous_signing_secret": OLD_SECRET}
    )
    adapter.upsert_contact(ada())
    seen = receiver.requests[0]
    assert len(seen.headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, OLD_SECRET):
        Webhook(secret).verify(seen.body, seen.headers)


def test_webhook_id_is_stable_across_retries(receiver: Any) -> None:
    for _ in range(2):
        adapter, _ = webhook({"url": receiver.url + "/signed", "signing_secret": SECRET})
        adapter.upsert_contact(ada("dlv_5"))
    assert [r.headers["webhook-id"] for r in receiver.requests] == ["dlv_5", "dlv_5"]


@pytest.mark.parametrize(
    ("auth", "header", "expected"),
    [
        ({"type": "bearer", "token": "tok-abcdef"}, "Authorization", "Bearer tok-abcdef"),
        ({"type": "api_key", "header": "X-Api-Token", "value": "key-123456"}, "X-Api-Token", "key-123456"),
        (
            {"type": "basic", "username": "bridge", "password": "pw-654321"},
            "Authorization",
            "Basic " + base64.b64encode(b"bridge:pw-654321").decode(),
        ),
    ],
)
def test_static_auth_arrives_and_is_redacted(receiver: Any, auth: dict, header: str, expected: str) -> None:
    client = OutboundClient(policy=OutboundPolicy(allow_private=True), secrets=("tok-abcdef", "key-123456"))
    CustomWebhookAdapter({"url": receiver.url + "/a", "auth": auth}, client).upsert_contact(ada())
    assert receiver.requests[0].headers[header] == expected
    assert expected.split()[-1] not in json.dumps(client.exchanges)


def oauth_routes(receiver: Any, *, reject_first: bool = False) -> dict[str, int]:
    calls = {"token": 0, "hook": 0}

    def token(request: Any) -> tuple[int, dict[str, str], bytes]:
        calls["token"] += 1
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"client-1:client-secret-1").decode()
        assert b"grant_type=client_credentials" in request.body and b"scope=contacts.write" in request.body
        body = {"access_token": f"access-{calls['token']}", "token_type": "Bearer", "expires_in": 3600}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def hook(request: Any) -> tuple[int, dict[str, str], bytes]:
        calls["hook"] += 1
        if reject_first and calls["hook"] == 1:
            return 401, {}, b'{"error":"expired"}'
        return 200, {"Content-Type": "application/json"}, b'{"ok":true}'

    receiver.routes.update({"/token": token, "/hook": hook})
    return calls


def oauth_config(receiver: Any) -> dict[str, Any]:
    auth = {
        "type": "oauth2",
        "token_url": receiver.url + "/token",
        "client_id": "client-1",
        "client_secret": "client-secret-1",
        "scope": "contacts.write",
    }
    return {"url": receiver.url + "/hook", "auth": auth}


def test_oauth_token_is_fetched_once_for_two_deliveries(receiver: Any) -> None:
    calls = oauth_routes(receiver)
    for event_id in ("dlv_1", "dlv_2"):  # two deliveries, each with its own adapter and client
        adapter, _ = webhook(oauth_config(receiver))
        adapter.upsert_contact(ada(event_id))
    assert calls == {"token": 1, "hook": 2}
    hooks = [r for r in receiver.requests if r.path == "/hook"]
    assert [r.headers["Authorization"] for r in hooks] == ["Bearer access-1", "Bearer access-1"]


def test_oauth_token_is_refreshed_once_on_a_401(receiver: Any) -> None:
    calls = oauth_routes(receiver, reject_first=True)
    adapter, _ = webhook(oauth_config(receiver))
    adapter.upsert_contact(ada())
    assert calls == {"token": 2, "hook": 2}
    assert receiver.requests[-1].headers["Authorization"] == "Bearer access-2"


def test_a_second_401_is_auth_refused(receiver: Any) -> None:
    calls = oauth_routes(receiver)
    receiver.routes["/hook"] = lambda r: (401, {}, b"")
    adapter, _ = webhook(oauth_config(receiver))
    with pytest.raises(AuthRefused):
        adapter.upsert_contact(ada())
    assert calls["token"] == 2  # one refresh, not a loop


def test_redirect_is_a_failed_attempt_and_never_followed(receiver: Any) -> None:
    receiver.routes["/moved"] = lambda r: (302, {"Location": receiver.url + "/elsewhere"}, b"")
    adapter, client = webhook({"url": receiver.url + "/moved"})
    with pytest.raises(CrmRejected) as caught:
        adapter.upsert_contact(ada())
    assert caught.value.status == 302 and not caught.value.retryable
    assert receiver.paths() == ["/moved"]
    assert client.exchanges[0]["status"] == 302


def test_loopback_target_is_denied_when_private_targets_are_not_allowed(receiver: Any) -> None:
    adapter, client = webhook({"url": receiver.url + "/hook"}, allow_private=False)
    with pytest.raises(OutboundDenied):
        adapter.upsert_contact(ada())
    assert receiver.requests == []
    assert client.exchanges[0]["error_class"] == "outbound_denied"


def test_oversize_body_is_payload_too_large_and_not_sent(receiver: Any) -> None:
    adapter, client = webhook({"url": receiver.url + "/hook", "max_body_bytes": 200, "body": {"pad": "x" * 300}})
    with pytest.raises(PayloadTooLarge) as caught:
        adapter.upsert_contact(ada())
    assert not caught.value.retryable
    assert receiver.requests == [] and client.exchanges == []


def test_response_id_path_gives_the_contact_id(receiver: Any) -> None:
    receiver.routes["/hook"] = lambda r: (201, {"Content-Type": "application/json"}, b'{"data":{"id":981}}')
    adapter, _ = webhook({"url": receiver.url + "/hook", "response_id_path": "data.id"})
    assert adapter.upsert_contact(ada()) == "981"


def test_update_fields_exposes_fields_to_templates(receiver: Any) -> None:
    adapter, _ = webhook(
        {"url": receiver.url + "/hook", "body": {"id": "{{contact.id}}", "pw": "{{contact.fields.user_pass}}"}}
    )
    adapter.update_fields("c-7", {"user_pass": "Generated-Pass-1"})
    adapter.update_fields("c-7", {"user_pass": "Generated-Pass-1"})
    assert json.loads(receiver.requests[0].body) == {"id": "c-7", "pw": "Generated-Pass-1"}
    ids = {r.headers["Idempotency-Key"] for r in receiver.requests}
    assert len(ids) == 1  # the same update twice (a retry) carries the same key


def test_check_sends_no_contact_data(receiver: Any) -> None:
    calls = oauth_routes(receiver)
    adapter, _ = webhook(oauth_config(receiver))
    adapter.check()
    assert calls == {"token": 1, "hook": 0}
    broken, _ = webhook({"url": receiver.url + "/hook", "body": {"x": "{{ contact.nope }}"}})
    with pytest.raises(WebhookConfigError, match=r"contact\.nope"):
        broken.check()
    assert receiver.paths() == ["/token"]
