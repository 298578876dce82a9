"""Signing in: only administrators, only with the right password, every page and action
behind it, and every form protected by a CSRF token."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bridge.extensions import db
from bridge.models import AccessKey, User
from tests.admin.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, csrf_from, login, quick_hash

PAGES = [
    "/admin/",
    "/admin/connections",
    "/admin/connections/fluent",
    "/admin/users",
    "/admin/users/1",
    "/admin/webhooks",
    "/admin/webhooks/1",
    "/admin/deliveries",
    "/admin/deliveries/1",
    "/admin/settings",
]
ACTIONS = [
    "/admin/connections/fluent/test",
    "/admin/connections/fluent/rotate-key",
    "/admin/deliveries/1/retry",
    "/admin/deliveries/replay",
]


def test_admin_signs_in_and_out(client, admin_user):
    response = login(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"

    dashboard = client.get("/admin/")
    assert dashboard.status_code == 200
    assert ADMIN_EMAIL in dashboard.get_data(as_text=True)

    token = csrf_from(dashboard.get_data(as_text=True))
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302


def test_email_is_matched_case_insensitively(client, admin_user):
    assert login(client, email=ADMIN_EMAIL.upper()).status_code == 302


@pytest.mark.parametrize(
    ("email", "password"),
    [(ADMIN_EMAIL, "wrong password"), ("nobody@example.com", ADMIN_PASSWORD), (ADMIN_EMAIL, "")],
    ids=["wrong-password", "unknown-email", "empty-password"],
)
def test_wrong_credentials_are_refused(client, admin_user, email, password):
    response = login(client, email=email, password=password)

    assert response.status_code == 401
    assert "do not belong to an administrator" in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_a_subscriber_with_the_right_password_is_refused(app, client):
    from bridge.accounts.users import create_user

    with app.app_context():
        create_user(email="member@example.com", password_hash=quick_hash("members-password-1"), role="subscriber")
        db.session.commit()

    assert login(client, email="member@example.com", password="members-password-1").status_code == 401
    assert client.get("/admin/users").status_code == 302


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_signed_in_admin(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login?next=")


@pytest.mark.parametrize("path", ACTIONS)
def test_every_action_needs_a_signed_in_admin(app, client, site, path):
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    with app.app_context():
        keys_before = db.session.scalars(select(AccessKey.key_hash)).all()

    response = client.post(path, data={"csrf_token": token})

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")
    with app.app_context():
        assert db.session.scalars(select(AccessKey.key_hash)).all() == keys_before


def test_login_redirects_back_to_the_page_asked_for_but_never_off_site(client, admin_user):
    assert login(client, next="/admin/settings").headers["Location"] == "/admin/settings"
    for hostile in ("https://evil.example/admin", "//evil.example/admin", "/admin\\@evil.example"):
        client.post("/admin/logout", data={"csrf_token": csrf_from(client.get("/admin/").get_data(as_text=True))})
        assert login(client, next=hostile).headers["Location"] == "/admin/"


def test_changing_the_password_ends_open_sessions(app, admin_client, admin_user):
    assert admin_client.get("/admin/").status_code == 200
    with app.app_context():
        db.session.get(User, admin_user).password_hash = quick_hash("a brand new password")
        db.session.commit()

    assert admin_client.get("/admin/").status_code == 302


def test_losing_the_admin_role_ends_open_sessions(app, admin_client, admin_user):
    with app.app_context():
        db.session.get(User, admin_user).role = "subscriber"
        db.session.commit()

    assert admin_client.get("/admin/").status_code == 302


class TestCsrf:
    def test_login_without_a_token_is_refused(self, client, admin_user):
        response = client.post("/admin/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})

        assert response.status_code == 400
        assert client.get("/admin/").status_code == 302

    def test_rotating_a_key_without_a_token_is_refused(self, app, admin_client, site):
        with app.app_context():
            keys_before = db.session.scalars(select(AccessKey.key_hash)).all()

        response = admin_client.post("/admin/connections/fluent/rotate-key", data={"grace_hours": "1"})

        assert response.status_code == 400
        with app.app_context():
            assert db.session.scalars(select(AccessKey.key_hash)).all() == keys_before

    def test_a_forged_token_is_refused(self, admin_client, site):
        response = admin_client.post("/admin/logout", data={"csrf_token": "forged"})

        assert response.status_code == 400
        assert admin_client.get("/admin/").status_code == 200

    def test_every_form_on_every_page_carries_a_token(self, admin_client, site):
        for path in PAGES:
            html = admin_client.get(path).get_data(as_text=True)

            forms = html.count("<form")
            assert forms >= 1, path  # the sign-out form at least
            assert html.count('name="csrf_token"') == forms, path


def test_repeated_failed_sign_ins_lock_the_address_out_even_with_the_right_password(app, client, admin_user):
    """Sign-in failures share the failed-key budget (BRIDGE_FAILED_KEY_LIMIT per minute)."""
    app.config["BRIDGE_FAILED_KEY_LIMIT"] = 3
    for _ in range(4):  # more than the limit
        assert login(client, password="guess").status_code == 401
    refused = login(client)  # the right password, too late
    assert refused.status_code == 429
    assert "Too many failed attempts" in refused.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
