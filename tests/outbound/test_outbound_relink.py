"""A stale contact id is recovered once, in the push path (issue 17): on "not found" the contact
is looked up again by the user's email, the push is retried on the id found, and the user is
relinked (the old link closed, kept in the history), as WP Fusion does since 3.47.3
(``WPF_CRM_Base::handle_not_found_error``). Mailchimp's email change re-keys the member: the new
id is linked too."""

from __future__ import annotations

import json
from pathlib import Path

import responses
from sqlalchemy import select
from support import load_delivery

from bridge import crypto
from bridge.accounts import registration, users
from bridge.delivery import outbox
from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db
from bridge.models import Connection, ContactLink, User
from crm_adapters.mailchimp import subscriber_hash

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HUBSPOT = "https://api.hubapi.com/crm/v3/objects/contacts"
HS_NOT_FOUND = {"status": "error", "message": "resource not found", "category": "OBJECT_NOT_FOUND"}
AC = "https://acct.api-us1.com/api/3"
MAILCHIMP = "https://us21.api.mailchimp.com/3.0/lists/a6b5da1054/members"


def recorded(relative: str) -> dict:
    return json.loads((FIXTURES / relative).read_text())


def linked_user(app, make_connection, crm: str, contact_id: str, email: str = "ana@example.com", **settings) -> int:
    """A user linked to ``contact_id`` on connection ``crm`` with a profile update queued."""
    make_connection(crm, crm, push_updates=True, push_on_register=False, **settings)
    with app.app_context():
        user = registration.register_user(email=email, first_name="Ana")
        connection = db.session.scalar(select(Connection).where(Connection.name == crm))
        users.link_contact(user, connection, contact_id)
        user.first_name = "Anna"
        registration.queue_profile_update(user, ["first_name"])
        db.session.commit()
        return user.id


def links(app, user_id: int) -> list[tuple[str, bool]]:
    """The user's link history: (contact id, still current), oldest first."""
    with app.app_context():
        rows = db.session.scalars(select(ContactLink).where(ContactLink.user_id == user_id).order_by(ContactLink.id))
        return [(row.contact_id, row.unlinked_at is None) for row in rows]


@responses.activate
def test_a_merged_hubspot_contact_is_found_by_email_relinked_and_updated(app, make_connection):
    user_id = linked_user(app, make_connection, "hubspot", "3501", access_token="pat-na1-token")
    responses.patch(f"{HUBSPOT}/3501", status=404, json=HS_NOT_FOUND)
    responses.get(f"{HUBSPOT}/ana@example.com", json={"id": "3999", "properties": {"email": "ana@example.com"}})
    responses.patch(f"{HUBSPOT}/3999", json={"id": "3999", "properties": {}})
    assert DeliveryWorker(app).run(once=True) == 1

    assert json.loads(responses.calls[2].request.body)["properties"]["firstname"] == "Anna"
    with app.app_context():
        delivery = db.session.scalar(select(outbox.Delivery))
        assert delivery.status == "succeeded"
        assert delivery.result["contact_id"] == "3999" and delivery.result["relinked_from"] == "3501"
    assert links(app, user_id) == [("3501", False), ("3999", True)]


@responses.activate
def test_a_deleted_activecampaign_contact_is_replaced_by_the_one_with_the_email(app, make_connection):
    user_id = linked_user(
        app, make_connection, "activecampaign", "77", base_url="https://acct.api-us1.com", api_key="ac-key-123"
    )
    deleted = recorded("activecampaign/deleted_contact.json")["json"]["contact"]
    responses.put(f"{AC}/contacts/77", json={"contact": deleted})
    responses.get(
        f"{AC}/contacts", json={"contacts": [{"id": "88", "email": "ana@example.com"}], "meta": {"total": "1"}}
    )
    responses.put(f"{AC}/contacts/88", json={"contact": {"id": "88", "email": "ana@example.com"}})
    DeliveryWorker(app).run(once=True)
    assert links(app, user_id) == [("77", False), ("88", True)]


