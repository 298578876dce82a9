"""The welcome mail (CONTRACT.md §7): queued through the outbox, sent by the worker.

``queue_welcome`` is the producer (the inbound ``add`` calls it): it writes a ``mail.welcome`` row
in the caller's transaction, so a mail server that is down never fails or slows a webhook.
``send_welcome`` is that row's job handler: it makes the login link at send time (the 72 hours
start when the mail leaves), renders a plain-text and an HTML alternative, and hands the message
to the transport named by ``BRIDGE_MAIL_URL``:

- ``smtp://[user:pass@]host[:port]``: STARTTLS whenever the server offers it; credentials are
  only sent over TLS (or to a loopback server).
- ``smtps://[user:pass@]host[:port]``: implicit TLS.
- unset: each message is written as an ``.eml`` file under ``<instance>/mail/``.

Failures are typed like CRM failures so the worker retries mail exactly as it retries pushes:
a server that is down, times out or answers 4xx raises a retryable error (``TransportError``,
``TransportTimeout``, ``CrmUnavailable``); a 5xx about this message (sender, recipient, data)
raises ``CrmRejected`` and wrong credentials ``AuthRefused``, both final. Credentials never
appear in an error, a log line or an attempt row.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import smtplib
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import current_app, has_request_context, render_template, request

from bridge.accounts.login_links import make_login_token
from bridge.delivery import outbox
from bridge.delivery.jobs import JobContext, job_handler
from bridge.extensions import db
from bridge.models import Connection, Delivery, User, utcnow
from bridge.outbound.redaction import scrub_text
from crm_adapters.errors import (
    AdapterError,
    AuthRefused,
    CrmRejected,
    CrmUnavailable,
    TransportError,
    TransportTimeout,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:5000"
SMTP_TIMEOUT_SECONDS = 20.0
DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
REPLY_EXCERPT_CHARS = 200


# -- producer ---------------------------------------------------------------------------------


def queue_welcome(user: User, connection: Connection | None = None, *, base_url: str | None = None) -> Delivery:
    """Queue the welcome mail for ``user`` in the current transaction (never commits).

    The link's base URL is remembered now, while there is a request to take it from;
    ``BRIDGE_BASE_URL``, when set, wins at send time.
    """
    if base_url is None and has_request_context():
        base_url = request.url_root
    if user.id is None:
        db.session.flush()
    return outbox.enqueue(
        outbox.MAIL_WELCOME,
        user=user,
        connection=connection,
        payload=_payload(user.id, base_url),
        ordering=_lane(user.id),
    )


def queue_welcome_many(user_ids: Sequence[int], connection_id: int | None) -> None:
    """``queue_welcome`` for many users at once, in one insert (a batch import's page; no
    request, so the link's base URL is ``BRIDGE_BASE_URL`` at send time)."""
    now = utcnow()
    rows = [
        {
            **outbox.new_row(
                outbox.MAIL_WELCOME,
                connection_id=connection_id,
                user_id=user_id,
                payload=_payload(user_id, None),
                now=now,
            ),
            "ordering_key": _lane(user_id),
        }
        for user_id in user_ids
    ]
    outbox.insert_rows(rows)


def _payload(user_id: int, base_url: str | None) -> dict[str, Any]:
    return {"user_id": user_id, "base_url": base_url.rstrip("/") if base_url else None}


def _lane(user_id: int) -> str:
    return f"mail:{user_id}"  # never queued behind a CRM push that is failing


# -- transport --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MailTransport:
    """Where mail goes, parsed from ``BRIDGE_MAIL_URL``. ``describe()`` is the only form that
    may be shown or stored: it has no credentials."""

    scheme: str  # "smtp", "smtps" or "file"
    host: str = ""
    port: int = 0
    username: str | None = None
    password: str | None = None

    def describe(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}" if self.scheme != "file" else "file"

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.username) if s)


