"""The ``crm-bridge`` command group (``flask --app app bridge``) and what every command shares
(``--json``, output, failures).

Every command takes ``--json``. Commands are thin: parse options, call a service, print.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

import click
from flask import Flask, has_app_context
from flask.cli import AppGroup, ScriptInfo
from sqlalchemy import inspect, select
from sqlalchemy.exc import DBAPIError

# Commands that create or migrate the schema themselves.
SCHEMA_COMMANDS = frozenset({"init", "serve"})


def is_missing_table(error: BaseException) -> bool:
    """SQLite's "no such table" or PostgreSQL's undefined_table (SQLSTATE 42P01)."""
    if not isinstance(error, DBAPIError):
        return False
    return getattr(error.orig, "sqlstate", None) == "42P01" or str(error.orig).startswith("no such table")


def missing_schema_message(app: Flask) -> str:
    """One line: which database (password hidden) and what to run."""
    from bridge.extensions import db

    if has_app_context():  # flask's group keeps one open: end its failed transaction (SQLite's write lock)
        db.session.remove()
    with app.app_context():
        url = db.engine.url.render_as_string(hide_password=True)
        try:
            tables = set(inspect(db.engine).get_table_names())
        except DBAPIError:
            tables = set()
    if tables & set(db.metadata.tables):
        return f"the crm-bridge schema in the database at {url} is out of date: run `crm-bridge init` to migrate it"
    return f"the database at {url} has no crm-bridge schema: run `crm-bridge init` first"


class BridgeGroup(AppGroup):
    """The ``bridge`` group. A command run against a database without the schema (no ``crm-bridge
    init`` yet) answers one line and exits 1 instead of a SQLAlchemy traceback. Only a missing
    table is caught: any other database error still surfaces as it is."""

    def invoke(self, ctx: click.Context) -> Any:
        as_json = "--json" in ctx.args  # read now: invoking consumes the arguments
        try:
            return super().invoke(ctx)
        except DBAPIError as error:
            if ctx.invoked_subcommand in SCHEMA_COMMANDS or not is_missing_table(error):
                raise
            app = ctx.ensure_object(ScriptInfo).load_app()
            fail(missing_schema_message(app), as_json, "no_schema")


bridge_group = BridgeGroup(
    "bridge",
    help=(
        "crm-bridge administration: connections, users, tokens, deliveries. Run it in the project "
        "folder (its instance/ holds the database and secret key) or set BRIDGE_INSTANCE_PATH."
    ),
)


def require_schema() -> None:
    """Fail at once (with ``BridgeGroup``'s one line) when the schema is missing: for commands
    that would otherwise catch and log the error on every turn (the worker)."""
    from bridge.extensions import db
    from bridge.models import Delivery

    db.session.execute(select(Delivery.id).limit(1))
    db.session.rollback()


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def emit(data: Any, as_json: bool, render: Callable[[Any], str] | None = None) -> None:
    """Print ``data`` as JSON, or as text through ``render``."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(render(data) if render else str(data))


def fail(message: str, as_json: bool = False, code: str = "error", extra: Mapping[str, Any] | None = None) -> None:
    """Exit 1 with a clear message (a JSON object with --json, with ``extra`` fields)."""
    if as_json:
        click.echo(json.dumps({"success": False, "error": code, "message": message, **(extra or {})}))
    else:
        click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@bridge_group.command("init")
@json_option
def init_command(as_json: bool) -> None:
    """Create or migrate the schema; create the roles subscriber and administrator."""
    from bridge.accounts.users import ensure_default_roles
    from bridge.database import upgrade_schema
    from bridge.extensions import db

    upgrade_schema()
    ensure_default_roles()
    db.session.commit()
    emit(
        {"success": True, "database": db.engine.url.render_as_string(hide_password=True)},
        as_json,
        lambda d: f"Database ready: {d['database']}",
    )
