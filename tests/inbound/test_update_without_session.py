"""An ``update`` of a linked user runs in a raw transaction (``bridge.raw_statements``), not
through the ORM session; anything else falls back to the session. Each test breaks if the raw
path gives a different answer or different rows than the session path, stops being taken, or
loses the fallback (an unlinked contact, a role to look up)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from bridge.extensions import db
from bridge.inbound import service
from bridge.raw_statements import RawTransaction

from .payloads import fluent_tags, subscriber


@pytest.fixture
def raw_commits(monkeypatch) -> list[bool]:
    """One entry per raw transaction ended: True when it was committed."""
    ended: list[bool] = []
    original = RawTransaction.end

    def end(self: RawTransaction, *, failed: bool) -> None:
        ended.append(not failed)
        original(self, failed=failed)

    monkeypatch.setattr(RawTransaction, "end", end)
    return ended


def user_state(app, user_id: int) -> dict[str, Any]:
    with app.app_context():
        user = db.session.execute(
            text("SELECT email, role, first_name, last_name, meta FROM user_account WHERE id = :id"), {"id": user_id}
        ).one()
        tags = db.session.execute(
            text("SELECT name FROM user_tag WHERE user_id = :id ORDER BY name"), {"id": user_id}
        ).scalars()
        log = db.session.execute(
            text(
                "SELECT connection_name, action, contact_id, user_id, method, path, status_code, outcome, message,"
                " source_ip, payload FROM webhook_event WHERE user_id = :id ORDER BY id DESC"
            ),
            {"id": user_id},
        ).first()
        return {"user": tuple(user), "tags": list(tags), "log": tuple(log) if log else None}


def test_raw_and_session_paths_give_the_same_answer_and_rows(app, hook, fluent_key, raw_commits, monkeypatch):
    before = {"first_name": "Jane", "tags": fluent_tags("vip", "gold", "silver")}
    after = {"first_name": "Janet", "last_name": "Roe", "tags": fluent_tags("vip", "bronze", "trial")}
    ids = []
    for contact_id in (1, 2):
        email = f"u{contact_id}@example.com"
        added = hook("add", fluent_key, subscriber(contact_id=contact_id, email=email, **before))
        ids.append(added.get_json()["user_id"])

    raw = hook("update", fluent_key, subscriber(contact_id=1, email="u1@example.com", **after))
    assert raw_commits == [True]  # the raw transaction committed this update
    monkeypatch.setattr(service, "session_is_idle", lambda: False)  # the session path
    through_session = hook("update", fluent_key, subscriber(contact_id=2, email="u2@example.com", **after))
    assert raw_commits == [True]

    assert raw.status_code == through_session.status_code == 200
    raw_json, session_json = raw.get_json(), through_session.get_json()
    assert (raw_json["contact_id"], session_json["contact_id"]) == ("1", "2")
    assert raw_json["updated_fields"] == ["first_name", "last_name"]
    for body, user_id in ((raw_json, ids[0]), (session_json, ids[1])):
        assert body.pop("user_id") == user_id
        body.pop("contact_id")
    assert raw_json == session_json
    raw_rows, session_rows = user_state(app, ids[0]), user_state(app, ids[1])
    assert raw_rows["user"][1:] == session_rows["user"][1:] and raw_rows["tags"] == session_rows["tags"]
    assert raw_rows["tags"] == ["bronze", "trial", "vip"]
    raw_log, session_log = raw_rows["log"], session_rows["log"]
    assert raw_log[:2] == session_log[:2] == ("fluent", "update") and raw_log[4:9] == session_log[4:9]
    assert raw_log[5] == "/?wpf_action=update&access_key=[redacted]"


def test_an_unlinked_contact_falls_back_to_the_session(app, hook, fluent_key, raw_commits, table_counts):
    """Matched by email only: the raw transaction gives way (rolled back, nothing kept), the
    session path links the contact, and the request still writes exactly one log row."""
    added = hook("add", fluent_key, subscriber(contact_id=1, email="jane@example.com")).get_json()
    with app.app_context():
        db.session.execute(text("UPDATE contact_link SET unlinked_at = linked_at"))
        db.session.commit()
    before = table_counts()
    response = hook("update", fluent_key, subscriber(contact_id=1, email="jane@example.com", first_name="Janet"))
    body = response.get_json()
    assert response.status_code == 200 and body["matched"] and body["user_id"] == added["user_id"], body
    assert raw_commits == [False]
    after = table_counts()
    assert after["webhook_event"] - before["webhook_event"] == 1
    assert after["contact_link"] - before["contact_link"] == 1  # linked again by the session path
    assert user_state(app, added["user_id"])["user"][2] == "Janet"


def test_a_role_parameter_keeps_the_session_it_was_checked_in(app, hook, fluent_key, raw_commits):
    """``role=`` is checked before the unit, through the session: its transaction is open, so
    the unit joins it instead of beginning a raw one next to it."""
    with app.app_context():
        db.session.execute(text("INSERT INTO role (slug, title) VALUES ('editor', 'Editor')"))
        db.session.commit()
    added = hook("add", fluent_key, subscriber(contact_id=1, email="jane@example.com")).get_json()
    response = hook("update", fluent_key, subscriber(contact_id=1, email="jane@example.com"), role="editor")
    assert response.status_code == 200 and response.get_json()["updated_fields"] == ["role"], response.get_json()
    assert raw_commits == []
    assert user_state(app, added["user_id"])["user"][1] == "editor"


def test_an_unmatched_update_logs_once(app, hook, fluent_key, raw_commits, table_counts):
    before = table_counts()
    response = hook("update", fluent_key, subscriber(contact_id=99, email="nobody@example.com"))
    assert response.status_code == 200 and response.get_json()["matched"] is False
    assert table_counts()["webhook_event"] - before["webhook_event"] == 1
