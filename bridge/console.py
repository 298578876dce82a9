"""The ``crm-bridge`` console script: the CLI group with the app built by ``create_app``.

Apart from ``bridge.cli`` because it needs the app factory, which itself imports the CLI to
register its commands: kept here, neither imports the other in a circle.

Run outside the project folder, the app would silently make a second instance (a new database
and secret key) in ``./instance``. The script refuses instead and says where it looked, unless
``BRIDGE_INSTANCE_PATH`` names the instance or the command is ``crm-bridge init`` (which is
how an instance is made on purpose).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click
from flask.cli import ScriptInfo

from bridge import create_app
from bridge.cli import register_commands
from bridge.cli.group import bridge_group

# Commands that may run without an instance: they make one, or need none.
NO_INSTANCE_NEEDED = frozenset({"init"})


def command_name(args: Sequence[str]) -> str | None:
    """The subcommand in ``args`` (the first word that is not an option)."""
    return next((arg for arg in args if not arg.startswith("-")), None)


def missing_instance(args: Sequence[str], environ: os._Environ[str] | dict[str, str], cwd: str) -> str | None:
    """Why this run must not go on (no instance where one is looked for), or None."""
    if environ.get("BRIDGE_INSTANCE_PATH") or "--help" in args or "-h" in args:
        return None
    command = command_name(args)
    if command is None or command in NO_INSTANCE_NEEDED:
        return None
    looked = os.path.join(os.path.abspath(cwd), "instance")
    if os.path.isdir(looked):
        return None
    return (
        f"no crm-bridge instance at {looked} (BRIDGE_INSTANCE_PATH is not set, so crm-bridge looked in "
        "./instance). Run crm-bridge from the project folder, set BRIDGE_INSTANCE_PATH to the instance "
        "folder, or run `crm-bridge init` here to create a new instance."
    )


def main() -> None:
    problem = missing_instance(sys.argv[1:], os.environ, os.getcwd())
    if problem:
        click.echo(f"Error: {problem}", err=True)
        sys.exit(1)
    register_commands()  # before parsing: the app (and init_app) is only built once a command runs
    bridge_group.main(prog_name="crm-bridge", obj=ScriptInfo(create_app=create_app))
