"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from bridge.database import upgrade_schema
from bridge.extensions import db


def test_migrations_match_models(tmp_path, monkeypatch):
    from bridge import create_app

    monkeypatch.setenv("BRIDGE_INSTANCE_PATH", str(tmp_path / "inst"))
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/migrated.sqlite3", "SECRET_KEY": "k"})
    with app.app_context():
        upgrade_schema()
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
        assert diff == []
        assert "user_account" in inspect(db.engine).get_table_names()
        db.engine.dispose()


def test_bridge_init_is_idempotent_and_creates_roles(runner, app):
    from sqlalchemy import select

    from bridge.models import Role

    with app.app_context():
        db.drop_all()
    for _ in range(2):
        result = runner.invoke(args=["bridge", "init", "--json"])
        assert result.exit_code == 0, result.output
    with app.app_context():
        assert set(db.session.scalars(select(Role.slug))) == {"subscriber", "administrator"}
