"""``POST /webhooks/crm/lead`` over HTTP: every row of CONTRACT.md §6's table."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from bridge.extensions import db
from bridge.models import CrmActivity
from tests.activity.conftest import SECRET

URL = "/webhooks/crm/lead"
BEARER = {"Authorization": f"Bearer {SECRET}"}


def post(client, body: Any, headers: dict[str, str] | None = None, *, raw: str | None = None):
    data = raw if raw is not None else json.dumps(body)
    return client.post(URL, data=data, headers=headers or {}, content_type="application/json")


def stored_rows(app) -> list[CrmActivity]:
    with app.app_context():
        rows = list(db.session.scalars(select(CrmActivity).order_by(CrmActivity.id)))
        db.session.expunge_all()
        return rows


def count_rows(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(CrmActivity)) or 0


def test_activity_for_a_linked_contact_is_stored_whole_on_its_user(app, client, make_lead):
    user_id = make_lead("lead@example.com", "42")
    body = {"crm_lead_id": "42", "event_type": "email_opened", "campaign": {"id": 9, "name": "Spring"}}

    response = post(client, body, BEARER)

    assert response.status_code == 200
    assert response.get_json() == {"ok": True, "stored": True, "lead_id": user_id}
    (row,) = stored_rows(app)
    assert (row.user_id, row.contact_id, row.event_type, row.source) == (user_id, "42", "email_opened", "crm")
    assert row.payload == body


def test_x_api_key_header_is_accepted_and_event_type_defaults_to_updated(app, client, make_lead):
    user_id = make_lead("lead@example.com", "42")

    response = post(client, {"crm_lead_id": "42"}, {"X-API-Key": SECRET})

    assert response.get_json() == {"ok": True, "stored": True, "lead_id": user_id}
    assert stored_rows(app)[0].event_type == "updated"


def test_unknown_contact_is_answered_200_logged_and_not_stored(app, client, make_lead, caplog):
    make_lead("lead@example.com", "42")
    caplog.set_level(logging.INFO, logger="bridge.accounts.crm_activity")

    response = post(client, {"crm_lead_id": "999"}, BEARER)

    assert response.status_code == 200
    assert response.get_json() == {
        "ok": True,
        "stored": False,
        "reason": "No matching lead or submission for crm_lead_id",
    }
    assert count_rows(app) == 0
    assert "'999'" in caplog.text
    assert SECRET not in caplog.text


def test_activity_for_a_contact_id_the_user_had_before_still_lands_on_that_user(app, client, make_lead):
    user_id = make_lead("moved@example.com", "42", "43")  # linked to 42, then re-linked to 43

    response = post(client, {"crm_lead_id": "42", "event_type": "note_added"}, BEARER)

    assert response.get_json() == {"ok": True, "stored": True, "lead_id": user_id}
    assert stored_rows(app)[0].contact_id == "42"


def test_current_link_wins_over_an_earlier_link_of_another_user(app, client, make_lead):
    make_lead("first@example.com", "42")
    second = make_lead("second@example.com", "42")  # takes contact 42 over: the first link is closed

    response = post(client, {"crm_lead_id": "42"}, BEARER)

    assert response.get_json()["lead_id"] == second


def test_contact_on_another_connection_is_found(app, client, make_lead):
    user_id = make_lead("ac@example.com", "77", connection="campaign")

    assert post(client, {"crm_lead_id": "77"}, BEARER).get_json()["lead_id"] == user_id


@pytest.mark.parametrize(
    ("body", "raw", "code"),
    [
        (None, "{not json", "invalid_payload"),
        (None, "", "invalid_payload"),
        (["crm_lead_id", "42"], None, "invalid_payload"),
        ({"event_type": "updated"}, None, "missing_crm_lead_id"),
        ({"crm_lead_id": 42}, None, "missing_crm_lead_id"),
        ({"crm_lead_id": None}, None, "missing_crm_lead_id"),
        ({"crm_lead_id": "  "}, None, "missing_crm_lead_id"),
        ({"crm_lead_id": "42", "event_type": {"x": 1}}, None, "invalid_payload"),
    ],
    ids=["bad-json", "empty", "array", "missing", "number", "null", "blank", "event-type-object"],
)
def test_bad_bodies_are_400_and_store_nothing(app, client, make_lead, body, raw, code):
    make_lead("lead@example.com", "42")

    response = post(client, body, BEARER, raw=raw)

    assert response.status_code == 400
    payload = response.get_json()
    assert payload["ok"] is False
    assert payload["error"] == code
    assert payload["message"]
    assert count_rows(app) == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": SECRET}, {"X-API-Key": ""}],
    ids=["none", "wrong-bearer", "wrong-api-key", "no-scheme", "empty-api-key"],
)
def test_missing_or_wrong_secret_is_401(app, client, make_lead, headers):
    make_lead("lead@example.com", "42")

    response = post(client, {"crm_lead_id": "42"}, headers)

    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert SECRET not in response.get_data(as_text=True)
    assert count_rows(app) == 0


def test_secret_is_checked_before_the_body(client):
    assert post(client, None, {}, raw="{broken").status_code == 401


class TestSecretConfiguration:
    @pytest.fixture
    def app_config(self, app_config: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
        return {**app_config, "CRM_WEBHOOK_SECRET": None, **getattr(request, "param", {})}

    def test_no_secret_configured_is_503(self, client):
        response = post(client, {"crm_lead_id": "42"}, BEARER)

        assert response.status_code == 503
        assert response.get_json()["error"] == "not_configured"

    @pytest.mark.parametrize("app_config", [{"CRM_CALLBACK_SECRET": "callback-secret-xyz"}], indirect=True)
    def test_callback_secret_is_the_fallback(self, app, client, make_lead):
        user_id = make_lead("lead@example.com", "42")

        assert post(client, {"crm_lead_id": "42"}, BEARER).status_code == 401
        response = post(client, {"crm_lead_id": "42"}, {"Authorization": "Bearer callback-secret-xyz"})
        assert response.get_json() == {"ok": True, "stored": True, "lead_id": user_id}

    @pytest.mark.parametrize(
        "app_config",
        [{"CRM_WEBHOOK_SECRET": "webhook-secret-abc", "CRM_CALLBACK_SECRET": "callback-xyz"}],
        indirect=True,
    )
    def test_webhook_secret_wins_when_both_are_set(self, client, make_lead):
        make_lead("lead@example.com", "42")

        assert post(client, {"crm_lead_id": "42"}, {"X-API-Key": "callback-xyz"}).status_code == 401
        assert post(client, {"crm_lead_id": "42"}, {"X-API-Key": "webhook-secret-abc"}).status_code == 200


def test_database_failure_while_storing_is_500_and_writes_nothing(app, client, make_lead, monkeypatch):
    make_lead("lead@example.com", "42")
    session = db.session

    def failing_commit() -> None:
        session.flush()  # the row reaches the database inside the transaction…
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))  # …which then fails

    monkeypatch.setattr(session, "commit", failing_commit)

    response = post(client, {"crm_lead_id": "42"}, BEARER)

    assert response.status_code == 500
    assert response.get_json()["ok"] is False
    assert response.get_json()["error"] == "storage_failed"
    monkeypatch.undo()
    assert count_rows(app) == 0
