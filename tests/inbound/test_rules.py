"""The ``add``/``update``/``update_tags`` rules over HTTP: matching, usernames, roles, tags,
passwords, notifications, keys from headers, form bodies and batches."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from bridge import crypto
from bridge.accounts import passwords, user_json, users
from bridge.delivery import outbox
from bridge.extensions import db
from bridge.models import ContactLink, Delivery, Role, User, UserTag
from crm_adapters.base import Contact, InboundRequest
from crm_adapters.fluentcrm import FluentCrmAdapter

from .conftest import FLUENT_SETTINGS
from .payloads import fluent_tags, subscriber

LOGIN_MAP = {"first_name": "first_name", "last_name": "last_name", "email": "email", "user_login": "login"}


def ok(response) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def the_user(app, user_id: int) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
        return user


def test_add_twice_and_by_email_in_other_case_never_duplicates(app, hook, fluent_key):
    first = ok(hook("add", fluent_key, subscriber()))
    again = ok(hook("add", fluent_key, subscriber()))
    by_email = ok(hook("add", fluent_key, subscriber(contact_id=43, email="JANE.DOE@Example.com")))
    assert first["created"] is True
    assert again["created"] is False and by_email["created"] is False
    assert first["user_id"] == again["user_id"] == by_email["user_id"]
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(User)) == 1
        links = db.session.execute(select(ContactLink.contact_id, ContactLink.unlinked_at)).all()
        current = [cid for cid, unlinked in links if unlinked is None]
        assert current == ["43"]  # re-linked to the new contact id; the old link kept, closed
        assert len(links) == 2


@pytest.mark.parametrize(
    ("username_format", "expected"),
    [
        ("email", ["jane.doe@example.com", "jane.doe@example.org"]),
        ("flname", ["janedoe", "janedoe2"]),
        ("fnamenum", ["jane1", "jane2"]),
    ],
)
def test_username_formats_made_unique(hook, make_connection, username_format, expected):
    key = make_connection("fluent", "fluentcrm", username_format=username_format, **FLUENT_SETTINGS)
    first = ok(hook("add", key, subscriber(contact_id=1)))
    second = ok(hook("add", key, subscriber(contact_id=2, email="jane.doe@example.org")))  # another Jane Doe
    assert [first["username"], second["username"]] == expected


def test_user_login_is_used_when_free_else_the_format(hook, make_connection):
    key = make_connection("fluent", "fluentcrm", field_map=LOGIN_MAP, username_format="flname", **FLUENT_SETTINGS)
    first = ok(hook("add", key, subscriber(contact_id=1, login="JaneD")))
    second = ok(hook("add", key, subscriber(contact_id=2, email="jane2@example.com", login="janed")))
    assert first["username"] == "janed"
    assert second["username"] == "janedoe"


def test_roles_default_param_and_mapped_field(app, hook, make_connection):
    with app.app_context():
        db.session.add_all([Role(slug="member", title="Member"), Role(slug="editor", title="Editor")])
        db.session.commit()
    role_map = {"email": "email", "role": "crm_role"}
    key = make_connection("fluent", "fluentcrm", default_role="member", field_map=role_map, **FLUENT_SETTINGS)
    assert ok(hook("add", key, subscriber(contact_id=1, email="a@example.com")))["role"] == "member"
    assert ok(hook("add", key, subscriber(contact_id=2, email="b@example.com"), role="editor"))["role"] == "editor"
    mapped = ok(hook("add", key, subscriber(contact_id=3, email="c@example.com", crm_role="subscriber"), role="editor"))
    assert mapped["role"] == "subscriber"  # the mapped CRM field wins over the parameter
    update = ok(hook("update", key, subscriber(contact_id=1, email="a@example.com"), role="editor"))
    assert update["updated_fields"] == ["role"]
    assert the_user(app, update["user_id"]).role == "editor"


def test_a_webhook_never_changes_an_administrators_role(app, hook, make_connection):
    role_map = {"email": "email", "first_name": "first_name", "role": "crm_role"}
    key = make_connection("fluent", "fluentcrm", field_map=role_map, **FLUENT_SETTINGS)
    with app.app_context():
        admin = users.create_user(email="owner@example.com", username="owner", role="administrator")
        db.session.commit()
        admin_id = admin.id
    body = ok(hook("update", key, subscriber(email="owner@example.com", first_name="Own", crm_role="subscriber")))
    assert body["user_id"] == admin_id
    assert body["updated_fields"] == ["first_name"]  # the rest of the update still applies
    assert the_user(app, admin_id).role == "administrator"
    ok(hook("update", key, subscriber(email="owner@example.com"), role="subscriber"))
    assert the_user(app, admin_id).role == "administrator"


def test_tags_replace_only_this_connections_tags(app, hook, fluent_key, make_connection):
    other_key = make_connection("other", "fluentcrm", **FLUENT_SETTINGS)
    ok(hook("add", other_key, subscriber(contact_id=900, tags=fluent_tags("elsewhere"))))
    added = ok(hook("add", fluent_key, subscriber(tags=fluent_tags("vip", "course-one"))))
    assert added["created"] is False and added["tags"] == ["vip", "course-one"]
    body = ok(hook("update_tags", fluent_key, subscriber(first_name="Ignored", tags=fluent_tags("vip", "gold"))))
    assert body["tags"] == ["vip", "gold"]
    assert body["tags_added"] == ["gold"]
    assert body["tags_removed"] == ["course-one"]
    assert body["updated_fields"] == []  # update_tags: tags only
    with app.app_context():
        user = db.session.get(User, body["user_id"])
        assert user.first_name == "Jane"
        assert user_json.tags_by_scope(user) == {"other": ["elsewhere"], "fluent": ["vip", "gold"]}


def test_update_without_tags_in_payload_keeps_tags_when_crm_is_not_configured(app, hook, make_connection):
    key = make_connection("bare", "fluentcrm")
    ok(hook("add", key, subscriber(tags=fluent_tags("vip"))))
    body = ok(hook("update", key, subscriber(first_name="Janet", tags=None)))
    assert (body["tags"], body["tags_added"], body["tags_removed"]) == (["vip"], [], [])
    assert body["updated_fields"] == ["first_name"]


def test_contact_id_in_the_query_wins_over_the_body(app, hook, fluent_key):
    body = ok(hook("add", fluent_key, subscriber(contact_id=42), contact_id="777"))
    assert body["contact_id"] == "777"
    with app.app_context():
        assert db.session.scalar(select(ContactLink.contact_id)) == "777"


@pytest.mark.parametrize("style", ["x-access-key", "bearer", "form"])
def test_key_from_header_bearer_or_form(client, fluent_key, style):
    headers: dict[str, str] = {}
    data: dict[str, str] = {"wpf_action": "test"}
    if style == "x-access-key":
        headers["X-Access-Key"] = fluent_key
    elif style == "bearer":
        headers["Authorization"] = f"Bearer {fluent_key}"
    else:
        data["access_key"] = fluent_key
    response = client.post("/", data=data, headers=headers)
    assert ok(response) == {"success": True, "connection": "fluent"}


def test_activecampaign_form_body(app, client, make_connection):
    key = make_connection("ac", "activecampaign")
    form = {
        "contact[id]": "3",
        "contact[email]": "Jane@Example.com",
        "contact[first_name]": "Jane",
        "contact[tags]": "tag1, tag2",
    }
    body = ok(client.post("/", query_string={"wpf_action": "add", "access_key": key}, data=form))
    assert body["created"] is True and body["contact_id"] == "3" and body["tags"] == ["tag1", "tag2"]
    assert the_user(app, body["user_id"]).email == "jane@example.com"


def test_generated_password_is_hashed_returned_and_queued_encrypted(app, hook, make_connection):
    key = make_connection(
        "fluent",
        "fluentcrm",
        return_password_field="wp_password",
        return_password_in_response=True,
        password_length=20,
        push_on_register=True,
        push_updates=True,
        **FLUENT_SETTINGS,
    )
    body = ok(hook("add", key, subscriber()))
    password = body["password"]
    assert len(password) == 20 and body["password_returned"] == "queued"
    with app.app_context():
        user = db.session.get(User, body["user_id"])
        assert user.password_hash and password not in user.password_hash
        assert passwords.check_password(user, password)
        jobs = db.session.scalars(select(Delivery)).all()
        assert [job.kind for job in jobs] == [outbox.PASSWORD_RETURN]  # and no push: no echo
        payload = jobs[0].payload
        assert payload["field"] == "wp_password" and payload["contact_id"] == "42"
        assert crypto.is_encrypted(payload["password"]) and crypto.decrypt(payload["password"]) == password
    update = ok(hook("update", key, subscriber(first_name="Janet")))
    assert update["updated_fields"] == ["first_name"]
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Delivery)) == 1  # still no push


def test_mapped_user_pass_is_used_and_nothing_is_returned(app, hook, make_connection):
    pass_map = {"email": "email", "user_pass": "crm_password"}
    key = make_connection("fluent", "fluentcrm", field_map=pass_map, return_password_field="pw", **FLUENT_SETTINGS)
    body = ok(hook("add", key, subscriber(crm_password="from-the-crm-123")))
    assert body["password_returned"] == "off" and "password" not in body
    assert passwords.check_password(the_user(app, body["user_id"]), "from-the-crm-123")


@pytest.mark.parametrize(
    ("setting", "param", "expected"),
    [(False, None, False), (True, None, True), (True, "0", False), (False, "yes", True)],
)
def test_welcome_mail_follows_send_notification_then_the_setting(app, hook, make_connection, setting, param, expected):
    key = make_connection("fluent", "fluentcrm", send_welcome_email=setting, **FLUENT_SETTINGS)
    params = {"send_notification": param} if param is not None else {}
    body = ok(hook("add", key, subscriber(), **params))
    assert body["notification_sent"] is expected
    with app.app_context():
        kinds = list(db.session.scalars(select(Delivery.kind)))
    assert kinds == ([outbox.MAIL_WELCOME] if expected else [])


class BatchAdapter(FluentCrmAdapter):
    """A CRM that posts several contacts at once (as HubSpot and Mautic do)."""

    type: ClassVar[str] = "batch_test"

    def parse(self, request: InboundRequest) -> list[Contact]:
        return [self._contact_from(item) for item in request.json]


def test_batches_answer_one_result_per_contact(app, hook, make_connection, register_adapter):
    register_adapter(BatchAdapter)
    key = make_connection("batch", "batch_test")
    ok(hook("add", key, [subscriber(contact_id=1, email="one@example.com")]))
    body = ok(
        hook(
            "update",
            key,
            [
                subscriber(contact_id=1, email="one@example.com", first_name="Uno"),
                subscriber(contact_id=2, email="two@example.com"),
            ],
        )
    )
    assert body["success"] is True and body["action"] == "update"
    assert [r["matched"] for r in body["results"]] == [True, False]
    assert body["results"][0]["updated_fields"] == ["first_name"]


def test_a_failing_contact_in_a_batch_writes_nothing(app, hook, make_connection, register_adapter, table_counts):
    register_adapter(BatchAdapter)
    key = make_connection("batch", "batch_test")
    before = table_counts()
    response = hook(
        "add", key, [subscriber(contact_id=1, email="one@example.com"), subscriber(contact_id=2, email=None)]
    )
    assert response.status_code == 422
    after = table_counts()
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == {"webhook_event": 1}
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(UserTag)) == 0
