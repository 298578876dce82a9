"""Loading contacts and tags from FluentCRM (mocked with ``responses``, shaped after the recorded
exchanges in shared/fixtures/fluentcrm/api): what is loaded when, and that a CRM failure is a
502 with nothing but the log row written."""

from __future__ import annotations

import base64
import copy
import json

import pytest
import responses
from sqlalchemy import insert, select
from support import load_fixture

from bridge.accounts import user_json, users
from bridge.extensions import db
from bridge.models import Role, User

from .conftest import FLUENT_SETTINGS
from .payloads import FLUENT_API, fluent_tags, subscriber

GET_BY_ID = load_fixture("fluentcrm/api/get_by_id.json")
WRONG_PASSWORD = load_fixture("fluentcrm/api/wrong_password_401.json")
UNAVAILABLE = {"response": {"status": 503, "json": {"message": "Service Unavailable"}}}
CONTACT_URL = f"{FLUENT_API}/subscribers/11"


def recorded_subscriber(**changes) -> dict:
    body = copy.deepcopy(GET_BY_ID["response"]["json"])
    body["subscriber"].update(changes)
    return body


def changed_tables(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


@responses.activate
def test_add_without_email_loads_the_contact_with_basic_auth(app, hook, fluent_key):
    assert GET_BY_ID["request"]["path"] == "/wp-json/fluent-crm/v2/subscribers/11"
    responses.get(CONTACT_URL, json=recorded_subscriber(tags=fluent_tags("vip")))
    response = hook("add", fluent_key, {"id": 11})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["created"] is True and body["tags"] == ["vip"]
    assert len(responses.calls) == 1
    expected_auth = base64.b64encode(f"api-user:{FLUENT_SETTINGS['app_password']}".encode()).decode()
    assert responses.calls[0].request.headers["Authorization"] == f"Basic {expected_auth}"
    with app.app_context():
        user = db.session.get(User, body["user_id"])
        assert (user.email, user.first_name, user.last_name) == ("capture-4fe81a@example.com", "Capt", "Ture")


@responses.activate
def test_payload_without_tags_loads_them_and_replaces(app, hook, fluent_key):
    responses.get(CONTACT_URL, json=recorded_subscriber(tags=fluent_tags("gold", "course-two")))
    body = hook("add", fluent_key, subscriber(contact_id=11, tags=None)).get_json()
    assert body["tags"] == ["gold", "course-two"]
    assert len(responses.calls) == 1  # one GET gives the tags: no second call for load_tags


@responses.activate
def test_always_load_from_crm_prefers_the_crm_data(app, make_connection, hook):
    key = make_connection("fluent", "fluentcrm", always_load_from_crm=True, **FLUENT_SETTINGS)
    responses.get(CONTACT_URL, json=recorded_subscriber(first_name="FromCrm"))
    body = hook("add", key, subscriber(contact_id=11, first_name="FromPayload")).get_json()
    assert len(responses.calls) == 1
    with app.app_context():
        assert db.session.get(User, body["user_id"]).first_name == "FromCrm"


@responses.activate
def test_unknown_contact_on_update_calls_no_crm(hook, fluent_key):
    response = hook("update", fluent_key, subscriber(contact_id=11, email="nobody@example.com", tags=None))
    assert response.get_json()["matched"] is False
    assert len(responses.calls) == 0


@responses.activate
@pytest.mark.parametrize("recorded", [WRONG_PASSWORD, UNAVAILABLE], ids=["401", "503"])
def test_crm_failure_is_502_with_nothing_written(app, hook, fluent_key, table_counts, recorded):
    ok = hook("add", fluent_key, subscriber(contact_id=11, tags=fluent_tags("vip")))
    assert ok.status_code == 200
    responses.get(CONTACT_URL, status=recorded["response"]["status"], json=recorded["response"]["json"])
    before = table_counts()
    response = hook("update", fluent_key, subscriber(contact_id=11, first_name="Changed", tags=None))
    assert response.status_code == 502
    assert response.get_json()["error"] == "crm_unavailable"
    assert FLUENT_SETTINGS["app_password"] not in response.get_data(as_text=True)
    assert changed_tables(before, table_counts()) == {"webhook_event": 1}
    with app.app_context():
        user = db.session.get(User, ok.get_json()["user_id"])
        assert user.first_name == "Jane" and users.tag_names(user, None) == []
        assert user_json.tags_by_scope(user) == {"fluent": ["vip"]}


@responses.activate
def test_no_database_lock_is_held_while_the_crm_is_called(app, hook, fluent_key):
    """Another writer gets in during the CRM call (on SQLite a held transaction would block it
    for the 30 s busy timeout and fail the test by its timeout)."""
    wrote: list[bool] = []

    def crm_answer(request):
        with app.app_context(), db.engine.begin() as connection:
            connection.execute(insert(Role).values(slug="written-meanwhile", title="x"))
        wrote.append(True)
        return 200, {}, json.dumps(recorded_subscriber())

    responses.add_callback(responses.GET, CONTACT_URL, callback=crm_answer)
    response = hook("add", fluent_key, {"id": 11})
    assert response.status_code == 200 and wrote == [True]
    with app.app_context():
        assert db.session.scalar(select(Role.id).where(Role.slug == "written-meanwhile"))


@responses.activate
@pytest.mark.parametrize("crm_status", [200, 503])
def test_settings_the_crm_changed_while_loading_are_stored_even_when_the_webhook_fails(
    app, hook, fluent_key, monkeypatch, crm_status
):
    """A refreshed token (here: a rotated app password) is stored before any rule runs, so a
    failed webhook does not lose it."""
    from bridge.connections.service import get_connection
    from bridge.connections.settings import effective_settings
    from crm_adapters.fluentcrm import FluentCrmAdapter

    rotated = "rotated-app-password-5678"
    monkeypatch.setattr(FluentCrmAdapter, "settings_to_store", lambda self: {"app_password": rotated})
    responses.get(CONTACT_URL, json=recorded_subscriber(tags=fluent_tags("vip")), status=crm_status)
    response = hook("add", fluent_key, {"id": 11})
    assert response.status_code == (200 if crm_status == 200 else 502)
    with app.app_context():
        assert effective_settings(get_connection("fluent"))["app_password"] == rotated
