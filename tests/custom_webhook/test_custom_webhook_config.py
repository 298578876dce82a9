"""Saving custom_webhook connections: templates checked, auth encrypted and masked."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.connections.service import create_connection
from bridge.connections.settings import InvalidConnection, effective_settings, public_settings, secret_values
from bridge.extensions import db
from crm_adapters.custom_webhook import CustomWebhookAdapter

URL = "https://hooks.example.com/in"


def test_unknown_template_variable_is_refused_at_save(ctx: None) -> None:
    with pytest.raises(InvalidConnection) as caught:
        create_connection("hook", "custom_webhook", {"url": URL, "body": {"who": {"e": "{{contact.emial}}"}}})
    assert "contact.emial" in str(caught.value)
    assert "body.who.e" in str(caught.value)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"url": URL + "?x={{ secret_key }}"}, "secret_key"),
        ({"url": URL, "headers": {"X-A": "{{event.kind}}"}}, "event.kind"),
        ({"url": URL, "query": {"q": "{{contact.password}}"}}, "contact.password"),
        ({"url": URL, "body": ["{{ config.items() }}"]}, "config"),
        ({"url": URL, "body": {"a": "{{ contact.email"}}, "syntax"),
        ({"url": URL, "method": "TRACE"}, "method"),
        ({"url": "ftp://files.example.com/"}, "url"),
        ({"url": URL, "auth": {"type": "bearer"}}, "auth.token"),
        ({"url": URL, "auth": {"type": "kerberos"}}, "auth.type"),
        ({"url": URL, "signing_secret": "whsec_not base64!"}, "signing secrets"),
        ({"url": URL, "timeout": 0}, "timeout"),
        ({"url": URL, "headers": {"Bad Header": "x"}}, "header name"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(ctx: None, settings: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidConnection) as caught:
        create_connection("hook", "custom_webhook", settings)
    assert named in str(caught.value)


def test_allowed_variables_save(ctx: None) -> None:
    body = {
        "a": "{{contact.meta.anything_at_all}}",
        "b": "{{user.first_name}} {{contact.last_name|upper}}",
        "c": "{{contact.tags|join(',')}}{% if contact.meta.vip %} vip{% endif %}",
        "d": "{{contact.meta['odd-key']}} {{event.occurred_at}} {{contact.fields.user_pass}}",
    }
    connection, key = create_connection("hook", "custom_webhook", {"url": URL + "/{{event.type}}", "body": body})
    assert key and effective_settings(connection)["body"] == body


def test_auth_is_encrypted_at_rest_and_masked_when_shown(app, ctx: None) -> None:
    auth = {
        "type": "oauth2",
        "token_url": "https://auth.example.com/token",
        "client_id": "client-abc",
        "client_secret": "very-secret-client-secret",
        "scope": "contacts",
    }
    connection, _ = create_connection("hook", "custom_webhook", {"url": URL, "auth": auth})
    db.session.commit()
    stored = json.dumps(connection.settings)
    assert "very-secret-client-secret" not in stored and "client-abc" not in stored
    assert effective_settings(connection)["auth"] == auth
    shown = public_settings(connection)["auth"]
    assert shown["type"] == "oauth2" and shown["token_url"] == auth["token_url"]
    assert "very-secret-client-secret" not in json.dumps(shown)
    assert "very-secret-client-secret" in secret_values(connection)
    assert "oauth2" not in secret_values(connection)


def test_signing_secret_is_encrypted(ctx: None) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    connection, _ = create_connection("hook", "custom_webhook", {"url": URL, "signing_secret": secret})
    assert secret not in json.dumps(connection.settings)
    assert effective_settings(connection)["signing_secret"] == secret


def test_settings_are_declared_with_secrets_marked() -> None:
    secret = {s.name for s in CustomWebhookAdapter.settings if s.secret}
    assert secret == {"auth", "signing_secret", "previous_signing_secret"}
    defaults = {s.name: s.default for s in CustomWebhookAdapter.settings}
    assert defaults["timeout"] == 10 and defaults["max_body_bytes"] == 65536 and defaults["method"] == "POST"
