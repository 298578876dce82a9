"""``/api/connections``: token auth, create (key once), read (masked), update, delete, test, rotate."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import responses

from bridge.connections import service as connections
from bridge.connections import settings as connection_settings
from bridge.models import utcnow

PASSWORD = "wp-app-pass-Sup3rSecretValue"
BASE = "https://crm.example.com"
TAGS_URL = f"{BASE}/wp-json/fluent-crm/v2/tags"
FLUENT = {"base_url": BASE, "username": "api", "app_password": PASSWORD}


def create(api, name: str = "fluent", type_slug: str = "fluentcrm", settings=None):
    return api("POST", "/api/connections", json={"name": name, "type": type_slug, "settings": settings or FLUENT})


# -- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/connections"),
        ("POST", "/api/connections"),
        ("GET", "/api/connections/fluent"),
        ("PATCH", "/api/connections/fluent"),
        ("DELETE", "/api/connections/fluent"),
        ("POST", "/api/connections/fluent/test"),
        ("POST", "/api/connections/fluent/rotate-key"),
    ],
)
def test_every_route_needs_a_valid_token(client, api_token, make_connection, method, path):
    make_connection("fluent")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": api_token}):
        response = client.open(path, method=method, headers=headers, json={})
        assert response.status_code == 401
        assert response.get_json()["error"] == "unauthorized"


# -- create -----------------------------------------------------------------------------------


def test_create_answers_201_with_the_key_once_and_webhook_urls(app, api, dump_database, caplog):
    caplog.set_level(logging.DEBUG)
    response = create(api)
    assert response.status_code == 201
    body = response.get_json()
    key = body["access_key"]
    assert (body["name"], body["type"]) == ("fluent", "fluentcrm")
    assert body["webhook_urls"]["add"] == f"http://localhost/?wpf_action=add&access_key={key}"
    assert set(body["webhook_urls"]) == {"add", "update", "update_tags"}
    assert body["settings"]["app_password"] == "••••" + PASSWORD[-4:]
    assert body["missing_settings"] == []
    with app.app_context():
        assert connections.find_by_access_key(key).name == "fluent"
    for later in (api("GET", "/api/connections"), api("GET", "/api/connections/fluent")):
        assert key not in later.get_data(as_text=True)
        assert PASSWORD not in later.get_data(as_text=True)
    stored = dump_database()
    assert key not in stored and PASSWORD not in stored
    assert key not in caplog.text and PASSWORD not in caplog.text


def test_create_uses_the_configured_base_url(app, api):
    app.config["BRIDGE_BASE_URL"] = "https://bridge.example.org"
    urls = create(api).get_json()["webhook_urls"]
    assert urls["update"].startswith("https://bridge.example.org/?wpf_action=update&access_key=cbk_")


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"type": "fluentcrm"}, 400, "invalid_parameter"),
        ({"name": "fluent"}, 400, "invalid_parameter"),
        ({"name": "fluent", "type": "fluentcrm", "settings": ["x"]}, 400, "invalid_parameter"),
        ({"name": "Not A Slug", "type": "fluentcrm"}, 422, "invalid_connection"),
        ({"name": "fluent", "type": "nocrm"}, 422, "unknown_type"),
        (
            {"name": "fluent", "type": "fluentcrm", "settings": {"username_format": "x", "zzz": 1}},
            422,
            "invalid_connection",
        ),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(app, api, body, status, error):
    response = api("POST", "/api/connections", json=body)
    assert response.status_code == status
    assert response.get_json()["success"] is False
    assert response.get_json()["error"] == error
    with app.app_context():
        assert not connections.any_connection_exists()


def test_create_lists_every_settings_problem(api):
    problems = create(api, settings={"username_format": "x", "zzz": 1, "base_url": "ftp://x"}).get_json()["problems"]
    assert len(problems) == 3
    assert "unknown setting 'zzz' for type fluentcrm" in problems
    assert "base_url must be an http(s) URL" in problems
    assert any(p.startswith("username_format must be one of") for p in problems)


def test_create_needs_a_json_object_and_a_free_name(api):
    response = api("POST", "/api/connections", data="name=x", content_type="application/x-www-form-urlencoded")
    assert (response.status_code, response.get_json()["error"]) == (400, "invalid_payload")
    assert create(api).status_code == 201
    taken = create(api)
    assert (taken.status_code, taken.get_json()["error"]) == (409, "connection_exists")


# -- read, update, delete ---------------------------------------------------------------------


def test_list_has_the_list_shape_and_masks_secrets(api, make_connection):
    make_connection("fluent", "fluentcrm", **FLUENT)
    make_connection("active", "activecampaign")
    body = api("GET", "/api/connections").get_json()
    assert (body["total"], body["page"]) == (2, 1)
    assert [i["name"] for i in body["items"]] == ["active", "fluent"]
    fluent = body["items"][1]
    assert fluent["settings"]["app_password"] == "••••" + PASSWORD[-4:]
    assert fluent["access_keys"][0]["hint"].startswith("…") and len(fluent["access_keys"][0]["hint"]) == 5
    assert api("GET", "/api/connections?page=2").get_json()["items"] == []
    assert api("GET", "/api/connections?page=0").status_code == 400


def test_show_and_404(api, make_connection):
    make_connection("fluent", "fluentcrm", username="api")
    body = api("GET", "/api/connections/fluent").get_json()
    assert body["missing_settings"] == ["base_url", "app_password"]
    missing = api("GET", "/api/connections/nope")
    assert (missing.status_code, missing.get_json()["error"]) == (404, "not_found")


def test_patch_validates_saves_and_null_removes(app, api, make_connection):
    make_connection("fluent", "fluentcrm", username="api", return_password_field="wp_pass")
    response = api("PATCH", "/api/connections/fluent", json={"settings": {"base_url": BASE, "app_password": PASSWORD}})
    assert response.status_code == 200
    assert response.get_json()["settings"]["app_password"] == "••••" + PASSWORD[-4:]
    assert PASSWORD not in response.get_data(as_text=True)
    removed = api("PATCH", "/api/connections/fluent", json={"settings": {"return_password_field": None}})
    assert removed.get_json()["settings"]["return_password_field"] is None
    bad = api("PATCH", "/api/connections/fluent", json={"settings": {"username": "changed", "enabled": "maybe"}})
    assert bad.status_code == 422
    assert bad.get_json()["problems"] == ["enabled must be true or false"]
    with app.app_context():
        stored = connections.get_connection("fluent").settings
        assert stored["username"] == "api" and "return_password_field" not in stored
        assert stored["app_password"].startswith("enc:v1:")
    assert api("PATCH", "/api/connections/fluent", json={"base_url": BASE}).status_code == 400
    assert api("PATCH", "/api/connections/nope", json={"settings": {}}).status_code == 404


def test_patch_with_the_masked_secret_sent_back_keeps_the_secret(app, api, make_connection):
    make_connection("fluent", "fluentcrm", **FLUENT)
    shown = api("GET", "/api/connections/fluent").get_json()["settings"]
    shown["username"] = "renamed"
    assert api("PATCH", "/api/connections/fluent", json={"settings": shown}).status_code == 200
    with app.app_context():
        settings = connection_settings.effective_settings(connections.get_connection("fluent"))
        assert (settings["app_password"], settings["username"]) == (PASSWORD, "renamed")


def test_delete_removes_the_connection_and_its_key(app, api, make_connection):
    key = make_connection("fluent")
    response = api("DELETE", "/api/connections/fluent")
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "name": "fluent", "deleted": True}
    assert api("GET", "/api/connections/fluent").status_code == 404
    assert api("DELETE", "/api/connections/fluent").status_code == 404
    with app.app_context():
        assert connections.find_by_access_key(key) is None


# -- test -------------------------------------------------------------------------------------


@responses.activate
def test_test_answers_ok_or_502_with_the_typed_error(api, make_connection, crm_fixture):
    make_connection("fluent", "fluentcrm", **FLUENT)
    responses.get(TAGS_URL, json=crm_fixture("fluentcrm/api/list_tags.json")["response"]["json"])
    ok = api("POST", "/api/connections/fluent/test")
    assert (ok.status_code, ok.get_json()) == (200, {"ok": True, "name": "fluent", "reached": True, "note": None})
    refused = crm_fixture("fluentcrm/api/wrong_password_401.json")["response"]
    responses.replace(responses.GET, TAGS_URL, status=refused["status"], json=refused["json"])
    failed = api("POST", "/api/connections/fluent/test")
    assert failed.status_code == 502
    body = failed.get_json()
    assert (body["ok"], body["error"], body["error_class"], body["crm_status"]) == (
        False,
        "auth_refused",
        "auth_refused",
        401,
    )
    assert PASSWORD not in failed.get_data(as_text=True)


@responses.activate
def test_test_reports_an_unreachable_crm_as_502(api, make_connection):
    make_connection("fluent", "fluentcrm", **FLUENT)
    responses.get(TAGS_URL, status=503, body="<html>maintenance</html>")
    body = api("POST", "/api/connections/fluent/test").get_json()
    assert (body["error"], body["crm_status"]) == ("crm_unavailable", 503)


def test_test_of_an_incomplete_connection_is_422_without_a_request(api, make_connection):
    make_connection("fluent", "fluentcrm", username="api")
    with responses.RequestsMock():
        response = api("POST", "/api/connections/fluent/test")
    assert response.status_code == 422
    assert response.get_json()["error"] == "incomplete_connection"
    assert api("POST", "/api/connections/nope/test").status_code == 404


# -- rotate-key -------------------------------------------------------------------------------


def test_rotate_key_returns_a_new_key_and_keeps_the_old_for_the_grace_period(app, api, make_connection, monkeypatch):
    old_key = make_connection("fluent")
    response = api("POST", "/api/connections/fluent/rotate-key", json={"grace_hours": 1})
    assert response.status_code == 200
    body = response.get_json()
    new_key = body["access_key"]
    assert new_key != old_key and old_key not in response.get_data(as_text=True)
    assert body["webhook_urls"]["add"].endswith(f"access_key={new_key}")
    assert len(body["access_keys"]) == 2  # both keys open the connection for now
    with app.app_context():
        assert connections.find_by_access_key(old_key).name == "fluent"
        later = utcnow() + timedelta(hours=1, seconds=5)
        monkeypatch.setattr(connections, "utcnow", lambda: later)
        assert connections.find_by_access_key(old_key) is None
        assert connections.find_by_access_key(new_key).name == "fluent"


def test_rotate_key_defaults_to_24_hours_and_validates_grace(app, api, make_connection):
    old_key = make_connection("fluent")
    body = api("POST", "/api/connections/fluent/rotate-key").get_json()
    assert body["grace_hours"] == 24
    with app.app_context():
        connection = connections.get_connection("fluent")
        expiry = next(k.expires_at for k in connection.access_keys if k.expires_at is not None)
        assert timedelta(hours=23, minutes=59) < expiry - utcnow() <= timedelta(hours=24)
        assert connections.find_by_access_key(old_key) is not None
    for grace in (-1, "soon", True, 10_000):
        bad = api("POST", "/api/connections/fluent/rotate-key", json={"grace_hours": grace})
        assert (bad.status_code, bad.get_json()["error"]) == (400, "invalid_parameter")
    immediate = api("POST", "/api/connections/fluent/rotate-key", json={"grace_hours": 0}).get_json()
    with app.app_context():
        assert connections.find_by_access_key(old_key) is None
        assert connections.find_by_access_key(body["access_key"]) is None
        assert connections.find_by_access_key(immediate["access_key"]) is not None
    assert api("POST", "/api/connections/nope/rotate-key").status_code == 404


def test_a_json_secret_sent_back_masked_keeps_its_hidden_parts(app, api, make_connection):
    """The custom webhook's ``auth`` is shown as ``{"type": "bearer", "token": "••••1234"}``;
    PATCHing it back whole, or with another part edited, must not store the mask as the token."""
    token = "bearer-token-nobody-may-see-1234"
    make_connection(
        "hook", "custom_webhook", url="https://hooks.example.com/in", auth={"type": "bearer", "token": token}
    )
    shown = api("GET", "/api/connections/hook").get_json()["settings"]["auth"]
    assert shown == {"type": "bearer", "token": "••••1234"}
    assert api("PATCH", "/api/connections/hook", json={"settings": {"auth": shown}}).status_code == 200
    edited = {**shown, "header": "X-Token"}
    assert api("PATCH", "/api/connections/hook", json={"settings": {"auth": edited}}).status_code == 200
    replaced = {"type": "bearer", "token": "a-brand-new-token-5678"}
    with app.app_context():
        auth = connection_settings.effective_settings(connections.get_connection("hook"))["auth"]
        assert auth == {"type": "bearer", "token": token, "header": "X-Token"}
    assert api("PATCH", "/api/connections/hook", json={"settings": {"auth": replaced}}).status_code == 200
    with app.app_context():
        assert connection_settings.effective_settings(connections.get_connection("hook"))["auth"] == replaced
