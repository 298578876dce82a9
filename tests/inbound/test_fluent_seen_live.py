"""Issue 16 items 1-2, seen against a real FluentCRM: an id-only ``update`` applies the contact's
fields (one CRM read gives fields and tags), a contact the CRM does not have is a 404 (or no
failure at all when the payload carries the email), and parameters are checked before any CRM
call. The CRM is mocked with ``responses`` from the exchanges recorded from FluentCRM 2.9.84
(shared/fixtures/fluentcrm/api and tests/fixtures/fluentcrm/api)."""

from __future__ import annotations

import copy

import responses
from responses import matchers
from support import load_fixture

from bridge.accounts import user_json
from bridge.extensions import db
from bridge.models import User

from .payloads import FLUENT_API, fluent_tags, subscriber
from .test_crm_loading import changed_tables

ONE_READ = load_fixture("fluentcrm/api/get_with_tags_and_custom_values.json")
MISSING = load_fixture("fluentcrm/api/get_missing_id.json")
CONTACT_URL = f"{FLUENT_API}/subscribers/11"
# The one read: the contact with its tags and custom values (the recorded query).
WITH = matchers.query_param_matcher({"with[]": ["tags", "subscriber.custom_values"]})


def crm_contact(**changes) -> dict:
    body = copy.deepcopy(ONE_READ["response"]["json"])
    body["subscriber"].update({"id": 11, **changes})
    return body


def linked_jane(hook, key) -> int:
    """Jane, created from a full payload and linked to contact 11 (no CRM call)."""
    response = hook("add", key, subscriber(contact_id=11, tags=fluent_tags("vip")))
    assert response.status_code == 200 and not responses.calls
    return response.get_json()["user_id"]


@responses.activate
def test_an_id_only_update_applies_a_rename_in_one_crm_read(app, hook, fluent_key):
    user_id = linked_jane(hook, fluent_key)
    renamed = crm_contact(first_name="Janet", last_name="Roe", email="jane.doe@example.com", tags=fluent_tags("gold"))
    responses.get(CONTACT_URL, json=renamed, match=[WITH])

    body = hook("update", fluent_key, contact_id="11").get_json()

    assert body["matched"] is True and sorted(body["updated_fields"]) == ["first_name", "last_name"]
    assert body["tags"] == ["gold"]
    assert len(responses.calls) == 1  # fields and tags in one read
    with app.app_context():
        user = db.session.get(User, user_id)
        assert (user.first_name, user.last_name) == ("Janet", "Roe")


@responses.activate
def test_an_id_only_add_is_one_crm_read(hook, fluent_key):
    responses.get(CONTACT_URL, json=crm_contact(email="new.one@example.com", tags=fluent_tags("vip")), match=[WITH])
    body = hook("add", fluent_key, contact_id="11").get_json()
    assert body["created"] is True and body["tags"] == ["vip"]
    assert len(responses.calls) == 1
    assert hook("add", fluent_key, contact_id="11").get_json()["user_id"] == body["user_id"]


@responses.activate
def test_a_contact_the_crm_does_not_have_is_a_404_with_nothing_written(app, hook, fluent_key, table_counts):
    linked_jane(hook, fluent_key)
    responses.get(CONTACT_URL, status=MISSING["response"]["status"], json=MISSING["response"]["json"])
    before = table_counts()
    for action in ("update", "add"):
        response = hook(action, fluent_key, contact_id="11")
        assert response.status_code == 404, response.get_json()
        assert response.get_json()["error"] == "contact_not_found"
    assert changed_tables(before, table_counts()) == {"webhook_event": 2}


@responses.activate
def test_with_the_email_in_the_payload_a_missing_contact_is_no_failure(app, hook, fluent_key):
    """An ``add`` with a complete payload but no ``tags`` key: the payload stands."""
    responses.get(CONTACT_URL, status=MISSING["response"]["status"], json=MISSING["response"]["json"])
    response = hook("add", fluent_key, subscriber(contact_id=11, email="gone@example.com", tags=None))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["created"] is True and body["tags"] == []
    with app.app_context():
        assert db.session.get(User, body["user_id"]).email == "gone@example.com"


@responses.activate
def test_an_update_keeps_the_tags_when_the_payload_lacks_them_and_the_crm_lost_the_contact(app, hook, fluent_key):
    user_id = linked_jane(hook, fluent_key)
    responses.get(CONTACT_URL, status=MISSING["response"]["status"], json=MISSING["response"]["json"])
    response = hook("update", fluent_key, subscriber(contact_id=11, first_name="Janet", tags=None))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["updated_fields"] == ["first_name"]
    with app.app_context():
        assert user_json.tags_by_scope(db.session.get(User, user_id)) == {"fluent": ["vip"]}


@responses.activate
def test_an_unknown_role_is_refused_before_any_crm_call(hook, fluent_key, table_counts):
    before = table_counts()
    for params in ({"role": "no-such-role"}, {"role": "no-such-role", "async": "1"}):
        response = hook("add", fluent_key, {"id": 11}, **params)
        assert response.status_code == 400, response.get_json()
        assert response.get_json()["error"] == "unknown_role"
    response = hook("add", fluent_key, {"id": 11}, role="administrator")
    assert (response.status_code, response.get_json()["error"]) == (400, "forbidden_role")
    assert len(responses.calls) == 0
    assert changed_tables(before, table_counts()) == {"webhook_event": 3}
