"""The welcome mail through the real pipeline: an inbound ``add`` with ``send_notification``
queues it, the delivery worker sends it, and a mail server that is down at first gets it on the
retry (CONTRACT.md §3, §5, §7)."""

from __future__ import annotations

import json

from sqlalchemy import select

from bridge.delivery import deliveries, outbox
from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db
from bridge.models import Delivery, User


def run_worker_once(app) -> None:
    DeliveryWorker(app).run(once=True)


def delivery_state(app, delivery_id: int) -> tuple[str, list[str | None]]:
    with app.app_context():
        row = db.session.get(Delivery, delivery_id)
        return row.status, [attempt.error_class for attempt in row.attempt_log]


def add_with_notification(client, key: str, notify: str) -> dict:
    body = {"id": 501, "email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper"}
    response = client.post(
        f"/?wpf_action=add&access_key={key}&send_notification={notify}",
        data=json.dumps(body),
        content_type="application/json",
    )
    assert response.status_code == 200, response.json
    return response.json


def mail_rows(app) -> list[Delivery]:
    with app.app_context():
        return list(db.session.scalars(select(Delivery).where(Delivery.kind == outbox.MAIL_WELCOME)))


def test_send_notification_false_queues_no_mail(app, client, make_connection):
    key = make_connection()
    assert add_with_notification(client, key, "false")["notification_sent"] is False
    assert mail_rows(app) == []


def test_an_inbound_add_mails_the_user_through_the_worker(app, client, make_connection, smtp_server, find_link):
    server = smtp_server()
    app.config["BRIDGE_MAIL_URL"] = f"smtp://127.0.0.1:{server.port}"
    key = make_connection()
    answer = add_with_notification(client, key, "true")
    assert answer["notification_sent"] is True
    [row] = mail_rows(app)

    run_worker_once(app)

    assert delivery_state(app, row.id) == ("succeeded", [None])
    [received] = server.handler.messages
    with app.app_context():
        user = db.session.get(User, answer["user_id"])
        assert received.message["To"].addresses[0].addr_spec == user.email
    assert "/login/" in find_link(received.message)


def test_a_mail_server_down_at_first_gets_the_mail_on_the_retry(app, make_user, queue_mail, smtp_server):
    server = smtp_server(start=False)  # nothing listens yet: connection refused
    app.config["BRIDGE_MAIL_URL"] = f"smtp://127.0.0.1:{server.port}"
    delivery_id = queue_mail(make_user().id)

    run_worker_once(app)
    assert delivery_state(app, delivery_id) == ("failed", ["connection_error"])  # will retry
    assert server.handler.messages == []

    server.start()
    with app.app_context():  # the retry is due (rather than waiting out the 5 s backoff)
        deliveries.retry_delivery(delivery_id)
        db.session.commit()
    run_worker_once(app)

    assert delivery_state(app, delivery_id) == ("succeeded", ["connection_error", None])
    assert len(server.handler.messages) == 1
