"""Issue 16 items 3-5 end to end, as seen against a real FluentCRM: concurrent registrations that
need a new tag, local tags pushed and recorded, the link written before the tag step, and a
returned password wiped from every file. The fake FluentCRM on loopback creates tags the way
FluentCRM does (slug check, then insert: racing creates both pass; otherwise 422 "slug taken")."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fakecrm import FakeFluentCrm, Scripted, connection_settings
from sqlalchemy import select

from bridge.extensions import db
from bridge.models import ContactLink, Delivery, User


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True, "BRIDGE_WORKER_POLL_SECONDS": 0.05}


def register(client, auth_headers, email: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/api/users", json={"email": email, **extra}, headers=auth_headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def user_view(client, auth_headers, user_id: int) -> dict[str, Any]:
    return client.get(f"/api/users/{user_id}", headers=auth_headers).get_json()


def test_eight_concurrent_registrations_make_one_new_tag_and_eight_tagged_linked_contacts(
    app, client, auth_headers, make_connection, fake_crm: FakeFluentCrm, start_worker
):
    fake_crm.tag_race_window = 0.5  # a second create arriving within it passes the slug check too
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm, assign_tags=["Spring Promo"]))
    emails = [f"spring{i}@example.com" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        users = list(pool.map(lambda e: register(app.test_client(), auth_headers, e), emails))
    worker = start_worker(concurrency=8)
    assert worker.wait_until_processed(8, timeout=30)

    assert len(fake_crm.tags_with_slug("spring-promo")) == 1
    assert len(fake_crm.requests_to("POST", "/tags")) == 1
    for email in emails:
        [contact] = fake_crm.contacts_by_email(email)
        assert contact["tag_slugs"] == ["spring-promo"]
    with app.app_context():
        statuses = db.session.scalars(select(Delivery.status)).all()
        links = db.session.scalars(select(ContactLink.user_id).where(ContactLink.unlinked_at.is_(None))).all()
    assert statuses == ["succeeded"] * 8
    assert sorted(links) == sorted(u["id"] for u in users)


def test_the_link_is_written_when_the_tag_step_fails(
    app, client, auth_headers, make_connection, fake_crm: FakeFluentCrm, start_worker
):
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm, assign_tags=["Brand New"]))
    refused = Scripted(400, {"message": "refused"}, method="POST", path_suffix="/tags")
    fake_crm.script(refused, refused)  # before the create, then in the tag step
    user = register(client, auth_headers, "linked@example.com")
    worker = start_worker()
    assert worker.wait_until_processed(1)

    [contact] = fake_crm.contacts_by_email("linked@example.com")
    shown = user_view(client, auth_headers, user["id"])
    assert [link["contact_id"] for link in shown["crm_links"]] == [str(contact["id"])]
    with app.app_context():
        assert db.session.scalar(select(Delivery.status)) == "dead"


def test_local_tags_are_pushed_with_assign_tags_and_recorded_for_the_connection(
    app, client, auth_headers, make_connection, fake_crm: FakeFluentCrm, start_worker
):
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm, assign_tags=["vip"]))
    user = register(client, auth_headers, "beta@example.com", tags=["beta"])
    worker = start_worker()
    assert worker.wait_until_processed(1)

    [contact] = fake_crm.contacts_by_email("beta@example.com")
    assert contact["tag_slugs"] == ["beta", "vip"]
    assert user_view(client, auth_headers, user["id"])["tags"] == {"": ["beta"], "fluent": ["beta", "vip"]}


def test_custom_webhook_templates_see_the_local_tags(
    app, client, auth_headers, make_connection, receiver, start_worker
):
    make_connection(
        "hook",
        "custom_webhook",
        method="POST",
        url=f"{receiver.url}/registered",
        body={"email": "{{contact.email}}", "tags": "{{contact.tags}}"},
        assign_tags=["vip"],
    )
    register(client, auth_headers, "hooked@example.com", tags=["beta"])
    worker = start_worker()
    assert worker.wait_until_processed(1)
    [received] = receiver.requests
    assert json.loads(received.body)["tags"] == ["beta", "vip"]


def test_a_returned_password_is_gone_from_every_file_of_the_instance(
    app, backend, tmp_path: Path, client, hook_fluent, fake_crm: FakeFluentCrm, start_worker
):
    if backend != "sqlite":
        pytest.skip("the files of an SQLite instance")
    contact = fake_crm.seed_contact("returned@example.com", first_name="Re")
    body = hook_fluent({"id": contact["id"], "email": "returned@example.com", "tags": []}).get_json()
    password = body["password"]
    with app.app_context():
        encrypted = db.session.scalar(select(Delivery.payload))["password"]
        assert db.session.get(User, body["user_id"]) is not None
    worker = start_worker()
    assert worker.wait_until_processed(1)

    assert fake_crm.contacts[contact["id"]]["custom_values"] == {"wp_password": password}
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith("-wal") for p in files)  # WAL mode: the file the wipe must reach
    for path in files:
        data = path.read_bytes()
        assert password.encode() not in data, path
        assert encrypted.encode() not in data, path
        # Not even a fragment of the token (a page that kept part of the cell).
        assert not re.search(re.escape(encrypted[-24:]).encode(), data), path


@pytest.fixture
def hook_fluent(app, client, make_connection, fake_crm: FakeFluentCrm):
    """An ``add`` webhook to a FluentCRM connection that returns generated passwords."""
    key = make_connection(
        "fluent",
        "fluentcrm",
        **connection_settings(fake_crm, return_password_field="wp_password", return_password_in_response=True),
    )

    def send(payload: dict[str, Any]):
        return client.post(f"/?wpf_action=add&access_key={key}", json=payload)

    return send
