"""The ``crm-bridge`` console script: the CLI group with the app built by ``create_app``.

Apart from ``bridge.cli`` because it needs the app factory, which itself imports the CLI to
register its commands: kept here, neither imports the other in a circle.
"""

from __future__ import annotations

from flask.cli import ScriptInfo

from bridge import create_app
from bridge.cli import register_commands
from bridge.cli.group import bridge_group


def main() -> None:
    register_commands()  # before parsing: the app (and init_app) is only built once a command runs
    bridge_group.main(prog_name="crm-bridge", obj=ScriptInfo(create_app=create_app))
