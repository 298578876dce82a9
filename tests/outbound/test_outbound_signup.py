"""The public /register page: CSRF-protected, same registration service, can be turned off."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from bridge.accounts.passwords import check_password
from bridge.extensions import db
from bridge.models import Delivery, User


def csrf_token(client) -> str:
    page = client.get("/register")
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert match, "the form carries a csrf_token"
    return match.group(1)


def form(token: str, **overrides: str) -> dict[str, str]:
    return {
        "csrf_token": token,
        "email": "New.Person@example.com",
        "first_name": "New",
        "last_name": "Person",
        "password": "a good password",
        "password_confirm": "a good password",
        **overrides,
    }


def test_signing_up_creates_the_user_and_queues_its_pushes(app, client, echo_connection):
    echo_connection()
    response = client.post("/register", data=form(csrf_token(client)))
    assert response.status_code == 201 and "Welcome, New" in response.get_data(as_text=True)
    with app.app_context():
        user = db.session.scalar(select(User))
        assert user.email == "new.person@example.com" and user.role == "subscriber"
        assert check_password(user, "a good password")
        assert db.session.scalar(select(Delivery.kind)) == "contact.upsert"


def test_without_the_csrf_token_nothing_is_created(app, client):
    response = client.post("/register", data=form(""))
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(User)) is None


@pytest.mark.parametrize(
    ("overrides", "status", "text"),
    [
        ({"email": "nope"}, 422, "Enter your email address, like name@example.com."),
        ({"password_confirm": "different"}, 422, "do not match"),
        ({"password": "short", "password_confirm": "short"}, 422, "at least 12"),
        ({"password": "eleven-char", "password_confirm": "eleven-char"}, 422, "at least 12"),
    ],
)
def test_bad_input_re_renders_the_form(client, overrides, status, text):
    response = client.post("/register", data=form(csrf_token(client), **overrides))
    assert response.status_code == status and text in response.get_data(as_text=True)
    assert 'name="csrf_token"' in response.get_data(as_text=True)
    assert "value is not a valid" not in response.get_data(as_text=True)  # the validator's words
    assert "String should have" not in response.get_data(as_text=True)


def test_a_taken_email_is_409(client):
    client.post("/register", data=form(csrf_token(client)))
    again = client.post("/register", data=form(csrf_token(client)))
    assert again.status_code == 409 and "already exists" in again.get_data(as_text=True)


def test_signup_can_be_turned_off(app, client):
    app.config["BRIDGE_PUBLIC_SIGNUP"] = False
    assert client.get("/register").status_code == 404
    assert client.post("/register", data={}).status_code == 404
