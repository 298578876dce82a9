"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import os
import uuid

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from bridge.database import upgrade_schema
from bridge.extensions import db
from bridge.models import ApiToken, utcnow

PG_URL = os.environ.get("BRIDGE_TEST_DATABASE_URL", "")

# The revision before api_token.name became unique.
BEFORE_UNIQUE_TOKEN_NAMES = "85b1bc33bff7"


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


def run_on_postgres(statement: str) -> None:
    engine = create_engine(PG_URL)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture
def migrated_app(backend, tmp_path, monkeypatch):
    """``migrated_app(revision="head")``: an app whose schema is built by the migrations alone,
    on SQLite (a new file) or PostgreSQL (a new schema in the test database, dropped after)."""
    from bridge import create_app

    monkeypatch.setenv("BRIDGE_INSTANCE_PATH", str(tmp_path / "inst"))
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/migrated.sqlite3"
    else:
        schema = f"migrated_{uuid.uuid4().hex[:12]}"
        run_on_postgres(f'CREATE SCHEMA "{schema}"')
        url = PG_URL + ("&" if "?" in PG_URL else "?") + f"options=-csearch_path%3D{schema}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "k"})

    def migrate(revision: str = "head"):
        with app.app_context():
            flask_migrate.upgrade(revision=revision)
        return app

    yield migrate
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if backend == "postgresql":
        run_on_postgres(f'DROP SCHEMA "{schema}" CASCADE')


def test_the_migrated_schema_keeps_api_token_names_unique(migrated_app) -> None:
    app = migrated_app()
    with app.app_context():
        constraints = inspect(db.engine).get_unique_constraints("api_token")
        assert {"name": "uq_api_token_name", "column_names": ["name"]} in [
            {"name": c["name"], "column_names": c["column_names"]} for c in constraints
        ]
        db.session.add(ApiToken(name="ci", token_hash="a" * 64))
        db.session.commit()
        db.session.add(ApiToken(name="ci", token_hash="b" * 64))
        with pytest.raises(IntegrityError):
            db.session.commit()


def test_the_migration_renames_the_duplicate_names_an_older_database_may_hold(migrated_app) -> None:
    app = migrated_app(BEFORE_UNIQUE_TOKEN_NAMES)
    with app.app_context():
        for name, digit in [("ci", "a"), ("ci", "b"), ("zapier", "c"), ("ci", "d")]:
            db.session.execute(insert(ApiToken).values(name=name, token_hash=digit * 64, created_at=utcnow()))
        db.session.commit()
    migrated_app()
    with app.app_context():
        rows = db.session.execute(select(ApiToken.token_hash, ApiToken.name).order_by(ApiToken.id)).all()
    # Every token still works (none deleted); the oldest keeps the name, the others get their id.
    assert [(token_hash[0], name) for token_hash, name in rows] == [
        ("a", "ci"),
        ("b", "ci #2"),
        ("c", "zapier"),
        ("d", "ci #4"),
    ]
