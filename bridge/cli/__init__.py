"""The ``bridge`` CLI group (``flask --app app bridge …`` or ``crm-bridge …``).

Every command takes ``--json``. Commands are thin: parse options, call a service, print.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup, ScriptInfo

bridge_group = AppGroup("bridge", help="crm-bridge administration.")

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
    from bridge.database import upgrade_schema
    from bridge.extensions import db
    from bridge.users import ensure_default_roles

    upgrade_schema()
    ensure_default_roles()
    db.session.commit()
    emit(
        {"success": True, "database": db.engine.url.render_as_string(hide_password=True)},
        as_json,
        lambda d: f"Database ready: {d['database']}",
    )


def register_commands() -> None:
    """Import the command modules: their commands attach to ``bridge_group`` on import."""
    from bridge.cli import connections, deliveries, serve, users  # noqa: F401


def init_app(app: Flask) -> None:
    register_commands()
    app.cli.add_command(bridge_group)


def main() -> None:
    """Console script ``crm-bridge``: the ``bridge`` group with the app loaded from ``create_app``."""
    from bridge import create_app

    register_commands()  # before parsing: the app (and init_app) is only built once a command runs
    bridge_group.main(prog_name="crm-bridge", obj=ScriptInfo(create_app=create_app))
