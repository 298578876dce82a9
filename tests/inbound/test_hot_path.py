"""The inbound hot path: the per-process access-key cache (and its invalidation) and the
statements an ``update`` costs. Each test breaks if the cache serves a stale answer in this
process, stops caching, or the update path goes back to per-row work."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import text
from support import statements

from bridge.extensions import db
from bridge.inbound import keys
from bridge.models import utcnow

from .payloads import fluent_tags, subscriber


def key_lookups(seen: list[str]) -> int:
    return sum(1 for s in seen if "FROM ACCESS_KEY" in s)


def test_second_webhook_with_the_same_key_reads_no_key(app, hook, fluent_key):
    assert hook("update", fluent_key, subscriber()).status_code == 200
    with statements(app) as seen:
        assert hook("update", fluent_key, subscriber()).status_code == 200
    assert key_lookups(seen) == 0


def test_rotating_with_no_grace_refuses_the_old_key_at_once(app, hook, runner, fluent_key):
    assert hook("test", fluent_key).status_code == 200  # cached now
    result = runner.invoke(args=["bridge", "access-key", "rotate", "fluent", "--grace", "0", "--json"])
    assert result.exit_code == 0, result.output
    new_key = json.loads(result.output)["access_key"]
    refused = hook("test", fluent_key)
    assert refused.status_code == 403 and refused.get_json()["error"] == "invalid_access_key"
    assert hook("test", new_key).status_code == 200


def test_removing_a_connection_refuses_its_key_at_once(app, hook, runner, make_connection, fluent_key):
    make_connection("other", "fluentcrm")  # so the answer is 403, not "not configured"
    assert hook("test", fluent_key).status_code == 200
    result = runner.invoke(args=["bridge", "connection", "remove", "fluent"])
    assert result.exit_code == 0, result.output
    assert hook("test", fluent_key).status_code == 403


def test_a_settings_change_applies_to_the_next_webhook(app, hook, runner, fluent_key):
    first = hook("add", fluent_key, subscriber(contact_id=1, email="one@example.com"))
    assert first.status_code == 200 and "password" not in first.get_json()
    result = runner.invoke(args=["bridge", "connection", "set", "fluent", "return_password_in_response=true"])
    assert result.exit_code == 0, result.output
    second = hook("add", fluent_key, subscriber(contact_id=2, email="two@example.com"))
    assert second.status_code == 200 and second.get_json()["password"]


def test_a_grace_period_ending_is_seen_even_while_cached(app, hook, fluent_key, monkeypatch):
    with app.app_context():
        db.session.execute(text("UPDATE access_key SET expires_at = :at"), {"at": utcnow() + timedelta(hours=1)})
        db.session.commit()
    assert hook("test", fluent_key).status_code == 200
    monkeypatch.setattr(keys, "utcnow", lambda: utcnow() + timedelta(hours=2))
    assert hook("test", fluent_key).status_code == 403


def test_a_change_made_elsewhere_is_seen_after_the_ttl(app, hook, fluent_key, monkeypatch):
    """Another process's change (here: SQL that fires no ORM event) waits out the TTL: the
    documented trade-off, bounded by ``BRIDGE_ACCESS_KEY_CACHE_SECONDS``."""
    assert hook("test", fluent_key).status_code == 200
    with app.app_context():
        db.session.execute(text("DELETE FROM access_key"))
        db.session.commit()
    assert hook("test", fluent_key).status_code == 200  # still cached in this process
    later = keys.time.monotonic() + keys.DEFAULT_TTL_SECONDS + 1
    monkeypatch.setattr(keys.time, "monotonic", lambda: later)
    assert hook("test", fluent_key).status_code == 403


def test_ttl_zero_turns_the_cache_off(app, hook, fluent_key):
    app.config["BRIDGE_ACCESS_KEY_CACHE_SECONDS"] = 0  # read when the app's cache is first built
    assert hook("test", fluent_key).status_code == 200
    with statements(app) as seen:
        assert hook("test", fluent_key).status_code == 200
    assert key_lookups(seen) == 1


def test_unchanged_update_writes_nothing_but_its_log_row(app, hook, fluent_key):
    body = subscriber(tags=fluent_tags("vip", "gold"))
    assert hook("add", fluent_key, body).status_code == 200
    with statements(app) as seen:
        response = hook("update", fluent_key, body)
    assert response.status_code == 200
    assert response.get_json()["updated_fields"] == [] and response.get_json()["tags_added"] == []
    writes = [s for s in seen if s.startswith(("INSERT", "UPDATE", "DELETE"))]
    assert len(writes) == 1 and writes[0].startswith("INSERT INTO WEBHOOK_EVENT"), writes


def test_changed_update_costs_one_statement_per_kind_of_change(app, hook, fluent_key):
    body = subscriber(tags=fluent_tags("vip", "gold", "silver"))
    assert hook("add", fluent_key, body).status_code == 200
    changed = subscriber(first_name="Janet", tags=fluent_tags("vip", "bronze", "trial"))
    with statements(app) as seen:
        response = hook("update", fluent_key, changed)
    data = response.get_json()
    assert data["updated_fields"] == ["first_name"]
    assert len(data["tags_added"]) == 2 and len(data["tags_removed"]) == 2
    work = [s for s in seen if not s.startswith(("BEGIN", "COMMIT", "ROLLBACK", "SELECT 1"))]
    # One read (user + tags), one UPDATE, one DELETE, one multi-row INSERT, the log row.
    assert [s.split()[0] for s in work] == ["SELECT", "UPDATE", "DELETE", "INSERT", "INSERT"], work
    with app.app_context():
        names = db.session.execute(text("SELECT name FROM user_tag ORDER BY name")).scalars().all()
        first_name = db.session.execute(text("SELECT first_name FROM user_account")).scalar_one()
    assert names == sorted(data["tags"]) and len(names) == 3 and first_name == "Janet"


def test_cached_key_redacts_each_leaf_of_a_json_secret(app, make_connection):
    """A custom webhook's ``auth`` is one JSON secret: its token, not the object's repr, must be
    among the values scrubbed from what the inbound path logs."""
    from bridge.inbound.keys import resolve_access_key

    key = make_connection(
        "hook",
        "custom_webhook",
        url="https://hooks.example.com/in",
        auth={"type": "bearer", "token": "tok-leaf-secret-123"},
    )
    with app.app_context():
        keyed = resolve_access_key(key)
        assert keyed is not None
        assert "tok-leaf-secret-123" in keyed.secrets


def test_add_of_a_new_user_reads_once_then_writes(app, hook, fluent_key):
    """A new user: one match (link or email), one check (role, email, username), then only
    writes; no read-back of links or tags it cannot have yet (it made 16 statements)."""
    assert hook("add", fluent_key, subscriber(contact_id=1, email="first@example.com")).status_code == 200
    body = subscriber(contact_id=2, email="new@example.com", tags=fluent_tags("vip", "gold"))
    with statements(app) as seen:
        response = hook("add", fluent_key, body)
    data = response.get_json()
    assert response.status_code == 200 and data["created"] and data["tags"] == ["vip", "gold"], data
    work = [s for s in seen if not s.startswith(("BEGIN", "COMMIT", "ROLLBACK", "SELECT 1"))]
    tables = [s.split()[0] + " " + s.split(" INTO ")[1].split()[0] if " INTO " in s else s.split()[0] for s in work]
    assert tables == [
        "SELECT",
        "SELECT",
        "INSERT USER_ACCOUNT",
        "INSERT CONTACT_LINK",
        "INSERT USER_TAG",
        "INSERT WEBHOOK_EVENT",
    ], work
    with app.app_context():
        link = db.session.execute(
            text("SELECT contact_id FROM contact_link WHERE user_id = :u"), {"u": data["user_id"]}
        )
        assert link.scalar_one() == "2"


def test_the_log_row_is_redacted_before_the_webhook_transaction_begins(app, hook, fluent_key, monkeypatch):
    """On SQLite the webhook's transaction holds the writer lock every other process waits
    for: the log row's path and payload are redacted when the request is read, and only
    assembled inside the transaction (they were redacted just before its INSERT)."""
    from bridge.inbound import log

    body = subscriber(tags=fluent_tags("vip"))
    assert hook("add", fluent_key, body).status_code == 200
    with statements(app) as seen:
        for name in ("scrubbed_path", "redact_body"):
            real = getattr(log, name)

            def marked(*args, _real=real, _name=name, **kwargs):
                seen.append(f"-- {_name}")
                return _real(*args, **kwargs)

            monkeypatch.setattr(log, name, marked)
        assert hook("update", fluent_key, body).status_code == 200
    assert seen[:2] == ["-- scrubbed_path", "-- redact_body"] and seen[-1].startswith("INSERT INTO WEBHOOK_EVENT")
    assert sum(1 for s in seen if s.startswith("-- ")) == 2, seen
    with app.app_context():
        path, payload = db.session.execute(text("SELECT path, payload FROM webhook_event ORDER BY id DESC")).first()
    assert path == "/?wpf_action=update&access_key=[redacted]" and json.loads(payload) == body
