"""Batch import and push over HTTP against the fake FluentCRM, which paginates its subscriber
listing as the real API does (``tags[]``, ``per_page``, ``page``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fakecrm import FakeFluentCrm, connection_settings
from sqlalchemy import func, select

from bridge.extensions import db
from bridge.models import ContactLink, Delivery, User, UserTag

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True, "BRIDGE_WORKER_POLL_SECONDS": 0.02}


def seed(fake: FakeFluentCrm, tagged: int, untagged: int, tag: str = "promo") -> None:
    fake._create_tag(tag)
    for number in range(tagged):
        fake.seed_contact(f"tagged{number}@example.com", first_name=f"T{number}", tag_slugs=[tag, "vip"])
    for number in range(untagged):
        fake.seed_contact(f"other{number}@example.com", first_name=f"O{number}")


def wait_finished(client, headers, batch_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/batches/{batch_id}", headers=headers).get_json()
        if body["status"] not in ("queued", "running"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} did not finish: {body}")


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model)) or 0


def test_import_of_a_tag_makes_each_user_once_and_writes_nothing_to_the_crm(
    app, client, auth_headers, make_connection, fake_crm, start_worker
):
    seed(fake_crm, tagged=250, untagged=30)
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm, username_format="flname"))
    start_worker(concurrency=2)

    started = client.post(
        "/api/batches", json={"operation": "import", "connection": "fluent", "tag": "promo"}, headers=auth_headers
    )
    assert started.status_code == 202, started.get_json()
    body = wait_finished(client, auth_headers, started.get_json()["id"])

    assert body["status"] == "succeeded"
    assert (body["total"], body["done"], body["created"], body["failed"]) == (250, 250, 250, 0)
    assert count(app, User) == 250
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "tagged7@example.com"))
        assert user.username == "t7"  # the connection's username format, as an inbound add
        assert user.role == "subscriber"
        tags = set(db.session.scalars(select(UserTag.name).where(UserTag.user_id == user.id)))
        assert tags == {"promo", "vip"}
        assert db.session.scalar(select(func.count()).select_from(ContactLink)) == 250
    pages = fake_crm.requests_to("GET", "/subscribers")
    assert [r.query.get("page") for r in pages] == ["1", "2", "3"]
    assert all(r.query.get("per_page") == "100" for r in pages)
    writes = [r for r in fake_crm.requests if r.method != "GET"]
    assert writes == []

    again = client.post(
        "/api/batches", json={"operation": "import", "connection": "fluent", "tag": "promo"}, headers=auth_headers
    )
    rerun = wait_finished(client, auth_headers, again.get_json()["id"])
    assert (rerun["status"], rerun["created"], rerun["unchanged"]) == ("succeeded", 0, 250)
    assert count(app, User) == 250


def test_undo_removes_only_the_unchanged_users_the_import_created(
    app, client, auth_headers, make_connection, fake_crm, start_worker
):
    from bridge.accounts import users

    seed(fake_crm, tagged=12, untagged=0)
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm))
    with app.app_context():  # a user who existed before the import: matched by email, never created
        users.create_user(email="tagged0@example.com", username="before")
        db.session.commit()
    start_worker(concurrency=1)
    started = client.post(
        "/api/batches", json={"operation": "import", "connection": "fluent", "tag": "promo"}, headers=auth_headers
    )
    imported = wait_finished(client, auth_headers, started.get_json()["id"])
    assert (imported["created"], imported["updated"]) == (11, 1)
    with app.app_context():  # someone edits one imported user and tags another
        edited = db.session.scalar(select(User).where(User.email == "tagged1@example.com"))
        edited.first_name = "Changed"
        tagged = db.session.scalar(select(User).where(User.email == "tagged2@example.com"))
        users.replace_tags_for(tagged, None, ["local-tag"])
        db.session.commit()

    undo = client.post(f"/api/batches/{imported['id']}/undo", headers=auth_headers)
    assert undo.status_code == 202
    body = wait_finished(client, auth_headers, undo.get_json()["id"])

    assert (body["operation"], body["status"], body["removed"], body["unchanged"]) == ("undo", "succeeded", 9, 2)
    with app.app_context():
        left = set(db.session.scalars(select(User.email)))
    assert left == {"tagged0@example.com", "tagged1@example.com", "tagged2@example.com"}
    assert len(fake_crm.contacts) == 12  # CRM contacts are never deleted
    assert [r for r in fake_crm.requests if r.method != "GET"] == []


def test_batches_refuse_bad_requests(client, auth_headers, make_connection, fake_crm):
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm))
    cases = [
        ({"operation": "explode", "connection": "fluent"}, 400, "unknown_operation"),
        ({"operation": "import", "connection": "nope"}, 404, "connection_not_found"),
        ({"operation": "import", "connection": "fluent", "role": "administrator"}, 400, "forbidden_role"),
        ({"operation": "import", "connection": "fluent", "role": "ghost"}, 400, "unknown_role"),
        ({"operation": "push", "connection": "fluent", "tag": "x"}, 400, "invalid_parameter"),
        ({"operation": "import", "connection": "fluent", "send_welcome": "yes"}, 400, "invalid_parameter"),
    ]
    for body, status, code in cases:
        answer = client.post("/api/batches", json=body, headers=auth_headers)
        assert (answer.status_code, answer.get_json()["error"]) == (status, code), body
    assert client.get("/api/batches", headers=auth_headers).get_json() == {"items": [], "total": 0, "page": 1}
    assert client.post("/api/batches/99/cancel", headers=auth_headers).status_code == 404
    assert client.get("/api/batches").status_code == 401


def test_cancel_stops_a_batch_before_its_next_page(app, client, auth_headers, make_connection, fake_crm, start_worker):
    seed(fake_crm, tagged=250, untagged=0)
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm))
    fake_crm.gate = threading.Event()  # the first listing waits until the batch is cancelled
    start_worker(concurrency=1)
    started = client.post(
        "/api/batches", json={"operation": "import", "connection": "fluent", "tag": "promo"}, headers=auth_headers
    ).get_json()
    assert fake_crm.wait_for(lambda f: bool(f.requests_to("GET", "/tags")))  # resolving the tag

    cancelled = client.post(f"/api/batches/{started['id']}/cancel", headers=auth_headers).get_json()
    fake_crm.gate.set()

    assert cancelled["status"] == "cancelled"
    with app.app_context():
        assert wait_quiet(app)
    body = client.get(f"/api/batches/{started['id']}", headers=auth_headers).get_json()
    assert (body["status"], body["done"]) == ("cancelled", 100)  # the page under way is kept
    with app.app_context():
        pages = db.session.scalar(select(func.count()).select_from(Delivery).where(Delivery.kind == "batch.page"))
    assert pages == 1  # no further page was queued
    assert count(app, User) == 100


def wait_quiet(app, timeout: float = 20) -> bool:
    """Until no outbox row is unfinished (bounded poll: the worker thread writes them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_rows = db.session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.status.in_(("pending", "in_flight", "failed")))
        )
        db.session.rollback()
        if not open_rows:
            return True
        time.sleep(0.05)
    return False
