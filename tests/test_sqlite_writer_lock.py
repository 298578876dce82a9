"""SQLite writers queue on a file lock held exactly for the length of a write transaction, so a
waiting writer is woken when the lock is free instead of sleeping in SQLite's busy handler."""

from __future__ import annotations

import fcntl
import os

import pytest
from sqlalchemy import text

from bridge.extensions import db


@pytest.fixture
def sqlite_app(tmp_path, monkeypatch):
    from bridge import create_app

    monkeypatch.setenv("BRIDGE_INSTANCE_PATH", str(tmp_path / "instance"))
    application = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/lock.sqlite3", "SECRET_KEY": "k"})
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def lock_is_free(path: str) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops a lock we may have taken
    return True


def test_write_transaction_holds_the_lock_until_commit_and_rollback(sqlite_app):
    with sqlite_app.app_context():
        path = db.engine.url.database + ".writer-lock"
        db.session.execute(text("SELECT 1"))  # begins: BEGIN IMMEDIATE under the lock
        assert not lock_is_free(path)
        db.session.commit()
        assert lock_is_free(path)
        db.session.execute(text("SELECT 1"))
        assert not lock_is_free(path)
        db.session.rollback()
        assert lock_is_free(path)
