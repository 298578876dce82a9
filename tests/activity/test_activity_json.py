"""``crm_activity`` in the user JSON (``bridge.accounts.user_json.user_to_json``): newest first."""

from __future__ import annotations

import json
from datetime import timedelta

from bridge.accounts.crm_activity import LeadActivity, parse_activity, record_activity
from bridge.accounts.user_json import user_to_json
from bridge.extensions import db
from bridge.models import CrmActivity, User, utcnow


def test_user_json_lists_activity_newest_first_with_the_contract_fields(app, make_lead):
    user_id = make_lead("lead@example.com", "42")
    with app.app_context():
        record_activity(parse_activity(json.dumps({"crm_lead_id": "42", "event_type": "first"})))
        record_activity(parse_activity(json.dumps({"crm_lead_id": "42", "event_type": "second", "n": 2})))
        older = CrmActivity(
            user_id=user_id, contact_id="42", event_type="backdated", payload={}, received_at=utcnow() - timedelta(1)
        )
        db.session.add(older)
        db.session.commit()

        activity = user_to_json(db.session.get(User, user_id))["crm_activity"]

    assert [a["event_type"] for a in activity] == ["second", "first", "backdated"]
    assert set(activity[0]) == {"id", "event_type", "contact_id", "payload", "received_at", "source"}
    assert activity[0]["payload"] == {"crm_lead_id": "42", "event_type": "second", "n": 2}
    assert activity[0]["source"] == "crm"
    assert activity[0]["received_at"].endswith("Z")


def test_record_activity_returns_none_for_an_unknown_contact(app):
    with app.app_context():
        assert record_activity(LeadActivity(contact_id="nobody", event_type="updated", payload={})) is None
