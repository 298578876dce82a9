"""A thread that holds SQLite's write lock in its session's transaction cannot write through a
connection of its own: the write would wait out the busy timeout (30 s) for its own thread.
``end_transaction`` ends the session's transaction before slow work (a CRM call) and keeps what
it loaded; the database rate-limit storage refuses at once (``WriteLockHeld``) to write under a
held lock, so a forgotten ``end_transaction`` fails loudly instead of stalling every writer."""

from __future__ import annotations

import pytest
import responses
from sqlalchemy import select
from support import CrmCallProbe, short_sqlite_busy_timeout, statements

from bridge.database import WriteLockHeld, end_transaction, holds_write_lock
from bridge.extensions import db
from bridge.models import Role
from bridge.ratelimit import DatabaseStorage


def test_the_storage_refuses_to_count_under_the_threads_own_write_lock(app, backend):
    with app.app_context():
        storage = DatabaseStorage(db.engine)
        db.session.scalar(select(Role.id).limit(1))  # the session's transaction begins
        if backend == "sqlite":
            assert holds_write_lock()
            with short_sqlite_busy_timeout(app), pytest.raises(WriteLockHeld, match="end_transaction"):
                storage.incr("crm-rate:1:1", 10)
        else:  # PostgreSQL has no database-wide write lock: the count goes through
            assert not holds_write_lock() and storage.incr("crm-rate:1:1", 10) == 1
        end_transaction()
        assert not holds_write_lock()
        assert storage.incr("crm-rate:1:1", 10) == (1 if backend == "sqlite" else 2)
        assert not holds_write_lock()  # the storage's own transaction let go of the lock


def test_end_transaction_commits_and_keeps_what_the_session_loaded(app):
    with app.app_context():
        role = db.session.scalar(select(Role).where(Role.slug == "subscriber"))
        db.session.add(Role(slug="added-before", title="Added"))
        with statements(app) as seen:
            end_transaction()
            assert role.title  # still loaded: no query
        assert not db.session().in_transaction()
        assert [s for s in seen if s.startswith("SELECT")] == []
        assert db.session().expire_on_commit  # the session's own setting is back
    with app.app_context():  # committed, not rolled back
        assert db.session.scalar(select(Role.id).where(Role.slug == "added-before"))


def test_end_transaction_without_a_transaction_does_nothing(app):
    with app.app_context(), statements(app) as seen:
        end_transaction()
    assert seen == []


@responses.activate
def test_a_crm_call_left_inside_a_transaction_fails_at_once_and_says_why(
    app, client, auth_headers, make_connection, backend, monkeypatch
):
    """Should a path forget ``end_transaction`` (here: the connection test), a rate-limited
    CRM's request is refused before anything is sent, naming the mistake: not a 503 after the
    busy timeout. (The test client re-raises what a served app answers with a 500.)"""
    from bridge.connections import service

    if backend != "sqlite":
        pytest.skip("only SQLite has a database-wide write lock")
    monkeypatch.setattr(service, "end_transaction", lambda: None)
    make_connection("hub", "hubspot", access_token="pat-na1-forgotten")
    probe = CrmCallProbe({"results": []}).register("https://api.hubapi.com")
    with short_sqlite_busy_timeout(app), pytest.raises(WriteLockHeld, match="before calling a CRM"):
        client.post("/api/connections/hub/test", headers=auth_headers)
    assert probe.calls == []
