"""Delivery when a secret was encrypted with another SECRET_KEY: a registration still queues its
push; the attempt fails as a retryable ``secret_unreadable`` that names the setting (no CRM
call, no traceback, no ciphertext), and goes through once the secret is set again."""

from __future__ import annotations

import json
import logging

import responses
from sqlalchemy import select, update
from support import ECHO_CRM as CRM
from support import OTHER_SECRET_KEY, encrypt_with_other_key, load_delivery

from bridge import crypto
from bridge.accounts import registration
from bridge.connections import service as connections
from bridge.connections import settings as connection_settings
from bridge.delivery import outbox
from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db
from bridge.models import Delivery, utcnow

HINT = (
    "encrypted with another SECRET_KEY: restore that key, or set it again with "
    "`crm-bridge connection set echo KEY=VALUE`"
)


def register(app, email: str) -> int:
    with app.app_context():
        registration.register_user(email=email)
        db.session.commit()
        return db.session.scalar(select(Delivery.id).order_by(Delivery.id.desc()))


def make_due(app, delivery_id: int) -> None:
    with app.app_context():
        db.session.execute(update(Delivery).where(Delivery.id == delivery_id).values(next_attempt_at=utcnow()))
        db.session.commit()


@responses.activate
def test_the_push_waits_with_a_clear_retryable_error_until_the_secret_is_set_again(app, echo_connection, caplog):
    echo_connection()
    ciphertext = encrypt_with_other_key(app, "echo", "api_key")["api_key"]
    delivery_id = register(app, "ada@example.com")  # registration does not fail

    caplog.set_level(logging.INFO)
    assert DeliveryWorker(app).run(once=True) == 1
    failed = load_delivery(app, delivery_id)
    assert failed.status == "failed"  # retryable: it will be tried again
    assert failed.last_error == f"secret_unreadable: connection 'echo': api_key cannot be decrypted ({HINT})"
    assert [a.error_class for a in failed.attempt_log] == ["secret_unreadable"]
    assert len(responses.calls) == 0
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a configuration problem"
    assert ciphertext not in caplog.text

    with app.app_context():
        connection_settings.apply_settings(connections.get_connection("echo"), {"api_key": "the-new-api-key-5678"})
        db.session.commit()
    make_due(app, delivery_id)
    responses.post(f"{CRM}/contacts", json={"id": 7})
    assert DeliveryWorker(app).run(once=True) == 1
    assert load_delivery(app, delivery_id).status == "succeeded"
    assert responses.calls[0].request.headers["X-Api-Key"] == "the-new-api-key-5678"


@responses.activate
def test_a_password_to_return_encrypted_with_another_key_is_a_retryable_secret_unreadable(app, echo_connection):
    echo_connection()
    with app.app_context():
        user = registration.register_user(email="pw@example.com")
        db.session.execute(update(Delivery).values(status="succeeded"))  # only the password return runs
        row = outbox.enqueue(
            outbox.PASSWORD_RETURN,
            connection=connections.get_connection("echo"),
            user=user,
            payload={"field": "wp_pass", "contact_id": "7", "password": crypto.encrypt("pw", OTHER_SECRET_KEY)},
        )
        db.session.commit()
        delivery_id = row.id
    assert DeliveryWorker(app).run(once=True) == 1
    failed = load_delivery(app, delivery_id)
    assert failed.status == "failed" and failed.last_error.startswith(
        "secret_unreadable: a stored secret cannot be decrypted with this SECRET_KEY"
    )
    assert len(responses.calls) == 0
    assert "enc:v1:" not in json.dumps(failed.result or {}) and "enc:v1:" not in failed.last_error
