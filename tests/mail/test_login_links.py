"""Login links: the token rules (signed, 72 hours, usable once) and the ``/login/TOKEN`` page
(form with CSRF, validation messages, refusal pages with their statuses)."""

from __future__ import annotations

import pytest

from bridge.accounts import login_links, passwords
from bridge.extensions import db
from bridge.models import User

NEW_PASSWORD = "correct horse battery"


@pytest.fixture
def token(app, make_user) -> str:
    user = make_user()
    with app.app_context():
        return login_links.make_login_token(db.session.get(User, user.id))


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch):
    """Move the tokens' clock by hand: ``frozen_clock.now += seconds``."""

    class Clock:
        now = 1_700_000_000.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(login_links, "clock", clock)
    return clock


@pytest.fixture
def submit(client, csrf_from):
    """``submit(token, password, confirm=None)``: fetch the form, post it with its CSRF token."""

    def post(token: str, password: str, confirm: str | None = None):
        page = client.get(f"/login/{token}")
        assert page.status_code == 200
        form = {"password": password, "password_confirm": password if confirm is None else confirm}
        form["csrf_token"] = csrf_from(page.get_data(as_text=True))
        return client.post(f"/login/{token}", data=form)

    return post


def password_works(app, user_id: int, password: str) -> bool:
    with app.app_context():
        return passwords.check_password(db.session.get(User, user_id), password)


# -- tokens -----------------------------------------------------------------------------------


def test_a_token_names_its_user(app, make_user):
    user = make_user()
    with app.app_context():
        token = login_links.make_login_token(db.session.get(User, user.id))
        assert login_links.read_login_token(token).user.id == user.id


def test_a_token_is_valid_for_72_hours_and_not_a_second_more(app, make_user, frozen_clock):
    with app.app_context():
        user = db.session.get(User, make_user().id)
        token = login_links.make_login_token(user)
        frozen_clock.now += 72 * 3600
        assert login_links.read_login_token(token).user.id == user.id
        frozen_clock.now += 1
        with pytest.raises(login_links.LinkExpired):
            login_links.read_login_token(token)


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: "x" + t,  # payload changed
        lambda t: t.split(".")[0],  # truncated
        lambda t: "not-a-token",
    ],
    ids=["signature", "payload", "truncated", "garbage"],
)
def test_a_tampered_token_is_invalid(app, token, damage):
    with app.app_context(), pytest.raises(login_links.LinkInvalid):
        login_links.read_login_token(damage(token))


def test_a_token_signed_with_another_key_is_invalid(app, token):
    app.config["SECRET_KEY"] = "another-key-entirely"
    with app.app_context(), pytest.raises(login_links.LinkInvalid):
        login_links.read_login_token(token)


def test_setting_a_password_spends_the_token(app, token):
    with app.app_context():
        user = login_links.set_password_with_link(token, NEW_PASSWORD)
        db.session.commit()
        assert passwords.check_password(user, NEW_PASSWORD)
        with pytest.raises(login_links.LinkUsed):
            login_links.read_login_token(token)


def test_a_password_changed_elsewhere_also_spends_the_token(app, token):
    with app.app_context():
        user = db.session.scalars(db.select(User)).one()
        user.password_hash = passwords.hash_password("changed by an admin 123")
        db.session.commit()
        with pytest.raises(login_links.LinkUsed):
            login_links.set_password_with_link(token, NEW_PASSWORD)


def test_two_redemptions_racing_with_one_token_cannot_both_win(app, token, monkeypatch):
    """The loser checked the token before the winner's write landed; the guarded UPDATE (only
    while the hash is still the one the link was made for) refuses it anyway."""
    with app.app_context():
        user = db.session.scalars(db.select(User)).one()
        hash_the_loser_saw = user.password_hash
        login_links.set_password_with_link(token, NEW_PASSWORD)
        db.session.commit()

        stale_view = login_links.LoginLink(user=User(id=user.id, password_hash=hash_the_loser_saw), fingerprint="")
        monkeypatch.setattr(login_links, "read_login_token", lambda _token: stale_view)
        with pytest.raises(login_links.LinkUsed):
            login_links.set_password_with_link(token, "the loser's password")
        db.session.rollback()
        assert passwords.check_password(db.session.get(User, user.id), NEW_PASSWORD)


def test_a_short_password_is_refused_by_the_service(app, token):
    with app.app_context(), pytest.raises(login_links.PasswordRejected):
        login_links.set_password_with_link(token, "short")


# -- the page ---------------------------------------------------------------------------------


def test_the_page_shows_a_csrf_protected_form(client, token):
    page = client.get(f"/login/{token}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for field in ('name="password"', 'name="password_confirm"', 'name="csrf_token"'):
        assert field in html
    assert "ada@example.com" in html  # the username (email format) is named
    assert "Acme Members" in html
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "http://" not in html and "https://" not in html  # no external CDN


def test_setting_a_password_through_the_page(app, client, make_user, submit):
    user = make_user(email="grace@example.com")
    with app.app_context():
        token = login_links.make_login_token(db.session.get(User, user.id))
    answer = submit(token, NEW_PASSWORD)
    assert answer.status_code == 200
    assert "Your password is set" in answer.get_data(as_text=True)
    assert password_works(app, user.id, NEW_PASSWORD)
    assert not password_works(app, user.id, user.password)

    again = client.get(f"/login/{token}")
    assert again.status_code == 410
    assert "already been used" in again.get_data(as_text=True)


def test_a_post_without_the_csrf_token_is_refused(app, client, token):
    answer = client.post(f"/login/{token}", data={"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert answer.status_code == 400
    with app.app_context():
        assert not passwords.check_password(db.session.scalars(db.select(User)).one(), NEW_PASSWORD)


@pytest.mark.parametrize(
    ("password", "confirm", "message"),
    [
        ("short", "short", "Use at least 12 characters."),
        (NEW_PASSWORD, NEW_PASSWORD + "!", "The two passwords do not match."),
        ("", "", "Enter a new password."),
    ],
)
def test_an_unacceptable_password_shows_why(client, submit, token, password, confirm, message):
    answer = submit(token, password, confirm)
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)
    # The link is not spent by a failed attempt.
    assert client.get(f"/login/{token}").status_code == 200


def test_an_expired_link_gets_a_410_page_that_says_so(app, client, make_user, frozen_clock, csrf_from):
    user = make_user()
    with app.app_context():
        token = login_links.make_login_token(db.session.get(User, user.id))
    page = client.get(f"/login/{token}")
    csrf = csrf_from(page.get_data(as_text=True))
    frozen_clock.now += 72 * 3600 + 1
    for answer in (
        client.get(f"/login/{token}"),
        client.post(
            f"/login/{token}", data={"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD, "csrf_token": csrf}
        ),
    ):
        assert answer.status_code == 410
        assert "This link has expired" in answer.get_data(as_text=True)
    assert not password_works(app, user.id, NEW_PASSWORD)


def test_a_forged_link_gets_a_400_page_that_says_so(client, token):
    answer = client.get(f"/login/{token[:-3]}xyz")
    assert answer.status_code == 400
    assert "This link is not valid" in answer.get_data(as_text=True)


def test_a_link_for_a_deleted_user_is_invalid(app, client, token):
    with app.app_context():
        db.session.delete(db.session.scalars(db.select(User)).one())
        db.session.commit()
    assert client.get(f"/login/{token}").status_code == 400
