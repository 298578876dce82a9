"""The outbound client against real loopback servers: pinning, refusal, redirects, caps."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import requests

from bridge.outbound.client import OutboundClient, OutboundPolicy, PinnedAdapter, outbound_client
from crm_adapters.errors import OutboundDenied, ResponseTooLarge, TransportTimeout

LENIENT = OutboundPolicy(allow_private=True)


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """``*.pinned.test`` resolves to 127.0.0.1 through ``socket.getaddrinfo``; counts lookups."""
    real = socket.getaddrinfo
    lookups: dict[str, int] = {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list:
        if isinstance(host, str) and host.endswith(".pinned.test"):
            lookups[host] = lookups.get(host, 0) + 1
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def test_loopback_target_is_refused_before_anything_is_sent(receiver: Any) -> None:
    client = OutboundClient(policy=OutboundPolicy())
    with pytest.raises(OutboundDenied):
        client.request("POST", receiver.url + "/hook", json={"email": "a@example.com"})
    assert receiver.requests == []
    (exchange,) = client.exchanges
    assert exchange["error_class"] == "outbound_denied"
    assert exchange["method"] == "POST"
    assert "a@example.com" in exchange["request_body"]


def test_name_resolving_to_loopback_is_refused(receiver: Any, fake_dns: dict[str, int]) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    client = OutboundClient(policy=OutboundPolicy())
    with pytest.raises(OutboundDenied, match="non-public"):
        client.request("GET", f"http://crm.pinned.test:{port}/x")
    assert receiver.requests == []
    assert fake_dns == {"crm.pinned.test": 1}


def test_connects_to_the_checked_address_with_the_name_in_host(receiver: Any, fake_dns: dict[str, int]) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    client = OutboundClient(policy=LENIENT)
    for _ in range(2):
        response = client.request("GET", f"http://crm.pinned.test:{port}/ping", params={"q": "1"})
        assert response.status == 200
    assert [r.headers["Host"] for r in receiver.requests] == [f"crm.pinned.test:{port}"] * 2
    assert receiver.paths() == ["/ping?q=1", "/ping?q=1"]
    assert fake_dns == {"crm.pinned.test": 2}  # once per request, never a second lookup
    assert client.exchanges[0]["address"] == "127.0.0.1"


def test_https_keeps_the_name_for_sni_and_certificate_check() -> None:
    adapter = PinnedAdapter(lambda host, port: ipaddress.ip_address("93.184.216.34"))
    prepared = requests.Request("GET", "https://crm.example.com/api").prepare()
    host_params, pool_kwargs = adapter.build_connection_pool_key_attributes(prepared, True)
    assert host_params["host"] == "93.184.216.34"
    assert pool_kwargs["server_hostname"] == "crm.example.com"
    assert pool_kwargs["assert_hostname"] == "crm.example.com"
    assert prepared.headers["Host"] == "crm.example.com"


def test_redirect_is_returned_not_followed(receiver: Any) -> None:
    receiver.routes["/moved"] = lambda r: (302, {"Location": receiver.url + "/target"}, b"")
    client = OutboundClient(policy=LENIENT)
    response = client.request("POST", receiver.url + "/moved", json={})
    assert response.status == 302
    assert receiver.paths() == ["/moved"]


def test_response_over_the_cap_is_refused(receiver: Any) -> None:
    receiver.routes["/big"] = lambda r: (200, {}, b"x" * 200_000)
    client = OutboundClient(policy=OutboundPolicy(allow_private=True, max_response_bytes=100_000))
    with pytest.raises(ResponseTooLarge):
        client.request("GET", receiver.url + "/big")
    assert client.exchanges[0]["error_class"] == "response_too_large"


def test_slow_target_times_out(receiver: Any) -> None:
    def stall(request: Any) -> tuple[int, dict[str, str], bytes]:
        receiver.release.wait(10)  # released when the test ends
        return 200, {}, b""

    receiver.routes["/slow"] = stall
    client = OutboundClient(policy=LENIENT)
    with pytest.raises(TransportTimeout):
        client.request("GET", receiver.url + "/slow", timeout=0.3)
    assert client.exchanges[0]["error_class"] == "timeout"


def test_allowlist_applies_even_when_private_targets_are_allowed(receiver: Any) -> None:
    client = OutboundClient(policy=OutboundPolicy(allow_private=True, allowlist=("crm.example.com",)))
    with pytest.raises(OutboundDenied, match="ALLOWLIST"):
        client.request("GET", receiver.url + "/x")
    assert receiver.requests == []


def test_header_injection_is_refused(receiver: Any) -> None:
    client = OutboundClient(policy=LENIENT)
    with pytest.raises(OutboundDenied, match="invalid request"):
        client.request("GET", receiver.url + "/x", headers={"X-Name": "a\r\nX-Evil: 1"})
    assert receiver.requests == []


def test_exchanges_are_recorded_redacted(receiver: Any) -> None:
    receiver.routes["/token"] = lambda r: (200, {"Content-Type": "application/json"}, b'{"access_token":"tok-123456"}')
    client = OutboundClient(policy=LENIENT, secrets=("s3cret-value",))
    client.request(
        "POST",
        receiver.url + "/token",
        params={"api_key": "k-abcdef"},
        headers={"Authorization": "Bearer abc", "X-Custom": "s3cret-value"},
        data={"client_secret": "cs-999999", "grant_type": "client_credentials"},
    )
    recorded = str(client.exchanges)
    for secret in ("k-abcdef", "Bearer abc", "s3cret-value", "cs-999999", "tok-123456"):
        assert secret not in recorded
    assert receiver.requests[0].headers["X-Custom"] == "s3cret-value"  # redaction is for the record only
    assert client.exchanges[0]["status"] == 200


def test_environment_proxies_are_ignored(receiver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://10.255.255.1:3128")
    client = OutboundClient(policy=LENIENT)
    assert client.request("GET", receiver.url + "/direct").status == 200


def test_outbound_client_takes_the_app_policy(app) -> None:
    app.config.update(BRIDGE_ALLOW_PRIVATE_TARGETS=True, BRIDGE_OUTBOUND_ALLOWLIST="*.example.com")
    with app.app_context():
        client = outbound_client(["", "secret-1"])
    assert client.policy.allow_private and client.policy.allowlist == ("*.example.com",)
    assert client.secrets == ("secret-1",)
    assert outbound_client().policy == OutboundPolicy()  # outside an app: the strict default


def test_credentials_the_client_sent_are_scrubbed_from_an_echo_in_every_encoding(receiver: Any) -> None:
    token = "tok/with+odd chars-123"
    echoed = json.dumps({"auth": f"Bearer {token}", "query": quote(token, safe=""), "form": quote_plus(token)})
    receiver.routes["/echo"] = lambda r: (
        200,
        {"Content-Type": "application/json"},
        echoed.replace("/", "\\/").encode(),
    )
    client = OutboundClient(policy=LENIENT)  # the token is no configured secret: fetched at run time, say
    client.request("GET", receiver.url + "/echo", headers={"Authorization": f"Bearer {token}"})
    recorded = json.dumps(client.exchanges)
    assert receiver.requests[0].headers["Authorization"] == f"Bearer {token}"
    for form in (token, quote(token, safe=""), quote_plus(token), token.replace("/", "\\\\/")):
        assert form not in recorded
    assert token in client.sent and "[redacted]" in client.exchanges[0]["response_body"]


class Trickler:
    """A CRM that answers one byte at a time (status line and headers, or the body), every
    ``gap`` seconds, for ``total`` bytes: each read gets a byte well within any read timeout."""

    def __init__(self, *, part: str, total: int = 400, gap: float = 0.05) -> None:
        self.part, self.total, self.gap = part, total, gap
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.cut_off = threading.Event()  # the client closed the connection mid-trickle
        self.trickled = threading.Event()  # everything was sent: the client waited it out
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.total
            if self.part == "body":
                conn.sendall(head)
            data = head + b"x" * self.total if self.part == "head" else b"x" * self.total
            try:
                for byte in data:
                    conn.sendall(bytes([byte]))
                    if self.stop.wait(self.gap):
                        return
            except OSError:
                self.cut_off.set()
                return
            self.trickled.set()

    def close(self) -> None:
        self.stop.set()
        self.server.close()
        self.thread.join(timeout=10)


@pytest.mark.parametrize("part", ["head", "body"])
def test_a_trickling_answer_is_cut_off_at_the_timeout(part: str) -> None:
    trickler = Trickler(part=part)  # 400 bytes at 20 a second: 20 s, against a 1 s timeout
    try:
        client = OutboundClient(policy=LENIENT)
        with pytest.raises(TransportTimeout):
            client.request("GET", trickler.url + "/slow", timeout=1)
        assert client.exchanges[0]["error_class"] == "timeout"
        assert not trickler.trickled.is_set()  # the attempt ended long before the trickle would
        assert trickler.cut_off.wait(10)  # and its connection was closed, not left open
    finally:
        trickler.close()
