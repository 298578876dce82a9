"""Sending the welcome mail: the ``.eml`` folder, a real SMTP server on loopback (plain,
STARTTLS with AUTH, implicit TLS), retryable and final failures, and no secrets anywhere."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from bridge.accounts import welcome_mail as mail
from bridge.accounts.welcome_mail import parse_mail_url
from crm_adapters.errors import AuthRefused, CrmRejected, TransportError

SITE_NAME = "Acme Members"  # set by this folder's app_config
SMTP_USER = "mailer"
SMTP_PASSWORD = "smtp-Secret-9x7Q"


def check_login(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@pytest.fixture
def mail_to(app):
    """Point the app at a mail URL (the worker reads config at send time)."""

    def point(url: str | None) -> None:
        app.config["BRIDGE_MAIL_URL"] = url

    return point


def assert_is_the_welcome_mail(message: Any, user, find_link) -> str:
    """Headers, both alternatives, the site, the username and the link; never the password."""
    assert message["To"].addresses[0].addr_spec == user.email
    assert message["To"].addresses[0].display_name == "Ada Lovelace"
    assert message["Subject"] == f"Welcome to {SITE_NAME}: set your password"
    assert message["From"].addresses[0].display_name == SITE_NAME
    assert message["Message-ID"].startswith("<welcome.")
    assert message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    link = find_link(message)
    for body in (text, html):
        assert SITE_NAME in body
        assert user.username in body
        assert link in body
    raw = message.as_string()
    assert user.password not in raw
    return link


def test_without_a_mail_url_the_mail_is_written_as_an_eml_file(app, make_user, queue_mail, run_mail_job, find_link):
    user = make_user()
    run = run_mail_job(queue_mail(user.id))

    [path] = (Path(app.instance_path) / "mail").glob("*.eml")
    assert run.result["transport"] == "file"
    assert run.result["file"] == path.name
    assert path.stat().st_mode & 0o777 == 0o600  # it carries a login link
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    link = assert_is_the_welcome_mail(message, user, find_link)
    assert link.startswith("http://127.0.0.1:5000/login/")  # no request, no BRIDGE_BASE_URL
    assert "/login/" not in repr(run.result)  # the link is not stored with the delivery


def test_the_link_uses_the_queuing_requests_address_unless_a_base_url_is_configured(
    app, make_user, queue_mail, run_mail_job, find_link
):
    user = make_user()
    delivery_id = queue_mail(user.id, base_url="https://members.example.org/")
    run_mail_job(delivery_id)
    app.config["BRIDGE_BASE_URL"] = "https://accounts.example.com"
    run_mail_job(delivery_id)

    files = sorted((Path(app.instance_path) / "mail").glob("*.eml"))
    links = [find_link(message_from_bytes(f.read_bytes(), policy=policy.default)) for f in files]
    assert sorted(link.rsplit("/login/", 1)[0] for link in links) == [
        "https://accounts.example.com",
        "https://members.example.org",
    ]


def test_delivery_over_plain_smtp(app, make_user, queue_mail, run_mail_job, smtp_server, mail_to, find_link):
    server = smtp_server()
    mail_to(f"smtp://127.0.0.1:{server.port}")
    user = make_user()
    run = run_mail_job(queue_mail(user.id))

    [received] = server.handler.messages
    assert received.rcpt_tos == [user.email]
    assert received.tls is False  # not offered
    assert_is_the_welcome_mail(received.message, user, find_link)
    assert run.result["server"] == f"smtp://127.0.0.1:{server.port}"
    [exchange] = run.exchanges
    assert exchange["method"] == "SMTP"
    assert exchange["status"] == 250
    assert "/login/" not in repr(exchange)


def test_starttls_is_used_when_offered_and_credentials_go_over_it(
    app, make_user, queue_mail, run_mail_job, smtp_server, mail_to, trust_test_cert, find_link
):
    server = smtp_server(tls_context=trust_test_cert.server_context(), authenticator=check_login, auth_required=True)
    mail_to(f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{server.port}")
    user = make_user()
    run = run_mail_job(queue_mail(user.id))

    [received] = server.handler.messages
    assert received.tls is True
    assert received.authenticated_as == SMTP_USER
    assert_is_the_welcome_mail(received.message, user, find_link)
    assert SMTP_PASSWORD not in repr(run.result) + repr(run.exchanges)


def test_smtps_uses_implicit_tls(app, make_user, queue_mail, run_mail_job, smtp_server, mail_to, trust_test_cert):
    server = smtp_server(
        ssl_context=trust_test_cert.server_context(), authenticator=check_login, auth_require_tls=False
    )
    mail_to(f"smtps://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{server.port}")
    user = make_user()
    run_mail_job(queue_mail(user.id))

    [received] = server.handler.messages
    assert received.tls is True
    assert received.authenticated_as == SMTP_USER


def test_an_untrusted_certificate_is_a_retryable_failure(
    app, make_user, queue_mail, run_mail_job, smtp_server, mail_to, tls_files
):
    # SSL_CERT_FILE is not pointed at the test certificate here: the client must refuse it.
    server = smtp_server(tls_context=tls_files.server_context())
    mail_to(f"smtp://127.0.0.1:{server.port}")
    with pytest.raises(TransportError) as caught:
        run_mail_job(queue_mail(make_user().id))
    assert caught.value.retryable
    assert "TLS" in caught.value.message
    assert server.handler.messages == []


def test_wrong_credentials_are_final_and_never_echoed(
    app, make_user, queue_mail, run_mail_job, smtp_server, mail_to, trust_test_cert, caplog
):
    server = smtp_server(tls_context=trust_test_cert.server_context(), authenticator=check_login, auth_required=True)
    wrong = "Wrong-Password-42"
    mail_to(f"smtp://{SMTP_USER}:{wrong}@127.0.0.1:{server.port}")
    with pytest.raises(AuthRefused) as caught:
        run_mail_job(queue_mail(make_user().id))
    assert not caught.value.retryable
    assert wrong not in str(caught.value)
    assert wrong not in caplog.text
    assert server.handler.messages == []


def test_a_server_that_is_down_is_retried_and_gets_the_mail_later(
    app, make_user, queue_mail, run_mail_job, smtp_server, mail_to, caplog, find_link
):
    server = smtp_server(start=False)  # nothing listens on its port yet
    mail_to(f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{server.port}")
    user = make_user()
    delivery_id = queue_mail(user.id)

    with pytest.raises(TransportError) as caught:
        run_mail_job(delivery_id)
    assert caught.value.retryable
    assert caught.value.error_class == "connection_error"
    assert SMTP_PASSWORD not in str(caught.value) and SMTP_PASSWORD not in caplog.text
    assert str(server.port) in str(caught.value)  # says where it tried

    server.start(authenticator=check_login, auth_require_tls=False)
    run_mail_job(delivery_id)  # the worker's retry
    [received] = server.handler.messages
    assert received.authenticated_as == SMTP_USER  # loopback: login allowed without TLS
    assert_is_the_welcome_mail(received.message, user, find_link)


def test_a_permanent_refusal_of_the_recipient_is_final(app, make_user, queue_mail, run_mail_job, smtp_server, mail_to):
    server = smtp_server(refuse_rcpt=True)
    mail_to(f"smtp://127.0.0.1:{server.port}")
    with pytest.raises(CrmRejected) as caught:
        run_mail_job(queue_mail(make_user().id))
    assert not caught.value.retryable
    assert "550" in caught.value.message


def test_credentials_are_not_sent_in_clear_to_a_remote_server(
    app, make_user, queue_mail, run_mail_job, smtp_server, mail_to, monkeypatch
):
    logins: list[str] = []

    def record_login(server, session, envelope, mechanism, auth_data):
        logins.append(mechanism)
        return check_login(server, session, envelope, mechanism, auth_data)

    server = smtp_server(authenticator=record_login, auth_require_tls=False)  # AUTH offered, no STARTTLS
    monkeypatch.setattr(mail, "_is_loopback", lambda host: False)  # pretend the server is remote
    mail_to(f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{server.port}")
    with pytest.raises(CrmRejected) as caught:
        run_mail_job(queue_mail(make_user().id))
    assert "refusing to send the credentials in clear" in caught.value.message
    assert logins == []
    assert server.handler.messages == []


def test_the_mail_url_is_parsed_and_described_without_credentials():
    transport = parse_mail_url("smtp://user:p%40ss@mail.example.com:587")
    assert (transport.username, transport.password, transport.port) == ("user", "p@ss", 587)
    assert transport.describe() == "smtp://mail.example.com:587"


@pytest.mark.parametrize(
    "url", ["http://u:Pw-123456@mail.example.com", "smtp://u:Pw-123456@", "u:Pw-123456@mail.example.com:25"]
)
def test_a_bad_mail_url_is_refused_without_echoing_it(url):
    with pytest.raises(ValueError) as caught:
        parse_mail_url(url)
    assert "Pw-123456" not in str(caught.value)


def test_a_bad_mail_url_makes_the_job_fail_finally(app, make_user, queue_mail, run_mail_job, mail_to):
    mail_to("ftp://user:hunter2hunter2@example.com")
    with pytest.raises(CrmRejected) as caught:
        run_mail_job(queue_mail(make_user().id))
    assert "hunter2hunter2" not in str(caught.value)


def test_names_from_the_crm_cannot_break_the_headers(app, make_user, queue_mail, run_mail_job, smtp_server, mail_to):
    server = smtp_server()
    mail_to(f"smtp://127.0.0.1:{server.port}")
    user = make_user(email="zoe@example.com", first_name="Zoë\r\nBcc: victim@example.com", last_name="Ångström")
    run_mail_job(queue_mail(user.id))

    [received] = server.handler.messages
    assert received.rcpt_tos == ["zoe@example.com"]
    message = received.message
    assert message["Bcc"] is None
    assert message["To"].addresses[0].display_name == "Zoë Bcc: victim@example.com Ångström"
    assert "Zoë" in message.get_body(preferencelist=("plain",)).get_content()


def test_mail_for_a_deleted_user_is_skipped_not_retried(app, make_user, queue_mail, run_mail_job):
    from bridge.extensions import db
    from bridge.models import User

    user = make_user()
    delivery_id = queue_mail(user.id)
    with app.app_context():
        db.session.delete(db.session.get(User, user.id))
        db.session.commit()
    run = run_mail_job(delivery_id)
    assert run.result == {"skipped": "the user no longer exists"}
    assert not (Path(app.instance_path) / "mail").exists()
