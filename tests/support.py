"""Test helpers importable from any test module (``from support import …``).

Test modules must not ``import conftest``: with several conftest.py files on sys.path the
name is ambiguous.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import event
from werkzeug.serving import make_server

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``../shared`` beside the checkout (CI's layout), or ``BRIDGE_SHARED_DIR``."""
    candidates = [os.environ.get("BRIDGE_SHARED_DIR"), REPO_ROOT.parent / "shared", Path("/work/shared")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "fixtures").is_dir():
            return Path(candidate)
    raise RuntimeError("shared/fixtures not found: set BRIDGE_SHARED_DIR")


FIXTURES = shared_dir() / "fixtures"


LOCAL_FIXTURES = REPO_ROOT / "tests" / "fixtures"  # recorded by this project (each with a "note")


def load_fixture(relative: str) -> dict[str, Any]:
    """A fixture from shared/fixtures, or from tests/fixtures when only that one has it."""
    path = FIXTURES / relative
    return json.loads((path if path.exists() else LOCAL_FIXTURES / relative).read_text())


class LiveServer:
    """The app served by a real threaded Werkzeug server on loopback."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# -- a loopback HTTP receiver: records what reaches it, answers per route --------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int] = ("", 0)  # the sending socket's address: one per TCP connection


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Receiver:
    """``routes`` maps a path to a function returning (status, headers, body)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    routes: dict[str, Callable[[Received], Reply]] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


def receiver_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            seen = Received(self.command, self.path, dict(self.headers.items()), body, tuple(self.client_address))
            receiver.requests.append(seen)
            route = receiver.routes.get(self.path.split("?", 1)[0])
            status, headers, body = route(seen) if route else (200, {"Content-Type": "application/json"}, b"{}")
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up (timeouts, capped reads) are expected here


# -- outbound -------------------------------------------------------------------------------

ECHO_CRM = "https://crm.test"  # base URL of the outbound tests' echo adapter


def load_delivery(app: Any, delivery_id: int) -> Any:
    """A delivery with its attempts, detached from the session (safe to read after the context)."""
    from bridge.extensions import db
    from bridge.models import Delivery

    with app.app_context():
        row = db.session.get(Delivery, delivery_id)
        _ = row.attempt_log
        db.session.expunge_all()
        return row


@contextmanager
def statements(app: Any) -> Iterator[list[str]]:
    """The SQL statements the app runs inside the block (whitespace collapsed, upper-cased)."""
    from bridge.extensions import db

    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()).upper())

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


# -- secrets ----------------------------------------------------------------------------------

OTHER_SECRET_KEY = "an-older-secret-key-this-server-no-longer-has"


def encrypt_with_other_key(app: Any, connection_name: str, *names: str) -> dict[str, str]:
    """Store the connection's secret settings ``names`` encrypted with another SECRET_KEY, as
    they are after SECRET_KEY changed. Returns what is now stored for each (the ciphertext)."""
    from bridge import crypto
    from bridge.connections.service import get_connection
    from bridge.extensions import db

    with app.app_context():
        connection = get_connection(connection_name)
        stored = dict(connection.settings)
        for name in names:
            stored[name] = crypto.encrypt(crypto.decrypt(stored[name]), secret_key=OTHER_SECRET_KEY)
        connection.settings = stored
        db.session.commit()
        return {name: stored[name] for name in names}


@contextmanager
def short_sqlite_busy_timeout(app: Any, milliseconds: int = 300) -> Iterator[None]:
    """On SQLite, new connections wait ``milliseconds`` (not 30 s) for a write lock another
    connection holds: a test that would stall fails in moments instead. No-op on PostgreSQL."""
    from bridge.extensions import db

    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "sqlite":
        yield
        return

    def shorten(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA busy_timeout={int(milliseconds)}")

    event.listen(engine, "connect", shorten)
    engine.dispose()  # pooled connections were made with the long timeout
    try:
        yield
    finally:
        event.remove(engine, "connect", shorten)
        engine.dispose()


@dataclass
class CrmCallProbe:
    """A ``responses`` callback answering every CRM request with ``body``, noting each
    request's method and path and whether the calling thread's database session had a
    transaction open when it left (``in_transaction``)."""

    body: Any
    status: int = 200
    calls: list[str] = field(default_factory=list)
    in_transaction: list[bool] = field(default_factory=list)

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        from urllib.parse import urlsplit

        from bridge.extensions import db

        self.calls.append(f"{request.method} {urlsplit(request.url).path}")
        self.in_transaction.append(db.session().in_transaction())
        return self.status, {"Content-Type": "application/json"}, json.dumps(self.body)

    def register(self, base_url: str, mock: Any = None) -> CrmCallProbe:
        """Answer every method at every path under ``base_url``: in ``mock`` (a
        ``responses.RequestsMock``, made with ``assert_all_requests_are_fired=False``), else
        in the active default mock (``@responses.activate``)."""
        import re

        import responses

        mock = mock if mock is not None else responses
        pattern = re.compile(re.escape(base_url.rstrip("/")) + r"/.*")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            mock.add_callback(method, pattern, callback=self)
        return self


# Answers every HubSpot call a test makes: contact 42 (found by email, loaded, created,
# patched), no lists, no properties, no memberships.
HUBSPOT_ANY = {
    "id": "42",
    "properties": {"email": "ada@example.com", "firstname": "Augusta"},
    "results": [],
    "lists": [],
    "hasMore": False,
}
