"""The producer side: ``queue_welcome`` writes one ``mail.welcome`` row in the caller's
transaction, and nothing else queues mail."""

from __future__ import annotations

from sqlalchemy import func, select

from bridge.accounts import passwords, users
from bridge.accounts.welcome_mail import queue_welcome
from bridge.delivery import outbox
from bridge.extensions import db
from bridge.models import Delivery


def mail_rows() -> list[Delivery]:
    return list(db.session.scalars(select(Delivery).where(Delivery.kind == outbox.MAIL_WELCOME)))


def test_no_mail_is_queued_when_queue_welcome_is_not_called(ctx):
    # send_notification=false: the inbound service creates the user and does not call queue_welcome.
    users.create_user(email="quiet@example.com", password=passwords.generate_password())
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_queue_welcome_writes_one_row_in_the_callers_transaction(ctx):
    user = users.create_user(email="ada@example.com", first_name="Ada")
    delivery = queue_welcome(user)
    db.session.commit()

    [row] = mail_rows()
    assert row.id == delivery.id
    assert row.status == "pending"
    assert row.user_id == user.id
    assert row.payload == {"user_id": user.id, "base_url": None}
    assert row.ordering_key == f"mail:{user.id}"


def test_a_rolled_back_change_takes_its_mail_with_it(ctx):
    user = users.create_user(email="gone@example.com")
    queue_welcome(user)
    db.session.rollback()
    assert mail_rows() == []


def test_the_requests_address_is_remembered_for_the_link(app):
    with app.test_request_context("/?wpf_action=add", base_url="https://members.example.org"):
        user = users.create_user(email="req@example.com")
        queue_welcome(user)
        db.session.commit()
        [row] = mail_rows()
        assert row.payload["base_url"] == "https://members.example.org"


def test_the_password_never_enters_the_outbox(ctx):
    password = passwords.generate_password()
    user = users.create_user(email="secret@example.com", password=password)
    queue_welcome(user)
    db.session.commit()
    [row] = mail_rows()
    assert password not in repr(row.payload)
