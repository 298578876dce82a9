"""``bridge.raw_statements``: a statement run on the DBAPI cursor fails as SQLAlchemy's own
execution would, so the callers' race handling sees the failure it expects."""

from __future__ import annotations

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from bridge.extensions import db
from bridge.models import Role
from bridge.raw_statements import RawStatement

_INSERT_ROLE = RawStatement(insert(Role.__table__), column_keys=["slug", "title"])


def test_a_unique_violation_is_sqlalchemys_integrity_error(app) -> None:
    with app.app_context():
        _INSERT_ROLE.execute({"slug": "editor", "title": "Editor"})
        with pytest.raises(IntegrityError):
            _INSERT_ROLE.execute({"slug": "editor", "title": "Editor again"})
        db.session.rollback()
        _INSERT_ROLE.execute({"slug": "editor", "title": "Editor"})  # the session is usable again
        db.session.commit()
