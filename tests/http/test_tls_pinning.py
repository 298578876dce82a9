"""Pinning over real TLS: the client connects to the address it checked, yet the TLS handshake
still sends the host name (SNI) and verifies the certificate against it. A loopback HTTPS
server with certificates made here (a test CA, a leaf for one name) plays the CRM; the resolver
is the client's own hook, so no DNS is involved."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bridge.outbound.client import OutboundClient
from bridge.outbound.policy import OutboundPolicy
from crm_adapters.errors import TransportError

NAME = "crm.pinned.test"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(value: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(value, x509.Certificate):
        return value.public_bytes(serialization.Encoding.PEM)
    return value.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class TlsCrm:
    """A loopback HTTPS server whose certificate is valid for ``NAME`` only (issued by a CA the
    test trusts through ``ca_file``). Records the SNI and Host of each request."""

    ca_file: Path
    port: int
    server_names: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


def make_certificates(folder: Path) -> tuple[Path, Path]:
    """A test CA (``ca.pem``) and a leaf for ``NAME`` it issued, with its key (``leaf.pem``)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = _key(), _key()
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("crm-bridge test CA"))
        .issuer_name(_name("crm-bridge test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(NAME))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(_pem(ca))
    (folder / "leaf.pem").write_bytes(_pem(leaf) + _pem(leaf_key))
    return folder / "ca.pem", folder / "leaf.pem"


@pytest.fixture
def tls_crm(tmp_path: Path) -> Iterator[TlsCrm]:
    ca_file, leaf_file = make_certificates(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf_file)
    state = TlsCrm(ca_file=ca_file, port=0)
    context.sni_callback = lambda _sock, server_name, _ctx: state.server_names.append(server_name)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hosts.append(self.headers.get("Host", ""))
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def client_for(tls_crm: TlsCrm) -> OutboundClient:
    """Every name resolves to loopback (the pinned address); the test CA is trusted."""
    client = OutboundClient(
        policy=OutboundPolicy(allow_private=True), resolver=lambda _host, _port: [ipaddress.ip_address("127.0.0.1")]
    )
    client.session.verify = str(tls_crm.ca_file)
    return client


def test_the_pinned_connection_keeps_the_name_for_sni_host_and_the_certificate(tls_crm: TlsCrm) -> None:
    response = client_for(tls_crm).request("GET", f"https://{NAME}:{tls_crm.port}/api")
    assert response.status == 200 and response.json() == {"ok": True}
    assert tls_crm.server_names == [NAME]
    assert tls_crm.hosts == [f"{NAME}:{tls_crm.port}"]


def test_a_certificate_for_another_name_is_refused_even_at_the_pinned_address(tls_crm: TlsCrm) -> None:
    """The same server and address under a name its certificate does not cover: the check must
    be made against the name, not skipped because we connected to an IP."""
    client = client_for(tls_crm)
    with pytest.raises(TransportError):
        client.request("GET", f"https://other.pinned.test:{tls_crm.port}/api")
    assert tls_crm.hosts == []
    (exchange,) = client.exchanges
    assert exchange["address"] == "127.0.0.1" and exchange["error_class"] == "connection_error"
