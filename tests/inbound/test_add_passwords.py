"""Where an ``add`` hashes a password (issue 21): a generated password with the cheap method
its entropy allows, a chosen one with the slow default and only after the commit that created
the user, and nothing at all for a user that exists or for the loser of a race."""

from __future__ import annotations

import pytest
from werkzeug.security import generate_password_hash

from bridge.accounts import passwords
from bridge.extensions import db
from bridge.models import User
from bridge.raw_statements import session_is_idle
from crm_adapters.fluentcrm import FluentCrmAdapter

from .conftest import FLUENT_SETTINGS
from .payloads import subscriber
from .test_async import queue, run_job
from .test_concurrency import post_all

PASS_MAP = {"email": "email", "user_pass": "crm_password"}


@pytest.fixture
def hashes(monkeypatch) -> list[tuple[str, str, bool]]:
    """Every hash made: (kind, password, whether a database transaction was open then)."""
    made: list[tuple[str, str, bool]] = []

    def chosen(password: str) -> str:
        made.append(("chosen", password, db.session().in_transaction()))
        return generate_password_hash(password, "pbkdf2:sha256:1")

    real_generated = passwords.hash_generated_password

    def generated(password: str) -> str:
        made.append(("generated", password, db.session().in_transaction()))
        return real_generated(password)

    monkeypatch.setattr(passwords, "hash_password", chosen)
    monkeypatch.setattr(passwords, "hash_generated_password", generated)
    return made


def test_a_generated_password_gets_the_cheap_method_and_still_verifies(app, hook, make_connection, hashes):
    key = make_connection("fluent", "fluentcrm", return_password_in_response=True, **FLUENT_SETTINGS)
    response = hook("add", key, subscriber())
    body = response.get_json()
    assert response.status_code == 200 and body["created"] is True
    assert [kind for kind, _, _ in hashes] == ["generated"]
    with app.app_context():
        user = db.session.get(User, body["user_id"])
        assert user.password_hash.startswith(passwords.GENERATED_PASSWORD_METHOD + "$")
        assert passwords.check_password(user, body["password"])


def test_a_password_nobody_will_see_is_long_and_hashed_with_one_round(app, hook, make_connection, hashes):
    key = make_connection("fluent", "fluentcrm", **FLUENT_SETTINGS)  # nothing returns the password
    body = hook("add", key, subscriber()).get_json()
    assert body["created"] is True and "password" not in body
    [(kind, password, _)] = hashes
    assert kind == "generated" and len(password) == passwords.UNSEEN_PASSWORD_LENGTH
    assert set(password) <= set(passwords.PASSWORD_ALPHABET)
    user = _user(app, body["user_id"])
    assert user.password_hash.startswith(passwords.LONG_GENERATED_PASSWORD_METHOD + "$")
    assert passwords.check_password(user, password) and not passwords.check_password(user, password[:-1])


def test_a_returned_password_keeps_its_length_and_the_thousand_rounds(app, hook, make_connection, hashes):
    key = make_connection("fluent", "fluentcrm", return_password_in_response=True, **FLUENT_SETTINGS)
    body = hook("add", key, subscriber()).get_json()
    assert len(body["password"]) == 16  # password_length's default
    assert _user(app, body["user_id"]).password_hash.startswith(passwords.GENERATED_PASSWORD_METHOD + "$")


def test_an_existing_user_costs_no_hash(app, hook, make_connection, hashes):
    key = make_connection("fluent", "fluentcrm", field_map=PASS_MAP, **FLUENT_SETTINGS)
    first = hook("add", key, subscriber(contact_id=1, crm_password="chosen-by-crm-1")).get_json()
    hashes.clear()
    again = hook("add", key, subscriber(contact_id=2, crm_password="chosen-by-crm-2")).get_json()
    assert again["created"] is False and again["user_id"] == first["user_id"]
    assert hashes == []
    assert passwords.check_password(_user(app, first["user_id"]), "chosen-by-crm-1")  # untouched


def test_a_chosen_password_is_hashed_slowly_after_the_commit(app, hook, make_connection, hashes):
    key = make_connection("fluent", "fluentcrm", field_map=PASS_MAP, **FLUENT_SETTINGS)
    body = hook("add", key, subscriber(crm_password="chosen-by-crm-1")).get_json()
    assert body["created"] is True
    assert hashes == [("chosen", "chosen-by-crm-1", False)]  # no transaction open: after the commit
    assert passwords.check_password(_user(app, body["user_id"]), "chosen-by-crm-1")


@pytest.mark.parametrize("loaded_from_crm", [False, True], ids=["payload", "crm-read"])
def test_a_queued_add_hashes_a_chosen_password_before_its_unit_with_no_transaction_held(
    app, hook, make_connection, hashes, monkeypatch, loaded_from_crm
):
    """The slow hash (scrypt, 0.1 s and more) runs in the worker's job with no transaction
    open: on SQLite any transaction holds the writer lock, so every other writer would wait
    for the hash. The job's match read opens one; it is ended before the hash, as before a
    CRM call."""
    idle_at_hash: list[bool] = []
    cheap = passwords.hash_password  # the ``hashes`` fixture's stand-in

    def hash_password(password: str) -> str:
        idle_at_hash.append(session_is_idle())
        return cheap(password)

    monkeypatch.setattr(passwords, "hash_password", hash_password)
    key = make_connection("fluent", "fluentcrm", field_map=PASS_MAP, **FLUENT_SETTINGS)
    # Without tags in the payload, the job reads them from the CRM first.
    payload = subscriber(crm_password="chosen-by-crm-1", tags=None if loaded_from_crm else [])
    if loaded_from_crm:
        monkeypatch.setattr(FluentCrmAdapter, "load_tags", lambda self, contact_id: ["from-crm"])
    result = run_job(app, queue(hook, key, payload))
    assert result["created"] is True
    assert [(kind, password) for kind, password, _ in hashes] == [("chosen", "chosen-by-crm-1")]
    assert idle_at_hash == [True]
    assert passwords.check_password(_user(app, result["user_id"]), "chosen-by-crm-1")


def test_concurrent_identical_adds_hash_once(app, live_server, make_connection, hashes):
    key = make_connection("fluent", "fluentcrm", field_map=PASS_MAP, **FLUENT_SETTINGS)
    body = subscriber(contact_id=4242, email="race@example.com", crm_password="chosen-by-crm-1")
    responses = post_all(live_server.url, {"wpf_action": "add", "access_key": key}, body, 8)
    assert [r.status_code for r in responses] == [200] * 8
    assert sum(r.json()["created"] for r in responses) == 1
    assert [kind for kind, _, _ in hashes] == ["chosen"]  # the winner's, after its commit
    assert passwords.check_password(_user(app, responses[0].json()["user_id"]), "chosen-by-crm-1")


def _user(app, user_id: int) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
        return user
