"""A fake FluentCRM REST API on loopback, shaped after the recorded exchanges in
``shared/fixtures/fluentcrm/api/`` and ``tests/fixtures/fluentcrm/api/`` (paths, Basic auth,
``__force_update``, 422 for a missing subscriber or a duplicate email, 404 for a ``PUT`` to a
missing one, ``sync-segments`` by slug, custom values only with
``with[]=subscriber.custom_values``, tag creation that checks the slug and inserts in two steps,
so racing creates can make two tags of one slug, and a 422 "slug taken" otherwise), plus knobs
to make it fail, hang or answer slowly. Used by the end-to-end tests and by ``bench/delivery.py``.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from crm_adapters.fluentcrm import API_PATH

USERNAME = "api"
APP_PASSWORD = "fake app password 1234"  # a test credential


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    at: float


@dataclass
class Scripted:
    """A canned answer for the next request matching ``method``/``path_suffix``."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    method: str | None = None
    path_suffix: str | None = None


class _CrmServer(ThreadingHTTPServer):
    # socketserver's listen backlog is 5. A worker process starting 16 pool threads at once
    # overflowed it: a dropped SYN cost a second, and now and then the connection failed and
    # the push waited for its retry (benches saw two-process drains at half speed). Web
    # servers in front of real CRMs accept hundreds.
    request_queue_size = 512


