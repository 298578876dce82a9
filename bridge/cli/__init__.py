"""The ``crm-bridge`` CLI (also ``flask --app app bridge …``).

``group`` holds the command group and what every command shares; the other modules attach their
commands to it on import. Every command takes ``--json``. Commands are thin: parse options, call a
service, print.
"""

from __future__ import annotations

from flask import Flask

from bridge.cli.group import bridge_group


def register_commands() -> None:
    """Import the command modules: their commands attach to ``bridge_group`` on import."""
    from bridge.cli import batches, connections, deliveries, serve, users  # noqa: F401


def init_app(app: Flask) -> None:
    register_commands()
    app.cli.add_command(bridge_group)
