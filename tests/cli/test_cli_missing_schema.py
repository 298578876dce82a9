"""``bridge …`` against a database that was never initialised: one clear line and exit 1 (a
JSON error with ``--json``), not a SQLAlchemy traceback; other database errors still surface.

On PostgreSQL the "fresh database" is an empty schema put first on the search path."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import FlaskGroup
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from bridge import create_app
from bridge.cli.group import missing_schema_message
from bridge.extensions import db

PG_URL = os.environ.get("BRIDGE_TEST_DATABASE_URL")
EMPTY_SCHEMA = "bridge_cli_no_schema"
COMMANDS = [
    ("connection", "list"),
    ("connection", "show", "fluent"),
    ("connection", "set", "fluent", "username=x"),
    ("user", "list"),
    ("deliveries", "list"),
    ("worker", "--once"),
]


@pytest.fixture
def bare_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database URL with no crm-bridge tables."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'never-initialised.sqlite3'}"
        return
    assert PG_URL
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {EMPTY_SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {EMPTY_SCHEMA}"))
    url = make_url(PG_URL)
    yield url.update_query_dict({"options": f"-csearch_path={EMPTY_SCHEMA}"}).render_as_string(hide_password=False)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {EMPTY_SCHEMA} CASCADE"))
    engine.dispose()


@pytest.fixture
def bare_app(bare_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    for name in ("DATABASE_URL", "SECRET_KEY", "BRIDGE_WORKER", "BRIDGE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BRIDGE_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": bare_url, "SECRET_KEY": "k" * 40})
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def shown_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def expected_line(url: str) -> str:
    return f"Error: the database at {shown_url(url)} has no crm-bridge schema: run `crm-bridge init` first\n"


def flask_cli(app: Flask, *args: str):
    """Run as ``flask --app app bridge …`` does: FlaskGroup keeps an app context open around
    the command (on SQLite a failed statement's transaction then still holds the write lock)."""
    group = FlaskGroup(create_app=lambda: app, add_default_commands=False, load_dotenv=False)
    return CliRunner().invoke(group, ["bridge", *args])


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_commands_answer_one_line_and_exit_1(bare_app, bare_url, command):
    result = bare_app.test_cli_runner().invoke(args=["bridge", *command])
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    assert result.stderr == expected_line(bare_url)
    assert result.stdout == ""


def test_under_the_flask_command_too(bare_app, bare_url):
    started = time.monotonic()
    result = flask_cli(bare_app, "connection", "list")
    assert (result.exit_code, result.stderr) == (1, expected_line(bare_url)), result.output
    assert time.monotonic() - started < 10  # not waiting out SQLite's busy timeout on our own lock


def test_json_gets_a_json_error(bare_app, bare_url):
    result = bare_app.test_cli_runner().invoke(args=["bridge", "connection", "list", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "success": False,
        "error": "no_schema",
        "message": f"the database at {shown_url(bare_url)} has no crm-bridge schema: run `crm-bridge init` first",
    }


def test_the_database_password_is_not_shown(tmp_path, monkeypatch):
    """A PostgreSQL URL with a password (nothing listens on port 1: the schema check fails to
    connect, and the line still names the database without its password)."""
    url = "postgresql+psycopg://crm:made-up-db-password@127.0.0.1:1/crm"
    monkeypatch.setenv("BRIDGE_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    message = missing_schema_message(app)
    shown = "postgresql+psycopg://crm:***@127.0.0.1:1/crm"
    assert message == f"the database at {shown} has no crm-bridge schema: run `crm-bridge init` first"
    assert "made-up-db-password" not in message


def test_init_then_works_and_a_later_missing_table_says_migrate(bare_app, bare_url):
    runner = bare_app.test_cli_runner()
    assert runner.invoke(args=["bridge", "init"]).exit_code == 0
    assert runner.invoke(args=["bridge", "connection", "list"]).exit_code == 0
    with bare_app.app_context(), db.engine.begin() as conn:
        conn.execute(text("DROP TABLE delivery_attempt"))
        conn.execute(text("DROP TABLE delivery"))
    result = runner.invoke(args=["bridge", "deliveries", "list"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: the crm-bridge schema in the database at {shown_url(bare_url)} is out of date: "
        "run `crm-bridge init` to migrate it\n"
    )


def test_other_database_errors_still_surface(bare_app, monkeypatch):
    from bridge.connections import service as connections

    def broken() -> list:
        raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(connections, "list_connections", broken)
    result = bare_app.test_cli_runner().invoke(args=["bridge", "connection", "list"])
    assert isinstance(result.exception, OperationalError)
