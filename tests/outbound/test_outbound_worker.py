"""The worker: dispatch, wake-up latency, handler bugs, the push handlers (with ``responses``),
attempt recording, and when the inline worker starts."""

from __future__ import annotations

import json
import threading

import pytest
import responses
from sqlalchemy import select
from support import ECHO_CRM as CRM
from support import load_delivery

from bridge import crypto
from bridge.accounts import registration, users
from bridge.delivery import outbox
from bridge.delivery.inline_worker import EXTENSION_KEY
from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db
from bridge.models import Connection, Delivery, User

SECRET = "echo-secret-key-123"


def picked_up_by_the_wake_up(app, queue, behaviour, start_worker, commit) -> bool:
    """Start a worker, let it go idle with a poll of an hour, then ``commit()`` a row: True when
    the worker starts it anyway, which only the in-process wake-up can make it do (no timing:
    the 30 s wait is a deadline for a slow machine, two orders below the poll)."""
    app.config["BRIDGE_WORKER_POLL_SECONDS"] = 3600.0
    picked = threading.Event()

    def record(ctx):
        picked.set()

    worker = start_worker()
    queue()  # warm-up: the worker then goes idle, waiting for a wake-up or the hour's poll
    assert worker.wait_until_processed(1)
    assert worker.waiting.wait(30)
    behaviour.action = record
    commit()
    return picked.wait(30)


def test_an_idle_worker_is_woken_by_a_new_row(app, queue, behaviour, start_worker):
    assert picked_up_by_the_wake_up(app, queue, behaviour, start_worker, queue)


def test_an_idle_worker_is_woken_by_a_job_committed_with_its_log_row(app, queue, behaviour, start_worker):
    """``outbox.commit_job`` (the async accept) commits outside the session's hooks on
    PostgreSQL: it wakes this process's workers itself."""
    from bridge.inbound.log import EVENTS, InboundLogEntry, row_values

    log_row = row_values(InboundLogEntry("POST", "/?wpf_action=update&async=true", "192.0.2.1"))
    job_ids = []

    def commit_job() -> None:
        with app.app_context():
            job_ids.append(
                outbox.commit_job("test.job", connection_id=None, payload={}, dedupe_key="k", along=(EVENTS, log_row))
            )

    assert picked_up_by_the_wake_up(app, queue, behaviour, start_worker, commit_job)
    assert behaviour.seen[-1] == job_ids[0]


def test_a_handler_bug_is_recorded_and_retried_and_the_worker_goes_on(app, queue, behaviour, start_worker):
    def explode(ctx):
        if ctx.delivery.payload.get("n") == 1:
            raise KeyError("oops")
        return {"fine": True}

    behaviour.action = explode
    worker = start_worker(concurrency=2)
    broken, fine = queue(n=1), queue(n=2)
    assert worker.wait_until_processed(2)
    failed = load_delivery(app, broken)
    assert failed.status == "failed" and failed.last_error == "internal_error: KeyError: 'oops'"
    assert failed.attempt_log[0].error_class == "internal_error"
    assert load_delivery(app, fine).status == "succeeded"


def test_an_unknown_kind_goes_dead(app, queue, start_worker):
    worker = start_worker()
    row = queue(kind="nobody.handles.this")
    assert worker.wait_until_processed(1)
    assert load_delivery(app, row).status == "dead"


def test_once_mode_delivers_what_is_due_and_returns(app, queue, behaviour):
    ids = [queue(ordering="lane") for _ in range(3)] + [queue()]
    processed = DeliveryWorker(app, concurrency=4).run(once=True)
    assert processed == 4
    lane = [seen for seen in behaviour.seen if seen in ids[:3]]
    assert lane == ids[:3]  # the lane went in order
    assert {load_delivery(app, i).status for i in ids} == {"succeeded"}


