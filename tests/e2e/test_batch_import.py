"""Batch import and push over HTTP against the fake FluentCRM, which paginates its subscriber
listing as the real API does (``tags[]``, ``per_page``, ``page``)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fakecrm import FakeFluentCrm, connection_settings
from sqlalchemy import func, select

from bridge.extensions import db
from bridge.models import ContactLink, User, UserTag

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
