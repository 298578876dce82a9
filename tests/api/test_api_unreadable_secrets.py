"""``/api/connections`` when a stored secret was encrypted with another SECRET_KEY: reads name
the unreadable settings, a change keeps what it does not name, test and dry-run answer 422
``secret_unreadable`` without calling the CRM."""

from __future__ import annotations

import pytest
import responses
from support import encrypt_with_other_key

from bridge.connections import service as connections
from bridge.connections import settings as connection_settings

PASSWORD = "wp-app-pass-Sup3rSecretValue"
FLUENT = {"base_url": "https://crm.example.com", "username": "api", "app_password": PASSWORD}
BEARER = "bearer-token-nobody-may-see-1234"
HOOK = {"url": "https://hooks.example.com/in", "auth": {"type": "bearer", "token": BEARER}}


@pytest.fixture
def unreadable_fluent(app, make_connection) -> str:
    """A fluentcrm connection whose app_password is unreadable; returns the stored ciphertext."""
    make_connection("fluent", "fluentcrm", **FLUENT)
    return encrypt_with_other_key(app, "fluent", "app_password")["app_password"]


def stored(app, name: str) -> dict:
    with app.app_context():
        return dict(connections.get_connection(name).settings)


def test_list_and_show_name_the_unreadable_settings(api, unreadable_fluent):
    shown = api("GET", "/api/connections/fluent")
    listed = api("GET", "/api/connections")
    assert (shown.status_code, listed.status_code) == (200, 200)
    body = shown.get_json()
    assert body["unreadable_settings"] == ["app_password"]
    assert body["settings"]["app_password"] == connection_settings.UNREADABLE_MASK
    assert body["missing_settings"] == [] and body["enabled"] is True
    assert listed.get_json()["items"][0]["unreadable_settings"] == ["app_password"]
    for response in (shown, listed):
        text = response.get_data(as_text=True)
        assert PASSWORD not in text and unreadable_fluent not in text


def test_patching_back_what_was_shown_keeps_the_unreadable_secret(app, api, unreadable_fluent):
    settings = api("GET", "/api/connections/fluent").get_json()["settings"]
    response = api("PATCH", "/api/connections/fluent", json={"settings": {**settings, "username": "other"}})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["unreadable_settings"] == ["app_password"]
    assert stored(app, "fluent")["app_password"] == unreadable_fluent
    assert stored(app, "fluent")["username"] == "other"


def test_patching_the_secret_makes_the_connection_readable(app, api, unreadable_fluent):
    response = api("PATCH", "/api/connections/fluent", json={"settings": {"app_password": "fresh-password-9876"}})
    assert response.status_code == 200
    assert response.get_json()["unreadable_settings"] == []
    with app.app_context():
        assert connection_settings.effective_settings(connections.get_connection("fluent"))["app_password"] == (
            "fresh-password-9876"
        )


def test_a_json_secret_shows_unreadable_and_survives_being_sent_back(app, api, make_connection):
    make_connection("hook", "custom_webhook", **HOOK)
    ciphertext = encrypt_with_other_key(app, "hook", "auth")["auth"]
    body = api("GET", "/api/connections/hook").get_json()
    assert body["settings"]["auth"] == connection_settings.UNREADABLE_MASK and body["unreadable_settings"] == ["auth"]
    response = api("PATCH", "/api/connections/hook", json={"settings": body["settings"]})
    assert response.status_code == 200, response.get_json()
    assert stored(app, "hook")["auth"] == ciphertext


def test_test_and_dry_run_answer_422_without_calling_the_crm(api, unreadable_fluent):
    with responses.RequestsMock():  # no request may leave
        tested = api("POST", "/api/connections/fluent/test")
        dry = api("POST", "/api/connections/fluent/dry-run", json={"preset": "new_us_user", "send": True})
    for response in (tested, dry):
        assert response.status_code == 422
        body = response.get_json()
        assert body["success"] is False and body["error"] == "secret_unreadable"
        assert body["unreadable_settings"] == ["app_password"]
        assert body["message"] == (
            "connection 'fluent': app_password cannot be decrypted (encrypted with another SECRET_KEY: restore "
            "that key, or set it again with `crm-bridge connection set fluent KEY=VALUE`)"
        )
        assert unreadable_fluent not in response.get_data(as_text=True)
