"""End to end: a PulseTechnologyCRM webhook that names only the contact (``contact_id`` in the
URL, no body: the shape of shared/fixtures/pulsetech/id_in_query.json) makes crm-bridge load the
contact and its tags through the API of a fake PulseTechnologyCRM served on loopback by a real
threaded HTTP server.

The inbound endpoint (CONTRACT.md §3) is written on another branch: the HTTP tests here need it
merged; ``test_fake_crm_serves_the_adapter`` exercises the fake CRM and the adapter on their own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select
from support import load_fixture

from bridge.extensions import db
from bridge.models import ContactLink, User
from crm_adapters.errors import AuthRefused

TOKEN = "pulse-good-token"
CONTACTS = {"1234": {"id": 1234, "first_name": "Maria", "last_name": "Rossi", "email": "Maria.Rossi@example.it"}}
NOT_FOUND = {"error": "Contact not found"}
TAG_PAGES = [
    [{"id": 5, "name": "Customers"}, {"id": 9, "name": "VIP"}],
    [{"id": 12, "name": "Course Two"}],
]


class FakePulseTech:
    """PulseTechnologyCRM's API as its one public client calls it (WP Fusion's
    class-pulsetech.php 3.47.11; shared/reference/pulsetech.md): Bearer-token checks, the tag
    list and a contact's tags paginated (the first page without ``page``), flat contacts,
    ``POST contact/find/`` answering ``{"error": "Contact not found"}`` for an unknown email.
    ``contact_tags`` may be changed by tests; ``requests`` records (method, path, authorised)."""

    def __init__(self) -> None:
        self.contact_tags: dict[str, list[int]] = {"1234": [5, 12]}
        self.requests: list[tuple[str, str, bool]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.answer(self)

            def do_POST(self) -> None:
                fake.answer(self)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        method = handler.command
        authorised = handler.headers.get("Authorization") == f"Bearer {TOKEN}"
        self.requests.append((method, parts.path, authorised))
        length = int(handler.headers.get("Content-Length") or 0)
        form = parse_qs(handler.rfile.read(length).decode()) if length else {}
        if not authorised:
            return self.send(handler, 401, {"message": "Unauthenticated."})
        page = int(parse_qs(parts.query).get("page", ["1"])[0])
        segments = parts.path.removeprefix("/api/v1/").strip("/").split("/")
        if method == "GET" and segments == ["tags"]:
            return self.send(handler, 200, self.page(TAG_PAGES, page))
        if method == "POST" and segments == ["contact", "find"]:
            email = (form.get("email") or [""])[0].lower()
            found = [c for c in CONTACTS.values() if c["email"].lower() == email]
            return self.send(handler, 200, found[0]) if found else self.send(handler, 404, NOT_FOUND)
        if method == "GET" and len(segments) >= 2 and segments[0] == "contacts":
            if segments[1] not in CONTACTS:
                return self.send(handler, 404, NOT_FOUND)
            if segments[2:] == ["tags"]:  # one tag per page, so the adapter must page through
                pages = [[{"id": tag_id}] for tag_id in self.contact_tags[segments[1]]]
                return self.send(handler, 200, self.page(pages, page))
            if not segments[2:]:
                return self.send(handler, 200, CONTACTS[segments[1]])
        return self.send(handler, 404, {"message": "Not found."})

    @staticmethod
    def page(pages: list[list[Any]], page: int) -> dict[str, Any]:
        data = pages[page - 1] if page <= len(pages) else []
        return {"data": data, "meta": {"current_page": page, "last_page": max(len(pages), 1)}}

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    def __enter__(self) -> FakePulseTech:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True}


@pytest.fixture
def fake_crm() -> Iterator[FakePulseTech]:
    with FakePulseTech() as fake:
        yield fake


def fixture_url(access_key: str, **changes: str) -> str:
    """The URL of shared/fixtures/pulsetech/id_in_query.json, with our key and any changes."""
    query = {**load_fixture("pulsetech/id_in_query.json")["query"], **changes, "access_key": access_key}
    return "/?" + "&".join(f"{name}={value}" for name, value in query.items())


def test_fake_crm_serves_the_adapter(app, fake_crm: FakePulseTech, make_connection) -> None:
    """The adapter, built for a stored connection, loads the contact and tag names over HTTP."""
    from bridge.connections.service import build_adapter, get_connection

    make_connection("pulse", "pulsetech", base_url=fake_crm.url, access_token=TOKEN)
    make_connection("pulse-bad", "pulsetech", base_url=fake_crm.url, access_token="expired")
    with app.app_context():
        adapter = build_adapter(get_connection("pulse"))
        contact = adapter.load_contact("1234")
        assert (contact.email, contact.fields["first_name"], contact.tags) == ("maria.rossi@example.it", "Maria", None)
        assert adapter.load_tags("1234") == ["Customers", "Course Two"]  # ids 5 and 12, named across two pages
        assert adapter.find_contact_id("MARIA.rossi@example.it") == "1234"
        assert adapter.find_contact_id("nobody@example.it") is None
        with pytest.raises(AuthRefused):
            build_adapter(get_connection("pulse-bad")).load_contact("1234")
    assert ("GET", "/api/v1/tags", True) in fake_crm.requests


def test_webhook_naming_only_the_contact_creates_the_user_from_the_crm(
    app, client, fake_crm: FakePulseTech, make_connection
) -> None:
    key = make_connection("pulse", "pulsetech", base_url=fake_crm.url, access_token=TOKEN)

    response = client.post(fixture_url(key, wpf_action="add"))

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["success"] is True and body["created"] is True
    assert body["contact_id"] == "1234"
    assert sorted(body["tags"]) == ["Course Two", "Customers"]
    with app.app_context():
        from bridge.accounts.users import tag_names
        from bridge.connections.service import get_connection

        user = db.session.scalar(select(User).where(User.email == "maria.rossi@example.it"))
        assert user is not None and user.id == body["user_id"]
        assert (user.first_name, user.last_name) == ("Maria", "Rossi")
        assert sorted(tag_names(user, get_connection("pulse"))) == ["Course Two", "Customers"]
        assert db.session.scalar(select(ContactLink.user_id).where(ContactLink.contact_id == "1234")) == user.id

    # The fixture's own request (update_tags) replaces the tags with what the CRM now has.
    fake_crm.contact_tags["1234"] = [9]
    response = client.post(fixture_url(key))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["tags"] == ["VIP"]
    assert response.get_json()["tags_removed"] and response.get_json()["tags_added"] == ["VIP"]


def test_crm_refusing_the_credentials_gives_502_and_no_user(app, client, fake_crm: FakePulseTech, make_connection):
    key = make_connection("pulse", "pulsetech", base_url=fake_crm.url, access_token="revoked-token")

    response = client.post(fixture_url(key, wpf_action="add"))

    assert response.status_code == 502
    assert response.get_json()["error"] == "crm_unavailable"
    assert "revoked-token" not in response.get_data(as_text=True)
    assert fake_crm.requests and not any(authorised for _, _, authorised in fake_crm.requests)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