@responses.activate
def test_registration_push_links_the_contact_applies_tags_and_records_the_attempt(app, echo_connection):
    echo_connection(assign_tags=["vip"], field_map={"first_name": "fname", "email": "email", "plan": "plan_level"})
    responses.post(f"{CRM}/contacts", json={"id": 42})
    responses.post(f"{CRM}/contacts/42/tags", json={})
    with app.app_context():
        user = registration.register_user(email="ada@example.com", first_name="Ada", meta={"plan": "gold"})
        db.session.commit()
        user_id = user.id
    assert DeliveryWorker(app).run(once=True) == 1

    sent = json.loads(responses.calls[0].request.body)
    assert sent == {"email": "ada@example.com", "fname": "Ada", "plan_level": "gold", "event": "user.registered"}
    assert json.loads(responses.calls[1].request.body) == {"tags": ["vip"]}
    with app.app_context():
        delivery = db.session.scalar(select(Delivery))
        assert all(c.request.headers["Idempotency-Key"] == str(delivery.id) for c in responses.calls)
        assert users.contact_id_for(db.session.get(User, user_id), delivery.connection) == "42"
        [attempt] = delivery.attempt_log
        assert (attempt.method, attempt.url, attempt.status_code) == ("POST", f"{CRM}/contacts/42/tags", 200)
        assert len(attempt.exchanges) == 2 and SECRET not in json.dumps(attempt.exchanges)
        assert delivery.result == {"contact_id": "42", "tags_applied": ["vip"]}


@responses.activate
def test_no_tag_call_without_assign_tags(app, echo_connection):
    echo_connection()
    responses.post(f"{CRM}/contacts", json={"id": 5})
    with app.app_context():
        registration.register_user(email="plain@example.com")
        db.session.commit()
    DeliveryWorker(app).run(once=True)
    assert [c.request.url for c in responses.calls] == [f"{CRM}/contacts"]


@responses.activate
def test_profile_update_updates_the_linked_contact(app, echo_connection):
    echo_connection(push_updates=True, push_on_register=False)
    responses.put(f"{CRM}/contacts/77", json={})
    with app.app_context():
        user = registration.register_user(email="bob@example.com", first_name="Bob")
        connection = db.session.scalar(select(outbox.Connection))
        users.link_contact(user, connection, "77")
        user.first_name = "Robert"
        registration.queue_profile_update(user, ["first_name"])
        db.session.commit()
    DeliveryWorker(app).run(once=True)
    [call] = responses.calls
    assert call.request.method == "PUT" and json.loads(call.request.body)["first_name"] == "Robert"


@responses.activate
def test_a_returned_password_is_sent_redacted_in_the_log_and_wiped(app, echo_connection):
    echo_connection()
    responses.put(f"{CRM}/contacts/9", json={})
    password = "Generated1234Pw"
    with app.app_context():
        user = users.create_user(email="pw@example.com")
        connection = db.session.scalar(select(outbox.Connection))
        row = outbox.enqueue(
            outbox.PASSWORD_RETURN,
            connection=connection,
            user=user,
            payload={"field": "login_code", "password": crypto.encrypt(password), "contact_id": "9"},
        )
        db.session.commit()
        row_id = row.id
    DeliveryWorker(app).run(once=True)
    assert json.loads(responses.calls[0].request.body) == {"login_code": password}
    delivery = load_delivery(app, row_id)
    assert delivery.status == "succeeded" and "password" not in delivery.payload
    assert password not in json.dumps(delivery.attempt_log[0].exchanges)


@responses.activate
def test_a_rejected_password_return_is_dead_and_wiped_too(app, echo_connection):
    echo_connection()
    responses.put(f"{CRM}/contacts/9", status=400, json={"message": "no such field"})
    with app.app_context():
        user = users.create_user(email="pw2@example.com")
        connection = db.session.scalar(select(outbox.Connection))
        payload = {"field": "f", "password": crypto.encrypt("Another1234Pw"), "contact_id": "9"}
        row_id = outbox.enqueue(outbox.PASSWORD_RETURN, connection=connection, user=user, payload=payload).id
        db.session.commit()
    DeliveryWorker(app).run(once=True)
    delivery = load_delivery(app, row_id)
    assert delivery.status == "dead" and delivery.payload == {"field": "f", "contact_id": "9"}
    assert delivery.attempt_log[0].error_class == "crm_rejected"


