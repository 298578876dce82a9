"""End to end: a request queues the welcome mail, the job sends it through a real SMTP server on
loopback, and the link in the received mail sets the user's password once."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import select

from bridge.accounts import passwords
from bridge.accounts.welcome_mail import queue_welcome
from bridge.extensions import db
from bridge.models import Delivery, User

CHOSEN = "a long and private passphrase"


def test_queued_mail_arrives_and_its_link_sets_the_password_once(
    app, client, make_user, run_mail_job, smtp_server, find_link, csrf_from
):
    server = smtp_server()
    app.config["BRIDGE_MAIL_URL"] = f"smtp://127.0.0.1:{server.port}"
    user = make_user(email="Grace@Example.com", first_name="Grace", last_name="Hopper")

    # The inbound `add` queues the mail while handling the CRM's request.
    with app.test_request_context("/?wpf_action=add", base_url="http://localhost"):
        queue_welcome(db.session.get(User, user.id))
        db.session.commit()
    with app.app_context():
        [delivery_id] = db.session.scalars(select(Delivery.id)).all()
    run_mail_job(delivery_id)

    [received] = server.handler.messages
    assert received.rcpt_tos == ["grace@example.com"]
    assert user.password not in received.raw.decode()
    link = urlsplit(find_link(received.message))
    assert f"{link.scheme}://{link.netloc}" == "http://localhost"

    page = client.get(link.path)
    assert page.status_code == 200
    answer = client.post(
        link.path,
        data={"password": CHOSEN, "password_confirm": CHOSEN, "csrf_token": csrf_from(page.get_data(as_text=True))},
    )
    assert answer.status_code == 200
    with app.app_context():
        stored = db.session.get(User, user.id)
        assert passwords.check_password(stored, CHOSEN)
        assert not passwords.check_password(stored, user.password)

    reused = client.get(link.path)
    assert reused.status_code == 410
    assert "already been used" in reused.get_data(as_text=True)
