"""Connections created and changed from the console: the form per type, secrets write-only,
the field map rows, enable/disable, removal, key rotation with a validated grace period, the
CRM's field and tag names, and the dry-run pane."""

from __future__ import annotations

import re

import pytest
import responses
from werkzeug.datastructures import MultiDict

from bridge.connections import catalog
from bridge.connections.forms import changes_from_form, form_fields
from bridge.connections.service import find_by_access_key, get_connection
from bridge.connections.settings import effective_settings
from bridge.extensions import db
from tests.admin.conftest import APP_PASSWORD, csrf_from

FLUENT_API = "https://crm.example.com/wp-json/fluent-crm/v2"


def text(response) -> str:
    return response.get_data(as_text=True)


def token(client, path: str = "/admin/connections") -> str:
    return csrf_from(text(client.get(path)))


@pytest.fixture(autouse=True)
def _fresh_catalog():
    catalog.forget()
    yield
    catalog.forget()


def test_the_form_is_built_from_the_adapters_declared_settings(ctx):
    names = {f.name: f for f in form_fields("fluentcrm")}
    assert {"base_url", "username", "app_password", "push_on_register"} <= set(names)
    assert names["app_password"].secret and names["app_password"].input_type == "password"
    assert names["base_url"].required and names["base_url"].group == "crm"
    assert "field_map" not in names  # it has its own rows editor
    shown = {f.name: f for f in form_fields("fluentcrm", {"app_password": "••••9876"})}
    assert shown["app_password"].value == "" and shown["app_password"].is_set  # never filled in


def test_a_blank_secret_is_left_out_and_unticked_boxes_are_false(ctx):
    rows = [
        ("field_map_local", "email"),
        ("field_map_crm", "email"),
        ("field_map_local", "tier"),
        ("field_map_crm", ""),
    ]
    form = MultiDict(
        [("base_url", "https://crm.example.com"), ("app_password", ""), ("username", ""), ("push_updates", "1"), *rows]
    )
    changes = changes_from_form("fluentcrm", form, creating=False)
    assert "app_password" not in changes
    assert changes["username"] is None  # cleared when editing
    assert changes["push_updates"] is True and changes["push_on_register"] is False
    assert changes["field_map"] == {"email": "email"}  # a half-filled row is dropped
    assert "username" not in changes_from_form("fluentcrm", form, creating=True)


def test_creating_a_connection_answers_with_the_key_and_complete_urls_once(app, admin_client):
    response = admin_client.post(
        "/admin/connections/new",
        data={
            "csrf_token": token(admin_client),
            "type": "fluentcrm",
            "name": "shop",
            "base_url": "https://crm.example.com",
            "username": "api",
            "app_password": APP_PASSWORD,
            "enabled": "1",
            "push_on_register": "1",
            "field_map_local": ["email", "first_name"],
            "field_map_crm": ["email", "fname"],
            "assign_tags": "customer, web",
            "default_role": "subscriber",
            "username_format": "email",
            "password_length": "16",
        },
    )
    assert response.status_code == 200
    body = text(response)
    key = re.search(r'id="access-key">([^<]+)<', body).group(1)
    assert f"https://bridge.example.com/?wpf_action=update_tags&amp;access_key={key}" in body
    assert APP_PASSWORD not in body
    with app.app_context():
        connection = find_by_access_key(key)
        settings = effective_settings(connection)
        assert connection.name == "shop" and settings["app_password"] == APP_PASSWORD
        assert settings["field_map"] == {"email": "email", "first_name": "fname"}
        assert settings["assign_tags"] == ["customer", "web"]
    assert key not in text(admin_client.get("/admin/connections/shop"))


def test_an_invalid_form_is_shown_again_with_plain_reasons(app, admin_client):
    response = admin_client.post(
        "/admin/connections/new",
        data={
            "csrf_token": token(admin_client),
            "type": "fluentcrm",
            "name": "Not A Slug",
            "password_length": "abc",
            "assign_tags": "vip, web",
        },
    )
    assert response.status_code == 422
    body = text(response)
    assert "name must be a lower-case slug" in body
    assert 'value="Not A Slug"' in body and 'value="vip, web"' in body  # what was typed is kept
    assert 'name="enabled" value="1" checked' not in body  # left unticked, shown unticked
    assert "pydantic" not in body and "validation error" not in body
    with app.app_context():
        assert get_connection("Not A Slug") is None


def test_editing_keeps_a_secret_left_blank_and_replaces_the_field_map(app, admin_client, site):
    page = text(admin_client.get("/admin/connections/fluent/edit"))
    assert APP_PASSWORD not in page and 'name="app_password" value=""' in page
    role_select = page.split('<select name="default_role">', 1)[1].split("</select>", 1)[0]
    assert "<option selected>subscriber</option>" in role_select and "administrator" not in role_select
    assert '<select name="username_format">' in page
    response = admin_client.post(
        "/admin/connections/fluent/edit",
        data={
            "csrf_token": csrf_from(page),
            "base_url": "https://crm.example.com",
            "username": "api2",
            "app_password": "",
            "enabled": "1",
            "field_map_local": ["email", "tier"],
            "field_map_crm": ["email", "membership_tier"],
        },
    )
    assert response.status_code == 302
    with app.app_context():
        settings = effective_settings(get_connection("fluent"))
        assert settings["app_password"] == APP_PASSWORD
        assert settings["username"] == "api2"
        assert settings["field_map"] == {"email": "email", "tier": "membership_tier"}
        assert settings["push_on_register"] is False  # its box was not ticked


