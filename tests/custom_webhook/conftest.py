"""Custom webhook fixtures: a loopback HTTP receiver (a threaded ``http.server``) that records what reaches it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


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


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen = Received(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    server = QuietServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(autouse=True)
def fresh_token_cache() -> Iterator[None]:
    """The OAuth token cache is process-wide: every test starts without tokens."""
    from crm_adapters.custom_webhook import clear_token_cache

    clear_token_cache()
    yield
    clear_token_cache()


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True}
