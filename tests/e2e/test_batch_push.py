"""Batch push and resync through the CLI (``crm-bridge batch push|resync``) against the fake
FluentCRM on loopback, with an in-process delivery worker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakecrm import FakeFluentCrm, Scripted, connection_settings
from sqlalchemy import func, select
from test_batch_import import wait_finished

from bridge.accounts import users
from bridge.extensions import db
from bridge.models import Connection, ContactLink, Delivery, Role, User, UserTag

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True, "BRIDGE_WORKER_POLL_SECONDS": 0.02}


def make_users(app, count: int, prefix: str = "local") -> list[int]:
    with app.app_context():
        made = [
            users.create_user(email=f"{prefix}{n}@example.com", username=f"{prefix}{n}", first_name=f"L{n}")
            for n in range(count)
        ]
        db.session.commit()
        return [u.id for u in made]


def run_cli(runner, *args: str) -> dict[str, Any]:
    result = runner.invoke(args=["bridge", "batch", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def link(app, user_id: int, contact_id: str) -> None:
    with app.app_context():
        user, connection = db.session.get(User, user_id), db.session.scalar(select(Connection))
        users.link_contact(user, connection, contact_id)
        db.session.commit()


def test_push_makes_a_contact_for_each_unlinked_user_once(app, runner, make_connection, fake_crm, start_worker):
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm, assign_tags=["site"]))
    make_users(app, 40)
    already = make_users(app, 3, prefix="linked")
    for user_id in already:
        link(app, user_id, f"9{user_id}")  # linked before: not pushed
    start_worker(concurrency=2)

    body = run_cli(runner, "push", "fluent")

    assert (body["status"], body["total"], body["done"], body["created"], body["failed"]) == (
        "succeeded",
        40,
        40,
        40,
        0,
    )
    assert len(fake_crm.contacts) == 40
    assert all(c["email"].startswith("local") for c in fake_crm.contacts.values())
    assert all(c["tag_slugs"] == ["site"] for c in fake_crm.contacts.values())
    keys = {r.headers.get("Idempotency-Key") for r in fake_crm.requests_to("POST", "/subscribers")}
    assert len(keys) == 40  # one stable key per user, not one per page
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ContactLink)) == 43

    rerun = run_cli(runner, "push", "fluent")
    assert (rerun["status"], rerun["total"], rerun["done"]) == ("succeeded", 0, 0)
    assert len(fake_crm.contacts) == 40


def test_push_keeps_a_refused_user_as_an_error_and_goes_on(app, runner, make_connection, fake_crm, start_worker):
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm))
    ids = make_users(app, 5)
    fake_crm.script(Scripted(400, {"message": "invalid email"}, method="POST", path_suffix="/subscribers"))
    start_worker(concurrency=1)

    body = run_cli(runner, "push", "fluent")

    assert (body["status"], body["done"], body["created"], body["failed"]) == ("succeeded", 5, 4, 1)
    assert body["errors"][0]["item"] == f"user:{ids[0]}"
    assert "crm_rejected" in body["errors"][0]["error"]
    assert len(fake_crm.contacts) == 4


def test_resync_links_by_email_and_loads_tags(app, runner, make_connection, fake_crm, start_worker):
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm))
    fake_crm._create_tag("gold")
    ids = make_users(app, 3)
    contacts = [fake_crm.seed_contact(f"local{n}@example.com", tag_slugs=["gold", "vip"]) for n in range(2)]
    start_worker(concurrency=1)

    body = run_cli(runner, "resync", "fluent")

    assert (body["status"], body["total"], body["done"], body["updated"], body["unchanged"]) == (
        "succeeded",
        3,
        3,
        2,
        1,
    )
    with app.app_context():
        links = dict(db.session.execute(select(ContactLink.user_id, ContactLink.contact_id)).all())
        assert links == {ids[0]: str(contacts[0]["id"]), ids[1]: str(contacts[1]["id"])}
        tags = db.session.scalars(select(UserTag.name).where(UserTag.user_id == ids[1]).order_by(UserTag.name))
        assert list(tags) == ["gold", "vip"]
    assert [r for r in fake_crm.requests if r.method != "GET"] == []


def test_a_custom_webhook_connection_supports_push_only(runner, make_connection, receiver):
    body = {"e": "{{contact.email}}"}
    make_connection("hook", "custom_webhook", method="POST", url=receiver.url + "/hook", body=body)

    result = runner.invoke(args=["bridge", "batch", "import", "hook", "--json"])

    assert result.exit_code == 1
    answer = json.loads(result.stdout)
    assert answer["error"] == "operation_not_supported"
    assert "push only" in answer["message"]


def test_fake_paginates_like_fluentcrm(fake_crm: FakeFluentCrm, crm_fixture):
    recorded = crm_fixture("fluentcrm/api/list_by_tag_page.json")["response"]["json"]["subscribers"]
    fake_crm.seed_contact("a@example.com")
    page = fake_crm._subscriber_page({"per_page": "1", "page": "1"})["subscribers"]
    assert set(page) == set(recorded)


def test_a_registration_is_pushed_before_a_running_batch_is_done(
    app, client, auth_headers, runner, make_connection, fake_crm, start_worker
):
    """The batch runs a short page at a time, each queued behind what is already due: a
    registration made while it runs waits for one page at most, not for the batch (200 pushes
    at 10 ms each are four pages or more)."""
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm))
    make_users(app, 200, prefix="batch")
    fake_crm.delay = 0.01
    start_worker(concurrency=1)  # one thread: the batch and the registration compete for it
    started = run_cli(runner, "push", "fluent", "--detach")
    assert fake_crm.wait_for(lambda f: bool(f.requests_to("POST", "/subscribers")))

    assert client.post("/api/users", json={"email": "new@example.com"}, headers=auth_headers).status_code == 201
    done = wait_finished(client, auth_headers, started["id"])

    assert (done["status"], done["done"]) == ("succeeded", 200)
    creates = [r.json["email"] for r in fake_crm.requests_to("POST", "/subscribers")]
    assert creates.index("new@example.com") < creates.index("batch199@example.com")


def test_import_from_the_cli_keeps_a_refused_contact_and_sends_welcome_mail_with_the_role(
    app, runner, make_connection, fake_crm, start_worker
):
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm))
    with app.app_context():
        db.session.add(Role(slug="member", title="Member"))
        db.session.commit()
    for n in range(3):
        fake_crm.seed_contact(f"c{n}@example.com", first_name=f"C{n}")
    fake_crm.seed_contact("", first_name="No email")  # FluentCRM lets a contact have none
    start_worker(concurrency=1)

    result = runner.invoke(args=["bridge", "batch", "import", "fluent", "--role", "member", "--send-welcome"])

    assert result.exit_code == 0, result.output
    assert "succeeded 4/4" in result.stderr  # a plain progress line: not a terminal
    assert "3 created, 0 updated, 0 unchanged, 1 failed" in result.stdout
    assert "missing_email" in result.stdout
    with app.app_context():
        assert set(db.session.scalars(select(User.role))) == {"member"}
        mails = db.session.scalar(select(func.count()).select_from(Delivery).where(Delivery.kind == "mail.welcome"))
        assert mails == 3


def test_push_applies_and_records_the_users_local_tags_as_a_registration_does(
    app, runner, make_connection, fake_crm, start_worker
):
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm, assign_tags=["site"]))
    [user_id] = make_users(app, 1)
    with app.app_context():
        users.replace_tags_for(db.session.get(User, user_id), None, ["gold"])
        db.session.commit()
    start_worker(concurrency=1)

    body = run_cli(runner, "push", "fluent")

    assert (body["status"], body["created"]) == ("succeeded", 1)
    [contact] = fake_crm.contacts.values()
    assert sorted(contact["tag_slugs"]) == ["gold", "site"]
    with app.app_context():
        connection_id = db.session.scalar(select(Connection.id))
        recorded = db.session.scalars(
            select(UserTag.name).where(UserTag.user_id == user_id, UserTag.connection_id == connection_id)
        )
        assert sorted(recorded) == ["gold", "site"]
