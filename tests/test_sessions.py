"""The console's cookie session (``bridge.admin.sessions``): Flask's behaviour, without building a
signing serializer for every request. A small Flask app of its own sets and reads the session,
so each rule is seen through real requests and cookies."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, session
from flask import sessions as flask_sessions

from bridge.admin.sessions import CookieSessionInterface


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every signing serializer Flask's session code builds during the test."""
    made: list[Any] = []
    real = flask_sessions.URLSafeTimedSerializer

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(flask_sessions, "URLSafeTimedSerializer", counting)
    return made


def session_app(secret_key: str | None = "first-secret-key") -> Flask:
    app = Flask(__name__)
    app.testing = True  # a failing view raises in the test
    app.secret_key = secret_key
    app.session_interface = CookieSessionInterface()

    @app.post("/set/<value>")
    def set_value(value: str) -> str:
        session["value"] = value
        return "set"

    @app.get("/get")
    def get_value() -> str:
        return str(session.get("value"))

    return app


def test_a_request_without_cookies_builds_no_serializer(app, client, built) -> None:
    """A webhook, an API call or a health probe never has a session to read."""
    for _ in range(3):
        assert client.get("/").status_code == 200
    assert built == []


def test_the_session_round_trips_with_one_serializer_for_many_requests(built) -> None:
    client = session_app().test_client()
    assert client.post("/set/blue").status_code == 200
    for _ in range(3):
        assert client.get("/get").get_data(as_text=True) == "blue"
    assert len(built) == 1


def test_a_new_secret_key_refuses_the_old_cookie_unless_it_is_a_fallback(built) -> None:
    app = session_app()
    client = app.test_client()
    client.post("/set/blue")
    app.secret_key = "second-secret-key"
    assert client.get("/get").get_data(as_text=True) == "None"  # signed with a key no longer held
    client.post("/set/green")
    app.secret_key = "third-secret-key"
    app.config["SECRET_KEY_FALLBACKS"] = ["second-secret-key"]
    assert client.get("/get").get_data(as_text=True) == "green"
    assert len(built) == 3  # one per set of keys


def test_without_a_secret_key_the_session_is_flasks_null_session() -> None:
    client = session_app(secret_key=None).test_client()
    assert client.get("/get").get_data(as_text=True) == "None"
    with pytest.raises(RuntimeError, match="secret key"):
        client.post("/set/blue")