class FakeFluentCrm:
    """State and behaviour of the fake; ``url`` is the WordPress site's base URL."""

    def __init__(self, *, delay: float = 0.0, tags: Sequence[str] = ("vip", "newsletter")) -> None:
        self.delay = delay
        self.lock = threading.Condition()
        self.contacts: dict[int, dict[str, Any]] = {}
        self._by_email: dict[str, dict[str, Any]] = {}  # a real CRM indexes emails too: no scans
        self.tags: dict[str, dict[str, Any]] = {}  # by slug: the first tag of each slug
        self.tag_rows: list[dict[str, Any]] = []  # every tag, duplicates of a slug included
        # How long a tag create that passed the slug check waits for a racing one before it
        # inserts (FluentCRM's check and insert are two steps; 0: no window at all).
        self.tag_race_window = 0.0
        self._tag_creates_checked = 0
        self.custom_fields: list[str] = ["membership_tier", "signup_country"]
        self.requests: list[Recorded] = []
        self.scripted: list[Scripted] = []
        self.reject_writes_with: int | None = None
        self.gate: threading.Event | None = None  # when set to an Event, requests wait on it
        self.gate_when: Callable[[Recorded], bool] | None = None  # set: only matching requests wait
        self.arrived = threading.Event()  # set whenever a request arrives
        self._next_id = 1
        for name in tags:
            self._create_tag(name)
        self.server = _CrmServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle --

    def __enter__(self) -> FakeFluentCrm:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    # -- knobs and views --

    def script(self, *answers: Scripted) -> None:
        with self.lock:
            self.scripted.extend(answers)

    def seed_contact(self, email: str, **fields: Any) -> dict[str, Any]:
        """A contact the CRM had before the test (a newsletter subscriber, say)."""
        with self.lock:
            contact = {"id": self._next_id, "email": email.lower(), "tag_slugs": [], **fields}
            self._next_id += 1
            self.contacts[contact["id"]] = contact
            self._by_email[contact["email"]] = contact
            return contact

    def contacts_by_email(self, email: str) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.contacts.values() if c["email"] == email.lower()]

    def _find_by_email(self, email: str) -> dict[str, Any] | None:
        return self._by_email.get(email.lower())

    def wait_for(self, predicate: Callable[[FakeFluentCrm], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate(self)`` holds (re-checked on every request), or time out."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.lock.wait(remaining)
            return True

    def requests_to(self, method: str, suffix: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    # -- the API --

    def tags_with_slug(self, slug: str) -> list[dict[str, Any]]:
        with self.lock:
            return [t for t in self.tag_rows if t["slug"] == slug]

    def _create_tag(self, title: str) -> dict[str, Any]:
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        tag = {"id": len(self.tag_rows) + 1, "title": title, "slug": slug, "description": ""}
        self.tag_rows.append(tag)
        self.tags.setdefault(slug, tag)
        return tag

    def _create_tag_racily(self, title: str) -> tuple[int, Any]:
        """``POST tags`` as FluentCRM does it: the unique-slug check, then the insert, with
        ``tag_race_window`` between them for a racing create to pass the same check (called
        with ``self.lock`` held; waiting releases it)."""
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        if slug in self.tags:
            return 422, {"slug": {"unique": "The slug attribute is already taken and must be unique."}}
        self._tag_creates_checked += 1
        self.lock.notify_all()
        deadline = time.monotonic() + self.tag_race_window
        while self._tag_creates_checked < 2 and (remaining := deadline - time.monotonic()) > 0:
            self.lock.wait(remaining)
        tag = self._create_tag(title)
        self._tag_creates_checked -= 1
        return 200, {"lists": tag, "item": tag, "message": "Successfully saved the tag."}

    def _subscriber(self, contact: dict[str, Any], withs: Sequence[str] = ()) -> dict[str, Any]:
        shown = {k: v for k, v in contact.items() if k != "custom_values" or "subscriber.custom_values" in withs}
        return {**shown, "tags": [self.tags[s] for s in contact["tag_slugs"]], "lists": []}

    def answer(self, method: str, path: str, query: Mapping[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        """One API call against the in-memory state (called with ``self.lock`` held)."""
        if not path.startswith(API_PATH):
            return 404, {"code": "rest_no_route"}, {}
        route = path[len(API_PATH) :]
        missing = (422, {"message": "Subscriber not found"}, {})
        if self.reject_writes_with and method in ("POST", "PUT"):
            return self.reject_writes_with, {"message": "rejected by the fake CRM"}, {}
        if method == "GET" and route == "/tags":
            data = list(self.tag_rows)
            return 200, {"tags": {"total": len(data), "current_page": 1, "last_page": 1, "data": data}}, {}
        if method == "GET" and route == "/custom-fields/contacts":  # shaped as tests/adapters/test_fluentcrm.py
            return (
                200,
                {"fields": [{"slug": slug, "label": slug.replace("_", " ").title()} for slug in self.custom_fields]},
                {},
            )
        if method == "POST" and route == "/tags":
            status, answer = self._create_tag_racily(str(body.get("title", "")))
            return status, answer, {}
        if method == "GET" and route == "/subscribers/0" and "get_by_email" in query:
            found = self._find_by_email(query["get_by_email"])
            return (200, {"subscriber": self._subscriber(found)}, {}) if found else missing
        if method == "GET" and route == "/subscribers" and ("page" in query or "tags[]" in query):
            return 200, self._subscriber_page(query), {}
        if method == "GET" and route == "/subscribers":
            term = query.get("search", "").lower()
            data = [self._subscriber(c) for c in self.contacts.values() if term in c["email"]]
            return 200, {"subscribers": {"total": len(data), "current_page": 1, "last_page": 1, "data": data}}, {}
        match = re.fullmatch(r"/subscribers/(\d+)", route)
        if match and method == "GET":
            contact = self.contacts.get(int(match.group(1)))
            withs = query.get("with[]", "").split(",")
            return (200, {"subscriber": self._subscriber(contact, withs)}, {}) if contact else missing
        if match and method == "PUT":
            contact = self.contacts.get(int(match.group(1)))
            if contact is None:  # recorded: update_missing_404
                return 404, {"message": "No query results for model [FluentCrm\\App\\Models\\Subscriber]."}, {}
            fields = body.get("subscriber", body) if isinstance(body, dict) else {}
            self._apply(contact, fields)
            for tag_id in body.get("detach_tags", []) if isinstance(body, dict) else []:
                contact["tag_slugs"] = [s for s in contact["tag_slugs"] if self.tags[s]["id"] != tag_id]
            return 200, {"message": "Subscriber successfully updated", "contact": self._subscriber(contact)}, {}
        if method == "POST" and route == "/subscribers":
            email = str(body.get("email", "")).lower()
            if not email or not body.get("status"):
                return 422, {"email": {"required": "Email is required"}}, {}
            existing = self._find_by_email(email)
            if existing and body.get("__force_update") != "yes":
                return 422, {"email": {"unique": "Provided email already assigned to another subscriber."}}, {}
            action = "updated" if existing else "created"
            contact = existing or {"id": self._next_id, "email": email, "tag_slugs": []}
            if not existing:
                self._next_id += 1
                self.contacts[contact["id"]] = contact
                self._by_email[email] = contact
            self._apply(contact, body)
            for tag_id in body.get("tags") or []:  # recorded: create_with_tag
                slug = next((t["slug"] for t in self.tag_rows if t["id"] == tag_id), None)
                if slug and slug not in contact["tag_slugs"]:
                    contact["tag_slugs"].append(slug)
            message = "contact has been successfully updated." if existing else "Successfully added the subscriber."
            return 200, {"message": message, "contact": self._subscriber(contact), "action_type": action}, {}
        if method == "POST" and route == "/subscribers/sync-segments":
            by_id = body.get("find_by") == "id"
            for contact_id in body.get("subscribers", []):
                contact = self.contacts.get(int(contact_id))
                if contact is None:
                    continue
                for ref in body.get("attach", []):
                    slug = next((t["slug"] for t in self.tag_rows if t["id"] == ref), None) if by_id else ref
                    if slug in self.tags and slug not in contact["tag_slugs"]:
                        contact["tag_slugs"].append(slug)
            return 200, {"message": "Successfully updated the subscriber."}, {}
        return 404, {"code": "rest_no_route", "message": "No route was found"}, {}

    def _subscriber_page(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET subscribers?tags[]=ID&per_page=N&page=P``, paginated as FluentCRM does
        (``shared/fixtures/fluentcrm/api/list_by_tag_page.json``: Laravel's paginator, oldest
        first, ``per_page`` 10 unless given)."""
        matching = list(self.contacts.values())
        if "tags[]" in query:
            tag_id = int(query["tags[]"])
            matching = [c for c in matching if any(self.tags[s]["id"] == tag_id for s in c["tag_slugs"])]
        per_page, page = int(query.get("per_page") or 10), int(query.get("page") or 1)
        last_page = max(1, -(-len(matching) // per_page))
        chunk = matching[(page - 1) * per_page : page * per_page]
        start = (page - 1) * per_page + 1
        return {
            "subscribers": {
                "total": len(matching),
                "per_page": per_page,
                "current_page": page,
                "last_page": last_page,
                "next_page_url": None if page >= last_page else f"{self.url}{API_PATH}/subscribers?page={page + 1}",
                "prev_page_url": None,
                "from": start if chunk else None,
                "to": start + len(chunk) - 1 if chunk else None,
                "data": [self._subscriber(c) for c in chunk],
            },
            "custom": None,
        }

    def _apply(self, contact: dict[str, Any], fields: Mapping[str, Any]) -> None:
        for key, value in fields.items():
            if key in ("id", "tags", "tag_slugs", "__force_update", "attach_tags", "detach_tags", "subscriber"):
                continue
            if key == "custom_values" and isinstance(value, Mapping):  # merged, as FluentCRM does
                value = {**contact.get("custom_values", {}), **value}
            if key == "email" and isinstance(value, str):
                value = value.lower()
                if self._by_email.get(contact["email"]) is contact:
                    del self._by_email[contact["email"]]
                self._by_email[value] = contact
            contact[key] = value

    def _authorised(self, header: str | None) -> bool:
        expected = "Basic " + base64.b64encode(f"{USERNAME}:{APP_PASSWORD}".encode()).decode()
        return header == expected

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes: without this, Nagle's algorithm
                # and the client's delayed ACK add ~40 ms to every answer.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {}
                parts = urlsplit(self.path)
                pairs = parse_qsl(parts.query)
                query = dict(pairs)
                if any(k == "with[]" for k, _ in pairs):  # repeated: all of them, comma-joined
                    query["with[]"] = ",".join(v for k, v in pairs if k == "with[]")
                recorded = Recorded(self.command, parts.path, query, dict(self.headers.items()), body, time.monotonic())
                with fake.lock:
                    fake.requests.append(recorded)
                    fake.lock.notify_all()
                    gate = fake.gate if fake.gate_when is None or fake.gate_when(recorded) else None
                fake.arrived.set()
                if gate is not None:
                    gate.wait(30)
                if fake.delay:
                    time.sleep(fake.delay)
                with fake.lock:
                    scripted = fake._take_scripted(self.command, parts.path)
                    if scripted is not None:
                        status, payload, headers = scripted.status, scripted.body, scripted.headers
                    elif not fake._authorised(self.headers.get("Authorization")):
                        status, headers = 401, {}
                        payload = {"code": "rest_forbidden", "message": "Sorry, you are not allowed to do that."}
                    else:
                        status, payload, headers = fake.answer(self.command, parts.path, query, body)
                    fake.lock.notify_all()
                data = json.dumps(payload).encode() if payload is not None else b""
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client went away (a killed worker)
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler

    def _take_scripted(self, method: str, path: str) -> Scripted | None:
        for index, answer in enumerate(self.scripted):
            if (answer.method in (None, method)) and (answer.path_suffix is None or path.endswith(answer.path_suffix)):
                return self.scripted.pop(index)
        return None


def connection_settings(fake: FakeFluentCrm, **extra: Any) -> dict[str, Any]:
    return {"base_url": fake.url, "username": USERNAME, "app_password": APP_PASSWORD, **extra}
