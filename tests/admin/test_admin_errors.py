"""Errors a person sees are pages in the site's style with plain words: every console form
refuses a missing CSRF token, filters name a bad value, the settings page shows real values,
masked secrets read as bullets, and every hint names ``crm-bridge``."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from werkzeug.exceptions import TooManyRequests

from bridge.errors import html_error
from tests.admin.conftest import csrf_from


def text(response) -> str:
    return response.get_data(as_text=True)


def console_post_paths(app: Flask, site) -> list[str]:
    """Every POST route of the console, with its parameters filled from the site."""
    values = {
        "name": "fluent",
        "user_id": str(site.user_id),
        "delivery_id": str(site.delivery_ids["dead"]),
        "batch_id": "1",
    }
    paths = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("admin.") and "POST" in (rule.methods or ()) and rule.endpoint != "admin.login":
            paths.append(re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], rule.rule))
    return paths


def test_no_console_form_works_without_its_csrf_token(app, admin_client, site):
    paths = console_post_paths(app, site)
    assert len(paths) >= 15, paths  # the routes exist: the check below is not vacuous
    for path in paths:
        response = admin_client.post(path, data={"name": "x", "grace_hours": "1", "confirm_name": "fluent"})
        body = text(response)
        assert response.status_code == 400, path
        assert "The form had expired or was not sent from this site" in body, path
        assert 'class="public-card' in body and "Bad Request" not in body, path
    assert admin_client.get("/admin/connections/fluent").status_code == 200  # nothing was removed


def test_the_login_form_needs_its_token_too(client, admin_user):
    response = client.post("/admin/login", data={"email": "boss@example.com", "password": "x"})
    assert response.status_code == 400 and "The form had expired" in text(response)


def test_error_pages_are_styled_and_plain(app, admin_client):
    missing = admin_client.get("/admin/no-such-page")
    assert missing.status_code == 404
    assert "Page not found" in text(missing) and "admin.css" in text(missing)
    assert "The requested URL was not found on the server" not in text(missing)
    with app.test_request_context("/register"):
        page, status, headers = html_error(TooManyRequests(retry_after=30))
    assert status == 429 and "Too many attempts" in page and headers == {"Retry-After": "30"}


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/admin/deliveries?status=bogus", "There is no delivery status &#39;bogus&#39;"),
        ("/admin/webhooks?status=bogus", "There is no status filter &#39;bogus&#39;"),
    ],
)
def test_a_bad_filter_value_is_named_not_ignored(admin_client, site, path, words):
    response = admin_client.get(path)
    assert response.status_code == 400 and words in text(response)


def test_settings_show_crm_bridges_own_settings_with_real_values(admin_client):
    body = text(admin_client.get("/admin/settings"))
    assert re.search(r"BRIDGE_FAILED_KEY_LIMIT</code></td>\s*<td[^>]*><code class=\"wrap\">20</code>", body)
    assert re.search(r"BRIDGE_ACCESS_KEY_CACHE_SECONDS</code></td>\s*<td[^>]*><code class=\"wrap\">5.0</code>", body)
    for internal in ("SESSION_COOKIE_HTTPONLY", "WTF_CSRF_TIME_LIMIT", "MAX_CONTENT_LENGTH", "TESTING"):
        assert internal not in body
    assert "test-secret-key-not-for-production" not in body


def test_a_masked_json_secret_reads_as_bullets(app, admin_client, make_connection):
    make_connection(
        "hook",
        "custom_webhook",
        url="https://hooks.example.com/in",
        auth={"type": "bearer", "token": "bearer-token-123456"},
    )
    body = text(admin_client.get("/admin/connections/hook"))
    assert "••••3456" in body
    assert "\\u2022" not in body and "bearer-token-123456" not in body


def test_console_hints_name_crm_bridge(app, admin_client):
    pages = [text(admin_client.get("/admin/connections")), text(app.test_client().get("/admin/login"))]
    assert all("crm-bridge" in page for page in pages)
    for page in pages:
        assert not re.search(r"(?<![-\w])bridge (connection|admin|token|init)", page)


def test_the_welcome_page_names_the_account_once_when_the_username_is_the_email(client, app):
    page = text(client.get("/register"))
    response = client.post(
        "/register",
        data={
            "csrf_token": csrf_from(page),
            "email": "x@example.com",
            "password": "a-good-long-password",
            "password_confirm": "a-good-long-password",
        },
    )
    body = text(response)
    assert "Your account was created with <strong>x@example.com</strong>" in body
    assert "x@example.com</strong> was created with x@example.com" not in body
