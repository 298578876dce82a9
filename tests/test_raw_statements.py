"""``bridge.raw_statements``: a statement run on the DBAPI cursor fails as SQLAlchemy's own
execution would, so the callers' race handling sees the failure it expects; a raw transaction
commits without the session, and refuses the session inside it."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from bridge.extensions import db
from bridge.models import Role
from bridge.raw_statements import RawStatement, SessionNeeded, raw_transaction

_INSERT_ROLE = RawStatement(insert(Role.__table__), column_keys=["slug", "title"])


def test_a_unique_violation_is_sqlalchemys_integrity_error(app) -> None:
    with app.app_context():
        _INSERT_ROLE.execute({"slug": "editor", "title": "Editor"})
        with pytest.raises(IntegrityError):
            _INSERT_ROLE.execute({"slug": "editor", "title": "Editor again"})
        db.session.rollback()
        _INSERT_ROLE.execute({"slug": "editor", "title": "Editor"})  # the session is usable again
        db.session.commit()


def _role_slugs() -> list[str]:
    slugs = sorted(db.session.scalars(select(Role.slug)))
    db.session.rollback()  # a raw transaction begins only while the session holds none
    return slugs


def test_a_raw_transaction_commits_without_the_session(app) -> None:
    with app.app_context():
        with raw_transaction():
            _INSERT_ROLE.execute({"slug": "editor", "title": "Editor"})
        assert not db.session.registry.has() or not db.session().in_transaction()
        assert "editor" in _role_slugs()


def test_the_session_inside_a_raw_transaction_is_refused_and_nothing_is_kept(app) -> None:
    """On SQLite the session's own connection would wait for the writer lock the raw one
    holds: it is refused before it begins, the raw writes are rolled back, the lock released."""
    with app.app_context():
        with pytest.raises(SessionNeeded), raw_transaction():
            _INSERT_ROLE.execute({"slug": "editor", "title": "Editor"})
            db.session.execute(select(Role.id))
        db.session.rollback()
        assert "editor" not in _role_slugs()
        _INSERT_ROLE.execute({"slug": "author", "title": "Author"})  # the session writes again
        db.session.commit()
        assert "author" in _role_slugs()


def test_a_unique_violation_in_a_raw_transaction_rolls_it_back(app) -> None:
    with app.app_context():
        with pytest.raises(IntegrityError), raw_transaction():
            _INSERT_ROLE.execute({"slug": "editor", "title": "Editor"})
            _INSERT_ROLE.execute({"slug": "editor", "title": "Editor again"})
        assert "editor" not in _role_slugs()
        with raw_transaction():
            _INSERT_ROLE.execute({"slug": "editor", "title": "Editor"})
        assert "editor" in _role_slugs()


def test_a_raw_transaction_next_to_an_open_session_transaction_is_refused(app) -> None:
    with app.app_context():
        db.session.execute(select(Role.id))
        with pytest.raises(RuntimeError, match="session"), raw_transaction():
            pass
        db.session.rollback()