def parse_mail_url(url: str | None) -> MailTransport:
    """``None`` or empty means the ``.eml`` folder. Raises ``ValueError`` (without the URL,
    which may hold a password) for anything else that is not an SMTP URL."""
    if not url:
        return MailTransport("file")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("BRIDGE_MAIL_URL must look like smtp://host:port or smtps://user:pass@host:port")
    return MailTransport(
        scheme=scheme,
        host=parts.hostname,
        port=parts.port or DEFAULT_PORTS[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:REPLY_EXCERPT_CHARS]


def _by_reply_code(code: int, reply: bytes | str, what: str) -> AdapterError:
    message = f"{what}: SMTP {code} {_reply_text(reply)}".strip()
    if 400 <= code < 500:
        return CrmUnavailable(message)
    if 500 <= code < 600:
        return CrmRejected(message)
    return TransportError(message)


def smtp_failure(exc: BaseException, transport: MailTransport) -> AdapterError:
    """Translate an smtplib / socket failure into the typed error the worker understands."""
    where = transport.describe()
    error: AdapterError
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()), (550, b""))
        error = _by_reply_code(code, reply, f"{where} refused the recipient")
    elif isinstance(exc, smtplib.SMTPAuthenticationError):
        error = AuthRefused(f"{where} refused the login: SMTP {exc.smtp_code}")
    elif isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPHeloError):
        # The server turned the connection away, not this message: worth trying again later.
        error = CrmUnavailable(f"{where} refused the session: SMTP {exc.smtp_code} {_reply_text(exc.smtp_error)}")
    elif isinstance(exc, smtplib.SMTPResponseException):
        error = _by_reply_code(exc.smtp_code, exc.smtp_error, f"{where} refused the message")
    elif isinstance(exc, smtplib.SMTPNotSupportedError):
        error = CrmRejected(f"{where}: {exc}")  # e.g. credentials configured, but no AUTH offered
    elif isinstance(exc, TimeoutError):
        error = TransportTimeout(f"{where} timed out")
    elif isinstance(exc, ssl.SSLError):
        error = TransportError(f"TLS with {where} failed: {exc.__class__.__name__}")
    elif isinstance(exc, smtplib.SMTPServerDisconnected):
        error = TransportError(f"{where} closed the connection")
    elif isinstance(exc, OSError):
        error = TransportError(f"cannot reach mail server {where}: {exc.strerror or exc.__class__.__name__}")
    else:
        error = TransportError(f"sending through {where} failed: {exc.__class__.__name__}")
    error.message = scrub_text(error.message, transport.secrets())
    error.args = (error.message,)
    return error


def send_smtp(message: EmailMessage, transport: MailTransport) -> None:
    """Hand ``message`` to an SMTP server. Raises the typed errors of ``smtp_failure``."""
    context = ssl.create_default_context()
    client: smtplib.SMTP | None = None
    try:
        if transport.scheme == "smtps":
            client = smtplib.SMTP_SSL(transport.host, transport.port, timeout=SMTP_TIMEOUT_SECONDS, context=context)
        else:
            client = smtplib.SMTP(transport.host, transport.port, timeout=SMTP_TIMEOUT_SECONDS)
        client.ehlo()
        encrypted = transport.scheme == "smtps"
        if not encrypted and client.has_extn("starttls"):
            client.starttls(context=context)
            client.ehlo()
            encrypted = True
        if transport.username:
            if not encrypted and not _is_loopback(transport.host):
                raise CrmRejected(f"{transport.describe()} offers no TLS: refusing to send the credentials in clear")
            client.login(transport.username, transport.password or "")
        client.send_message(message)
    except AdapterError:
        raise
    except Exception as exc:
        raise smtp_failure(exc, transport) from None  # the chained exception could carry a reply
    finally:
        if client is not None:
            _quit_quietly(client)


def _quit_quietly(client: smtplib.SMTP) -> None:
    """The message is accepted once DATA is answered 250; a failing QUIT must not make the
    worker retry (and send it twice)."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def write_eml(message: EmailMessage, directory: Path, stem: str) -> Path:
    """Write ``message`` as ``<directory>/<stem>.eml`` (mode 0600: it carries a login link),
    atomically, so a reader watching the folder never sees half a message."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{stem}.eml"
        partial = directory / f".{stem}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(message.as_bytes())
        os.replace(partial, target)
    except OSError as exc:
        raise TransportError(f"cannot write the mail file: {exc.strerror or exc.__class__.__name__}") from exc
    return target


# -- the welcome message ----------------------------------------------------------------------


def _one_line(value: str | None) -> str:
    """Names come from CRMs: no line breaks may reach a header."""
    return " ".join((value or "").split())


def link_base_url(payload: dict[str, Any]) -> str:
    configured = current_app.config.get("BRIDGE_BASE_URL")
    return (configured or payload.get("base_url") or DEFAULT_BASE_URL).rstrip("/")