def test_a_refused_connection_is_retried(app, echo_adapter, make_connection):
    import socket

    with socket.socket() as probe:  # a port with nothing listening: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    make_connection("echo", "echocrm", base_url=f"http://127.0.0.1:{port}", api_key="k" * 12)
    with app.app_context():
        registration.register_user(email="down@example.com")
        db.session.commit()
    DeliveryWorker(app).run(once=True)
    with app.app_context():
        delivery = db.session.scalar(select(Delivery))
        assert delivery.status == "failed" and delivery.last_error.startswith("connection_error")


@pytest.mark.parametrize("setting", ["inline", "off"])
def test_the_inline_worker_starts_on_the_first_request_only_when_asked(app_config, setting):
    from bridge import create_app

    inline_app = create_app({**app_config, "BRIDGE_WORKER": setting})
    with inline_app.app_context():
        db.create_all()
    result = inline_app.test_cli_runner().invoke(args=["bridge", "deliveries", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert EXTENSION_KEY not in inline_app.extensions  # CLI commands never start it
    inline_app.test_client().get("/healthz")
    started = inline_app.extensions.get(EXTENSION_KEY)
    try:
        assert (started is not None) == (setting == "inline")
        if started is not None:
            assert started.inline and started._thread.is_alive()
    finally:
        if started is not None:
            started.stop()
        with inline_app.app_context():
            db.engine.dispose()


ROTATED = "echo-rotated-key-789"


@pytest.fixture
def rotating_connection(app, echo_adapter, echo_connection, monkeypatch) -> str:
    """An echo CRM whose key is replaced during every use (as an OAuth refresh replaces a token)."""
    from bridge.connections.adapter_registry import adapter_types

    class RotatingEchoAdapter(echo_adapter):
        def upsert_contact(self, contact):
            self.config["api_key"] = ROTATED
            return super().upsert_contact(contact)

        def settings_to_store(self):
            return {"api_key": ROTATED} if self.config["api_key"] == ROTATED else {}

    monkeypatch.setitem(adapter_types(), "echocrm", RotatingEchoAdapter)
    return echo_connection()


def stored_key(app, name: str) -> str:
    from bridge.connections.service import get_connection
    from bridge.connections.settings import effective_settings

    with app.app_context():
        return effective_settings(get_connection(name))["api_key"]


@responses.activate
@pytest.mark.parametrize("crm_status", [200, 500])
def test_settings_the_crm_changed_are_stored_whether_or_not_the_push_succeeded(app, rotating_connection, crm_status):
    """A refreshed token must outlive its attempt: a rotated refresh token lost with a failed
    attempt would break the connection for good."""
    responses.post(f"{CRM}/contacts", json={"id": 9}, status=crm_status)
    with app.app_context():
        registration.register_user(email="rot@example.com")
        db.session.commit()
    assert stored_key(app, rotating_connection) == SECRET
    DeliveryWorker(app).run(once=True)
    with app.app_context():
        delivery = db.session.scalar(select(Delivery))
        assert delivery.status == ("succeeded" if crm_status == 200 else "failed")
    assert stored_key(app, rotating_connection) == ROTATED


@responses.activate
def test_settings_the_crm_changed_are_stored_even_if_another_setting_went_bad(app, rotating_connection):
    """The CRM has spent the old token: a setting that became invalid since it was saved (here
    written straight into the row) must not get the new one thrown away."""
    responses.post(f"{CRM}/contacts", json={"id": 9})
    with app.app_context():
        connection = db.session.scalar(select(Connection).where(Connection.name == rotating_connection))
        connection.settings = {**connection.settings, "username_format": "no-such-format"}
        registration.register_user(email="rot@example.com")
        db.session.commit()
    DeliveryWorker(app).run(once=True)
    assert stored_key(app, rotating_connection) == ROTATED
