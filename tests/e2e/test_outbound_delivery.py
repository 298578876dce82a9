"""Registration pushes end to end: the API, the outbox, an in-process worker thread and a fake
FluentCRM served over real HTTP on loopback (CONTRACT.md §4, §5)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from fakecrm import APP_PASSWORD, Scripted, connection_settings
from sqlalchemy import select, update

from bridge.extensions import db
from bridge.models import Delivery, utcnow


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True, "BRIDGE_WORKER_POLL_SECONDS": 0.05}


def register(client, auth_headers, email: str, **extra: Any) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    response = client.post("/api/users", json={"email": email, **extra}, headers=auth_headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.get_json()
    return response.get_json(), elapsed


def deliveries_of(app, user_id: int) -> list[Delivery]:
    with app.app_context():
        rows = list(db.session.scalars(select(Delivery).where(Delivery.user_id == user_id).order_by(Delivery.id)))
        for row in rows:
            _ = row.attempt_log  # load before the session closes
        db.session.expunge_all()
        return rows


def test_a_registration_reaches_the_crm(app, client, auth_headers, make_connection, fake_crm, start_worker):
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm, assign_tags=["vip"]))
    worker = start_worker()
    user, _ = register(client, auth_headers, "Ada@Example.com", first_name="Ada", last_name="Lovelace")
    assert worker.wait_until_processed(1)

    [contact] = fake_crm.contacts_by_email("ada@example.com")
    assert (contact["first_name"], contact["last_name"]) == ("Ada", "Lovelace")
    assert contact["tag_slugs"] == ["vip"]
    [delivery] = deliveries_of(app, user["id"])
    assert delivery.status == "succeeded" and delivery.attempts == 1
    assert delivery.result["contact_id"] == str(contact["id"])
    # Every request carried the stable delivery id.
    assert {r.headers.get("Idempotency-Key") for r in fake_crm.requests} == {str(delivery.id)}
    [attempt] = delivery.attempt_log
    assert attempt.status_code == 200 and attempt.error_class is None
    stored = json.dumps(attempt.exchanges)
    assert APP_PASSWORD not in stored and "[redacted]" in stored  # Basic auth header redacted
    shown = client.get(f"/api/users/{user['id']}", headers=auth_headers).get_json()
    assert shown["crm_links"][0]["contact_id"] == str(contact["id"])


def test_a_registration_updates_a_contact_the_crm_already_had_and_leaves_its_status(
    app, client, auth_headers, make_connection, fake_crm, start_worker
):
    """Someone who unsubscribed from the newsletter registers on the site: their one contact
    gets the new name and is linked; it is not duplicated, and not re-subscribed."""
    existing = fake_crm.seed_contact("grace@example.com", first_name="G", status="unsubscribed")
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm))
    worker = start_worker()
    user, _ = register(client, auth_headers, "grace@example.com", first_name="Grace", last_name="Hopper")
    assert worker.wait_until_processed(1)

    [contact] = fake_crm.contacts_by_email("grace@example.com")
    assert contact["id"] == existing["id"]
    assert (contact["first_name"], contact["last_name"], contact["status"]) == ("Grace", "Hopper", "unsubscribed")
    [delivery] = deliveries_of(app, user["id"])
    assert delivery.status == "succeeded" and delivery.result["contact_id"] == str(existing["id"])
    [attempt] = delivery.attempt_log
    assert [e["status"] for e in attempt.exchanges] == [422, 200, 200]  # refused create, look-up, update


def test_a_hanging_or_down_crm_neither_slows_registration_nor_loses_the_push(
    app, client, auth_headers, make_connection, fake_crm, start_worker
):
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm))
    fake_crm.gate = threading.Event()  # the CRM accepts connections but does not answer
    worker = start_worker()
    register(client, auth_headers, "first@example.com")
    assert fake_crm.arrived.wait(5), "the worker never called the CRM"
    # The worker is now stuck inside a CRM call that cannot end before the gate opens: a
    # registration that answers now did not wait for it (an ordering, not a timing).
    register(client, auth_headers, "second@example.com")
    assert not fake_crm.gate.is_set()
    fake_crm.gate.set()
    assert worker.wait_until_processed(2)
    assert fake_crm.contacts_by_email("first@example.com") and fake_crm.contacts_by_email("second@example.com")

    # Down: the CRM answers 503 (no Retry-After): the push is kept for a retry ~5 s later.
    fake_crm.gate = None
    fake_crm.script(Scripted(503, {"message": "maintenance"}, method="POST", path_suffix="/subscribers"))
    third, _ = register(client, auth_headers, "third@example.com")
    assert worker.wait_until_processed(3)
    [failed] = deliveries_of(app, third["id"])
    assert failed.status == "failed" and failed.last_error.startswith("crm_unavailable")
    wait = (failed.next_attempt_at - utcnow()).total_seconds()
    assert 3.0 < wait <= 6.0
    with app.app_context():  # the clock moves on to the scheduled time
        db.session.execute(update(Delivery).where(Delivery.id == failed.id).values(next_attempt_at=utcnow()))
        db.session.commit()
    assert worker.wait_until_processed(4)
    assert deliveries_of(app, third["id"])[0].status == "succeeded"
    assert len(fake_crm.contacts_by_email("third@example.com")) == 1


def test_503_with_retry_after_is_retried_after_that_delay(
    app, client, auth_headers, make_connection, fake_crm, start_worker
):
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm))
    fake_crm.script(Scripted(503, {"message": "busy"}, {"Retry-After": "1"}, method="POST", path_suffix="/subscribers"))
    worker = start_worker()
    user, _ = register(client, auth_headers, "retry@example.com")
    assert worker.wait_until_processed(2, timeout=15)

    posts = fake_crm.requests_to("POST", "/subscribers")
    assert len(posts) == 2
    gap = posts[1].at - posts[0].at
    assert 0.9 <= gap < 4.0  # Retry-After replaced the ~5 s backoff
    [delivery] = deliveries_of(app, user["id"])
    assert delivery.status == "succeeded" and delivery.attempts == 2
    assert [a.status_code for a in delivery.attempt_log] == [503, 200]
    assert delivery.attempt_log[0].error_class == "crm_unavailable"
    assert len(fake_crm.contacts_by_email("retry@example.com")) == 1


def test_a_400_goes_dead_at_once_and_is_replayed_after_the_fix(
    app, client, auth_headers, make_connection, fake_crm, start_worker
):
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm))
    fake_crm.reject_writes_with = 400
    worker = start_worker()
    user, _ = register(client, auth_headers, "rejected@example.com")
    assert worker.wait_until_processed(1)
    [dead] = deliveries_of(app, user["id"])
    assert dead.status == "dead" and dead.attempts == 1
    assert dead.last_error.startswith("crm_rejected")
    listed = client.get("/api/deliveries?status=dead", headers=auth_headers).get_json()
    assert [d["id"] for d in listed["items"]] == [dead.id]

    fake_crm.reject_writes_with = None  # someone fixed the CRM side
    replayed = client.post("/api/deliveries/replay", json={"status": "dead"}, headers=auth_headers).get_json()
    assert replayed["replayed"] == 1
    assert worker.wait_until_processed(2)
    [delivery] = deliveries_of(app, user["id"])
    assert delivery.status == "succeeded" and delivery.attempts == 2
    assert len(fake_crm.contacts_by_email("rejected@example.com")) == 1