def login_link(user: User, base_url: str | None = None) -> str:
    """A fresh one-time login link for ``user`` (``crm-bridge user login-link``): on
    ``BRIDGE_BASE_URL`` when set, else on ``base_url``."""
    return f"{link_base_url({'base_url': base_url})}/login/{make_login_token(user)}"


def mail_domain(base_url: str) -> str:
    """The domain for the default sender and the Message-ID: the site's host when it is a
    name, else ``localhost`` (an IP address is not a valid mail domain)."""
    host = urlsplit(base_url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host if "." in host else "localhost"
    return "localhost"


def build_welcome_message(user: User, *, link: str, site_name: str, sender: str, message_id: str) -> EmailMessage:
    """The welcome mail: plain text first, HTML alternative. It names the site and the
    username and carries the link; it never carries a password."""
    greeting_name = _one_line(user.first_name) or user.username
    context = {"user": user, "link": link, "site_name": site_name, "greeting_name": greeting_name}
    message = EmailMessage()
    message["Subject"] = f"Welcome to {_one_line(site_name)}: set your password"
    message["From"] = sender
    display_name = _one_line(f"{user.first_name} {user.last_name}")
    message["To"] = Address(display_name=display_name, addr_spec=user.email)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(render_template("mail/welcome.txt", **context))
    message.add_alternative(render_template("mail/welcome.html", **context), subtype="html")
    return message


def welcome_message_id(delivery: Delivery, domain: str) -> str:
    """Stable per delivery, so a receiver can drop the copy an at-least-once retry may send."""
    stamp = int((delivery.created_at or utcnow()).timestamp())
    return f"<welcome.{delivery.id}.{stamp}@{domain}>"


@job_handler(outbox.MAIL_WELCOME)
def send_welcome(ctx: JobContext) -> dict[str, Any]:
    """Send one ``mail.welcome`` row. Returns what was sent (never the link or a password)."""
    payload = ctx.delivery.payload or {}
    user = ctx.user or db.session.get(User, payload.get("user_id") or ctx.delivery.user_id)
    if user is None:
        return {"skipped": "the user no longer exists"}
    config = current_app.config
    base_url = link_base_url(payload)
    domain = mail_domain(base_url)
    site_name = config.get("BRIDGE_SITE_NAME") or "crm-bridge"
    sender = config.get("BRIDGE_MAIL_FROM") or str(Address(_one_line(site_name), "no-reply", domain))
    message = build_welcome_message(
        user,
        link=login_link(user, base_url),
        site_name=site_name,
        sender=sender,
        message_id=welcome_message_id(ctx.delivery, domain),
    )
    try:
        transport = parse_mail_url(config.get("BRIDGE_MAIL_URL"))
    except ValueError as exc:
        raise CrmRejected(str(exc)) from None
    return _deliver(ctx, message, transport, recipient=user.email)


def _deliver(ctx: JobContext, message: EmailMessage, transport: MailTransport, *, recipient: str) -> dict[str, Any]:
    """Send through ``transport`` and record the exchange (headers only: the body holds the
    link) where the worker collects attempt details."""
    exchange: dict[str, Any] = {
        "method": "SMTP" if transport.scheme != "file" else "FILE",
        "url": transport.describe(),
        "request_headers": {name: str(message[name]) for name in ("From", "To", "Subject", "Message-ID")},
        "request_body": "[message body not recorded: it carries a login link]",
    }
    ctx.http.exchanges.append(exchange)
    started = time.perf_counter()
    result: dict[str, Any] = {"transport": transport.scheme, "to": recipient, "message_id": str(message["Message-ID"])}
    try:
        if transport.scheme == "file":
            stem = f"{utcnow():%Y%m%dT%H%M%S}-welcome-{ctx.delivery.id}-{secrets.token_hex(4)}"
            path = write_eml(message, Path(current_app.instance_path) / "mail", stem)
            result["file"] = path.name
        else:
            send_smtp(message, transport)
            result["server"] = transport.describe()
    except AdapterError as error:
        exchange["error_class"] = error.error_class
        exchange["error"] = error.message
        log.warning("welcome mail for delivery %s not sent: %s", ctx.delivery.id, error.message)
        raise
    finally:
        exchange["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
    exchange["status"] = 250
    log.info("welcome mail for delivery %s sent via %s", ctx.delivery.id, transport.describe())
    return result
