"""Issue 18 against a real gunicorn: a wrong key with a huge bracket form no longer holds a worker
until gunicorn kills it (item 1), percent-encoded key names stay out of the access log (item 6),
and gunicorn's own refusals are JSON (item 11)."""

from __future__ import annotations

import http.client
import json
import threading
from urllib.parse import urlsplit

import pytest
import requests
from gunicorn_server import Gunicorn
from sqlalchemy import select

from bridge.extensions import db
from bridge.models import WebhookEvent

WRONG_KEY = "wrong-key-0000000000000000"


@pytest.fixture
def server(app, tmp_path, monkeypatch):
    with Gunicorn(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "instance", tmp_path) as running:
        yield running


def logged_statuses(app) -> list[int]:
    with app.app_context():
        statuses = list(db.session.scalars(select(WebhookEvent.status_code).order_by(WebhookEvent.id)))
        db.session.remove()
        return statuses


def test_bracket_forms_with_a_wrong_key_are_answered_not_killed(app, make_connection, server):
    key = make_connection("fluent", "fluentcrm")
    body = "&".join(["t[]=1"] * 50_000)  # 300 KB: minutes of nesting before the change
    answers: list[requests.Response | Exception] = []

    def send() -> None:
        try:
            answers.append(
                requests.post(
                    f"{server.url}/?wpf_action=add&access_key={WRONG_KEY}",
                    data=body,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    timeout=60,
                )
            )
        except requests.RequestException as exc:
            answers.append(exc)

    senders = [threading.Thread(target=send) for _ in range(2)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert [getattr(a, "status_code", a) for a in answers] == [403, 403]
    assert {a.json()["error"] for a in answers} == {"invalid_access_key"}  # type: ignore[union-attr]
    assert logged_statuses(app) == [403, 403]  # logged and counted: the rate limit applies
    assert requests.post(f"{server.url}/?wpf_action=test&access_key={key}", timeout=30).status_code == 200


def raw_get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET sent exactly as written (``requests`` would
    normalise ``%61`` to ``a``, hiding the very encodings under test)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def test_encoded_key_names_never_reach_the_access_log(make_connection, server):
    key = make_connection("fluent", "fluentcrm")
    for name in ("%61ccess_key", "access%5Fkey", "%61%63%63%65%73%73%5F%6B%65%79"):
        status, _, body = raw_get(server.url, f"/?wpf_action=test&{name}={key}&marker={name}")
        assert status == 200 and json.loads(body)["connection"] == "fluent"
    text = server.log_text("marker=%61%63%63")
    assert text.count("wpf_action=test") == 3 and "%61ccess_key=" in text
    assert key not in text


def test_gunicorn_refusals_are_json(server):
    for path, headers, expected in (
        ("/?wpf_action=test&x=" + "a" * 5_000, {}, 414),
        ("/", {"X-Big": "b" * 10_000}, 431),
    ):
        status, content_type, body = raw_get(server.url, path, headers)
        assert (status, content_type) == (expected, "application/json")
        answer = json.loads(body)
        assert answer["success"] is False and answer["error"] and answer["message"]