@responses.activate
def test_a_contact_gone_under_every_id_stays_not_found_and_the_link_stays(app, make_connection):
    user_id = linked_user(app, make_connection, "hubspot", "3501", access_token="pat-na1-token")
    responses.patch(f"{HUBSPOT}/3501", status=404, json=HS_NOT_FOUND)
    responses.get(f"{HUBSPOT}/ana@example.com", status=404, json=HS_NOT_FOUND)
    DeliveryWorker(app).run(once=True)
    with app.app_context():
        delivery = db.session.scalar(select(outbox.Delivery))
        assert (delivery.status, delivery.last_error.split(":")[0]) == ("dead", "contact_not_found")
    assert len(responses.calls) == 2
    assert links(app, user_id) == [("3501", True)]


@responses.activate
def test_a_returned_password_follows_the_contact_to_its_new_id(app, make_connection):
    make_connection("hubspot", "hubspot", access_token="pat-na1-token", push_on_register=False)
    with app.app_context():
        user = users.create_user(email="pw@example.com")
        connection = db.session.scalar(select(Connection))
        users.link_contact(user, connection, "3501")
        row = outbox.enqueue(
            outbox.PASSWORD_RETURN,
            connection=connection,
            user=user,
            payload={"field": "wp_password", "password": crypto.encrypt("Generated1234Pw")},
        )
        db.session.commit()
        row_id, user_id = row.id, user.id
    properties = {"results": [{"name": "wp_password", "type": "string", "fieldType": "text"}]}
    responses.get("https://api.hubapi.com/crm/v3/properties/contacts", json=properties)
    responses.patch(f"{HUBSPOT}/3501", status=404, json=HS_NOT_FOUND)
    responses.get(f"{HUBSPOT}/pw@example.com", json={"id": "4000"})
    responses.patch(f"{HUBSPOT}/4000", json={"id": "4000"})
    DeliveryWorker(app).run(once=True)
    assert load_delivery(app, row_id).status == "succeeded"
    assert links(app, user_id) == [("3501", False), ("4000", True)]


@responses.activate
def test_a_mailchimp_email_change_links_the_members_new_id(app, make_connection):
    old, new = "kim.park@example.com", "kim.new@example.com"
    make_connection(
        "mailchimp",
        "mailchimp",
        api_key="0123456789abcdef-us21",
        list_id="a6b5da1054",
        push_updates=True,
        push_on_register=False,
    )
    with app.app_context():
        user = registration.register_user(email=old)
        users.link_contact(user, db.session.scalar(select(Connection)), subscriber_hash(old))
        user.email = new
        registration.queue_profile_update(user, ["email"])
        db.session.commit()
        user_id = user.id
    answer = {**recorded("mailchimp/member_email_changed.json")["json"], "id": subscriber_hash(new)}
    responses.patch(f"{MAILCHIMP}/{subscriber_hash(old)}", json=answer)
    DeliveryWorker(app).run(once=True)
    assert json.loads(responses.calls[0].request.body)["email_address"] == new
    assert links(app, user_id) == [(subscriber_hash(old), False), (subscriber_hash(new), True)]
    with app.app_context():
        assert users.contact_id_for(db.session.get(User, user_id), db.session.scalar(select(Connection))) == (
            subscriber_hash(new)
        )


@responses.activate
def test_a_fluentcrm_contact_deleted_and_recreated_is_relinked(app, make_connection, crm_fixture):
    """FluentCRM's "Subscriber not found" (422, recorded) on the stale id; the recorded look-up by
    email finds the re-created contact."""
    found = crm_fixture("fluentcrm/api/get_by_email.json")["response"]["json"]
    email = found["subscriber"]["email"]
    user_id = linked_user(
        app,
        make_connection,
        "fluentcrm",
        "7",
        email=email,
        base_url="https://crm.example.com",
        username="api",
        app_password="wp-app-pass-123",
    )
    api = "https://crm.example.com/wp-json/fluent-crm/v2/subscribers"
    missing = crm_fixture("fluentcrm/api/get_missing_id.json")["response"]
    responses.put(f"{api}/7", status=missing["status"], json=missing["json"])
    responses.get(f"{api}/0", json=found)
    updated = crm_fixture("fluentcrm/api/update_fields.json")["response"]["json"]
    responses.put(f"{api}/11", json=updated)
    DeliveryWorker(app).run(once=True)
    assert links(app, user_id) == [("7", False), ("11", True)]
