"""The console when a connection's secret was encrypted with another SECRET_KEY: every page
renders, the connection pages say which secret is unreadable and how to fix it, and the test
button says so without calling the CRM. Neither the secret nor its ciphertext is shown."""

from __future__ import annotations

import re

import pytest
import responses
from support import encrypt_with_other_key

from bridge.connections import service as connections
from bridge.connections import settings as connection_settings

HINT = (
    "encrypted with another SECRET_KEY: restore that key, or set it again with "
    "`crm-bridge connection set fluent KEY=VALUE`"
)


@pytest.fixture
def unreadable(app, site) -> list[str]:
    """The fluent connection's app_password made unreadable; returns [plain, ciphertext]."""
    with app.app_context():
        plain = connection_settings.effective_settings(connections.get_connection("fluent"))["app_password"]
    return [plain, encrypt_with_other_key(app, "fluent", "app_password")["app_password"]]


def text(response) -> str:
    return response.get_data(as_text=True)


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_every_connection_page_and_delivery_page_renders_without_the_secret(admin_client, site, unreadable):
    """The site's deliveries carry the old plain secret by mistake; it can no longer be
    redacted by value (nobody can read it back), so only the ciphertext is checked there."""
    plain, ciphertext = unreadable
    paths = ["/admin/", "/admin/connections", "/admin/connections/fluent", "/admin/webhooks", "/admin/deliveries"]
    paths += [f"/admin/webhooks/{site.event_ok_id}"]
    paths += [f"/admin/deliveries/{delivery_id}" for delivery_id in site.delivery_ids.values()]
    for path in paths:
        response = admin_client.get(path)
        assert response.status_code == 200, path
        assert ciphertext not in text(response), path
        assert path.startswith("/admin/deliveries/") or plain not in text(response), path


def test_the_list_and_the_page_say_which_secret_and_how_to_fix_it(admin_client, unreadable):
    listed = text(admin_client.get("/admin/connections"))
    assert "app_password: unreadable" in listed
    page = text(admin_client.get("/admin/connections/fluent"))
    assert f"Cannot decrypt app_password: {HINT}." in page.replace("&#96;", "`")
    assert 'badge-dead">unreadable</span>' in page


def test_the_test_button_names_the_setting_without_calling_the_crm(admin_client, unreadable):
    page = text(admin_client.get("/admin/connections/fluent"))
    with responses.RequestsMock():  # no request may leave
        response = admin_client.post(
            "/admin/connections/fluent/test", data={"csrf_token": csrf(page)}, follow_redirects=True
        )
    assert response.status_code == 200
    assert f"Not tested: app_password cannot be decrypted ({HINT})." in text(response).replace("&#96;", "`")
    assert not any(secret in text(response) for secret in unreadable)
