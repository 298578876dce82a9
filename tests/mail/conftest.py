"""Fixtures for the welcome mail and login links: users, a way to run the mail job as the worker
would, and real SMTP servers (aiosmtpd) on loopback, optionally with STARTTLS, implicit TLS and
AUTH, using a certificate made for 127.0.0.1 that the client is told to trust via SSL_CERT_FILE."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.security import generate_password_hash

from bridge.accounts import passwords, users
from bridge.delivery import jobs, outbox
from bridge.extensions import db
from bridge.models import Delivery, User
from bridge.outbound.client import OutboundClient

SITE_NAME = "Acme Members"
CSRF_FIELD = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
LINK = re.compile(r"https?://[^\s\"<>]+/login/[A-Za-z0-9_.\-]+")


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_SITE_NAME": SITE_NAME}


@dataclass
class NewUser:
    id: int
    email: str
    username: str
    password: str


def cheap_hash(password: str) -> str:
    """A fast hash for fixtures (scrypt costs ~0.2 s a user); check_password reads any method."""
    return generate_password_hash(password, method="pbkdf2:sha256:1000")


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting a password hashes with scrypt (~0.2 s, more on a busy machine); these tests are
    about links, not hash strength, so they hash cheaply. check_password is the real one."""
    monkeypatch.setattr(passwords, "hash_password", cheap_hash)


@pytest.fixture
def make_user(app) -> Callable[..., NewUser]:
    """A committed user with a generated password (as the inbound ``add`` makes them)."""

    def factory(email: str = "ada@example.com", first_name: str = "Ada", last_name: str = "Lovelace") -> NewUser:
        password = passwords.generate_password(16)
        with app.app_context():
            user = users.create_user(
                email=email, first_name=first_name, last_name=last_name, password_hash=cheap_hash(password)
            )
            db.session.commit()
            return NewUser(user.id, user.email, user.username, password)

    return factory


@pytest.fixture
def queue_mail(app) -> Callable[..., int]:
    """Queue the welcome mail for a user (committed) and return the delivery id."""
    from bridge.accounts.welcome_mail import queue_welcome

    def factory(user_id: int, base_url: str | None = None) -> int:
        with app.app_context():
            delivery = queue_welcome(db.session.get(User, user_id), base_url=base_url)
            db.session.commit()
            return delivery.id

    return factory


@dataclass
class JobRun:
    result: dict[str, Any]
    exchanges: list[dict[str, Any]]


@pytest.fixture
def run_mail_job(app) -> Callable[[int], JobRun]:
    """Run the ``mail.welcome`` handler for a delivery the way the worker does: the handler
    found through the registry, a JobContext, the worker's session. Raises what it raises."""

    def run(delivery_id: int) -> JobRun:
        with app.app_context():
            delivery = db.session.get(Delivery, delivery_id)
            assert delivery is not None and delivery.kind == outbox.MAIL_WELCOME
            user = db.session.get(User, delivery.user_id) if delivery.user_id else None
            http = OutboundClient()
            context = jobs.JobContext(delivery=delivery, connection=delivery.connection, user=user, http=http)
            try:
                result = jobs.handler_for(outbox.MAIL_WELCOME)(context)
            finally:
                db.session.rollback()
            return JobRun(result=result or {}, exchanges=http.exchanges)

    return run


@pytest.fixture
def find_link() -> Callable[[EmailMessage], str]:
    """The login link in a received mail's plain-text part."""

    def find(message: EmailMessage) -> str:
        text = message.get_body(preferencelist=("plain",)).get_content()
        found = LINK.search(text)
        assert found, text
        return found.group(0)

    return find


@pytest.fixture
def csrf_from() -> Callable[[str], str]:
    """The CSRF token in a rendered form."""

    def extract(html: str) -> str:
        found = CSRF_FIELD.search(html)
        assert found, html
        return found.group(1)

    return extract


# -- SMTP servers -----------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    tls: bool
    authenticated_as: str | None

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=policy.default)  # type: ignore[return-value]


@dataclass
class RecordingHandler:
    """Keeps what the server accepted; ``refuse_rcpt`` makes it answer RCPT with a 550."""

    refuse_rcpt: bool = False
    messages: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_rcpt:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login.decode() if session.authenticated else None
        self.messages.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                raw=envelope.original_content or envelope.content,
                tls=server.transport.get_extra_info("ssl_object") is not None,
                authenticated_as=login,
            )
        )
        self.arrived.set()
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class SmtpServer:
    port: int
    handler: RecordingHandler
    controller: Controller | None = None

    def start(self, **smtp_options: Any) -> SmtpServer:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **smtp_options)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., SmtpServer]]:
    """``smtp_server(start=True, refuse_rcpt=False, **aiosmtpd options)``; stopped after the test."""
    servers: list[SmtpServer] = []

    def factory(*, start: bool = True, refuse_rcpt: bool = False, **smtp_options: Any) -> SmtpServer:
        server = SmtpServer(port=free_port(), handler=RecordingHandler(refuse_rcpt=refuse_rcpt))
        servers.append(server)
        return server.start(**smtp_options) if start else server

    yield factory
    for server in servers:
        server.stop()


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 (made here: no files checked in)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    files = TlsFiles(folder / "cert.pem", folder / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@pytest.fixture
def trust_test_cert(tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> TlsFiles:
    """Make ``ssl.create_default_context()`` (what bridge.accounts.welcome_mail uses) trust the test certificate."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.cert))
    return tls_files
