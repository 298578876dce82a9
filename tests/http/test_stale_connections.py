"""A kept connection the CRM closes as the next request arrives (``bridge.outbound.stale_connections``),
against a real loopback server: an idempotent request is sent again once on a new connection,
a POST is not, and neither is a request the deadline cut off."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_tls_pinning import NAME, make_certificates

from bridge.outbound.client import OutboundClient, OutboundPolicy
from bridge.outbound.kept_clients import OutboundClients
from crm_adapters.errors import TransportError, TransportTimeout

LENIENT = OutboundPolicy(allow_private=True)
ANSWER = b'{"id": 42}'


@dataclass
class KeepThenClose:
    """An HTTP/1.1 server that answers the first request of every connection and keeps the
    connection open; the connection's second request is read and then, unanswered, the
    connection is closed (``close="fin"``), reset (``"rst"``, as a middlebox that forgot the
    connection answers) or left waiting (``"stall"``, until the test ends). ``"at-once"``
    closes every connection at its first request, unanswered."""

    close: str
    tls: ssl.SSLContext | None = None  # serve HTTPS with this context
    sock: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    requests: list[tuple[int, str]] = field(default_factory=list)  # (connection number, method)
    release: threading.Event = field(default_factory=threading.Event)
    _connections: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    @property
    def tls_url(self) -> str:
        return f"https://{NAME}:{self.sock.getsockname()[1]}"

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed at the end of the test
                return
            self._connections += 1
            threading.Thread(target=self._serve, args=(conn, self._connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                return
        with conn:
            for index in range(2):
                method = _read_request(conn)
                if method is None:
                    return
                self.requests.append((number, method))
                if index == 0 and self.close != "at-once":
                    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(ANSWER)}\r\n\r\n"
                    conn.sendall(head.encode() + ANSWER)
                    continue
                if self.close == "rst":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif self.close == "stall":
                    self.release.wait(10)
                return


def _read_request(conn: socket.socket) -> str | None:
    """One request (head and ``Content-Length`` body); its method, None at end of stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return lines[0].split(" ", 1)[0]


@pytest.fixture
def crm(request: pytest.FixtureRequest) -> Iterator[KeepThenClose]:
    server = KeepThenClose(close=request.param)
    server.start()
    yield server
    server.release.set()
    server.sock.close()


@pytest.mark.parametrize("crm", ["fin", "rst"], indirect=True)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_an_idempotent_request_on_a_kept_connection_the_crm_closed_is_sent_again_on_a_new_one(
    crm: KeepThenClose, method: str
) -> None:
    """The inbound CRM read and the worker's deliveries reuse a thread's client
    (``OutboundClients``): the second use meets the connection the CRM dropped."""
    clients = OutboundClients(LENIENT)
    first = clients.checkout(1, ()).request(method, crm.url + "/contacts/42")
    client = clients.checkout(1, ())
    second = client.request(method, crm.url + "/contacts/42")
    assert (first.status, second.status) == (200, 200)
    assert second.body == ANSWER
    assert crm.requests == [(1, method), (1, method), (2, method)]  # once more, on a new connection
    (exchange,) = client.exchanges  # one exchange recorded, as it succeeded
    assert exchange["status"] == 200 and "error_class" not in exchange
    clients.close_all()


@pytest.mark.parametrize("close", ["fin", "rst"])
def test_over_tls_too(tmp_path: Path, close: str) -> None:
    """A CRM's API is HTTPS: the TLS connection class knows it was kept as well."""
    ca_file, leaf_file = make_certificates(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf_file)
    crm = KeepThenClose(close=close, tls=context)
    crm.start()
    client = OutboundClient(policy=LENIENT, resolver=lambda _host, _port: [ipaddress.ip_address("127.0.0.1")])
    client.session.verify = str(ca_file)
    try:
        statuses = [client.request("GET", crm.tls_url + "/contacts/42").status for _ in range(2)]
    finally:
        crm.release.set()
        crm.sock.close()
    assert statuses == [200, 200]
    assert crm.requests == [(1, "GET"), (1, "GET"), (2, "GET")]


@pytest.mark.parametrize("crm", ["fin", "rst"], indirect=True)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_post_on_a_kept_connection_the_crm_closed_is_not_sent_again(crm: KeepThenClose, method: str) -> None:
    """The CRM may have acted on it before the connection went: the delivery layer decides
    (the next attempt, with the same ``Idempotency-Key``)."""
    client = OutboundClient(policy=LENIENT)
    assert client.request(method, crm.url + "/contacts", json={"email": "a@example.com"}).status == 200
    with pytest.raises(TransportError) as raised:
        client.request(method, crm.url + "/contacts", json={"email": "a@example.com"})
    assert not isinstance(raised.value, TransportTimeout)
    assert crm.requests == [(1, method), (1, method)]
    assert client.exchanges[1]["error_class"] == raised.value.error_class


@pytest.mark.parametrize("crm", ["stall"], indirect=True)
def test_a_read_the_deadline_cut_off_on_a_kept_connection_is_not_sent_again(crm: KeepThenClose) -> None:
    """The deadline shuts the socket, which then reads as a closed connection: a timeout, and
    a CRM too slow to answer does not get the request twice."""
    client = OutboundClient(policy=LENIENT)
    assert client.request("GET", crm.url + "/contacts/42").status == 200
    with pytest.raises(TransportTimeout):
        client.request("GET", crm.url + "/contacts/42", timeout=0.3)
    assert crm.requests == [(1, "GET"), (1, "GET")]


@pytest.mark.parametrize("crm", ["at-once"], indirect=True)
def test_a_new_connection_the_crm_closes_is_not_tried_again(crm: KeepThenClose) -> None:
    """Only a kept connection is suspected of having gone stale while idle: a new one that
    closes unanswered is the CRM failing, reported at once."""
    client = OutboundClient(policy=LENIENT)
    with pytest.raises(TransportError):
        client.request("GET", crm.url + "/contacts/42")
    assert crm.requests == [(1, "GET")]