def test_disable_enable_and_remove_with_confirmation(app, admin_client, site):
    csrf = token(admin_client, "/admin/connections/fluent")
    admin_client.post("/admin/connections/fluent/enabled", data={"csrf_token": csrf, "enabled": "0"})
    with app.app_context():
        assert effective_settings(get_connection("fluent"))["enabled"] is False
    admin_client.post("/admin/connections/fluent/enabled", data={"csrf_token": csrf, "enabled": "1"})
    with app.app_context():
        assert effective_settings(get_connection("fluent"))["enabled"] is True

    assert "cannot be undone" in text(admin_client.get("/admin/connections/fluent/remove"))
    wrong = admin_client.post("/admin/connections/fluent/remove", data={"csrf_token": csrf, "confirm_name": "flu"})
    assert wrong.status_code == 422 and "to confirm" in text(wrong)
    with app.app_context():
        assert get_connection("fluent") is not None
    gone = admin_client.post("/admin/connections/fluent/remove", data={"csrf_token": csrf, "confirm_name": "fluent"})
    assert gone.status_code == 302
    with app.app_context():
        assert get_connection("fluent") is None


@pytest.mark.parametrize("grace", ["abc", "", "-1", "721", "nan", "inf"])
def test_rotation_refuses_a_bad_grace_period_in_words_and_keeps_the_key(app, admin_client, site, grace):
    page = text(admin_client.get("/admin/connections/fluent/rotate-key"))
    assert "Rotate key" in page and 'value="24"' in page  # the confirmation step
    response = admin_client.post(
        "/admin/connections/fluent/rotate-key", data={"csrf_token": csrf_from(page), "grace_hours": grace}
    )
    assert response.status_code == 400
    assert "The grace period must be" in text(response)
    assert "Bad Request" not in text(response)
    with app.app_context():
        assert len(get_connection("fluent").access_keys) == 1


@responses.activate
def test_the_crms_fields_and_tags_are_offered_and_cached_until_refreshed(app, admin_client, site):
    responses.get(f"{FLUENT_API}/custom-fields/contacts", json={"fields": [{"slug": "membership_tier"}]})
    responses.get(f"{FLUENT_API}/tags", json={"tags": {"data": [{"id": 1, "slug": "gold", "title": "Gold"}]}})
    before = text(admin_client.get("/admin/connections/fluent/edit"))
    assert 'option value="membership_tier"' not in before  # nothing asked of the CRM yet
    assert len(responses.calls) == 0

    admin_client.post("/admin/connections/fluent/catalog", data={"csrf_token": csrf_from(before)})
    after = text(admin_client.get("/admin/connections/fluent/edit"))
    assert '<option value="membership_tier">' in after and '<option value="gold">' in after
    calls = len(responses.calls)
    admin_client.get("/admin/connections/fluent/edit")
    assert len(responses.calls) == calls  # cached


@responses.activate
def test_a_crm_that_cannot_list_is_reported_without_its_secret(app, admin_client, site):
    responses.get(f"{FLUENT_API}/custom-fields/contacts", status=401, json={"echo": APP_PASSWORD})
    responses.get(f"{FLUENT_API}/tags", status=401, json={"echo": APP_PASSWORD})
    page = text(admin_client.get("/admin/connections/fluent/edit"))
    response = admin_client.post(
        "/admin/connections/fluent/catalog", data={"csrf_token": csrf_from(page)}, follow_redirects=True
    )
    body = text(response)
    assert "did not list everything" in body and APP_PASSWORD not in body


def test_the_dry_run_pane_renders_a_registration_for_a_preset_or_a_user(app, admin_client, site):
    page = text(admin_client.get("/admin/connections/fluent/dry-run"))
    preset = admin_client.post(
        "/admin/connections/fluent/dry-run", data={"csrf_token": csrf_from(page), "subject": "preset", "send": "0"}
    )
    body = text(preset)
    assert preset.status_code == 200
    assert f"{FLUENT_API}/subscribers" in body and "preset-user@example.com" in body
    assert APP_PASSWORD not in body

    user = admin_client.post(
        "/admin/connections/fluent/dry-run",
        data={"csrf_token": csrf_from(page), "subject": "user", "user": "ADA@example.com", "send": "0"},
    )
    assert "ada@example.com" in text(user)
    missing = admin_client.post(
        "/admin/connections/fluent/dry-run",
        data={"csrf_token": csrf_from(page), "subject": "user", "user": "nobody@example.com", "send": "0"},
    )
    assert missing.status_code == 422 and "No user with the id or email" in text(missing)
    with app.app_context():
        assert db.session.execute(db.text("select count(*) from delivery")).scalar() == 5  # the site's, no more


def test_every_connection_type_has_a_form(admin_client):
    from bridge.connections.adapter_registry import adapter_types

    for type_slug, adapter in adapter_types().items():
        response = admin_client.get(f"/admin/connections/new?type={type_slug}")
        assert response.status_code == 200, type_slug
        body = text(response)
        for setting in adapter.settings:
            assert f'name="{setting.name}"' in body, (type_slug, setting.name)
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


@responses.activate
def test_the_dry_run_pane_can_send_for_real(app, admin_client, site):
    responses.post(f"{FLUENT_API}/subscribers", json={"contact": {"id": 99}, "action_type": "created"})
    page = text(admin_client.get("/admin/connections/fluent/dry-run"))
    body = text(
        admin_client.post(
            "/admin/connections/fluent/dry-run", data={"csrf_token": csrf_from(page), "subject": "preset", "send": "1"}
        )
    )
    assert "sent" in body and "HTTP 200" in body
    assert [c.request.url for c in responses.calls] == [f"{FLUENT_API}/subscribers"]
    assert APP_PASSWORD not in body
