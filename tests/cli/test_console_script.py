"""The console script ``crm-bridge …`` is the ``bridge`` group of ``flask --app app``: run as a
real process against a temporary SQLite instance, then read back through the app's own CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bridge import create_app
from bridge.extensions import db

REPO_ROOT = Path(__file__).resolve().parents[2]
CRM_BRIDGE = Path(sys.executable).parent / "crm-bridge"


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CRM_BRIDGE), *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_crm_bridge_and_flask_bridge_are_the_same_commands(tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "DATABASE_URL", "SECRET_KEY", "CRM_"))}
    env.update(BRIDGE_INSTANCE_PATH=str(tmp_path / "instance"), DATABASE_URL=f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    for name in ("BRIDGE_INSTANCE_PATH", "DATABASE_URL"):
        monkeypatch.setenv(name, env[name])
    for name in ("SECRET_KEY", "BRIDGE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    app = create_app()  # what `flask --app app` loads
    flask_bridge = app.test_cli_runner()
    init = flask_bridge.invoke(args=["bridge", "init", "--json"])
    assert init.exit_code == 0, init.output

    # One real process (startup costs ~2 s): subcommands live in modules imported at
    # registration, and this failed when main() parsed before importing them.
    added = run(["connection", "add", "fluent", "--type", "fluentcrm", "--json"], env)
    assert added.returncode == 0, added.stderr
    key = json.loads(added.stdout)["access_key"]

    listed = flask_bridge.invoke(args=["bridge", "connection", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    items = json.loads(listed.stdout)["items"]
    assert [(i["name"], i["access_keys"][0]["hint"]) for i in items] == [("fluent", "…" + key[-4:])]
    assert key not in listed.stdout
    with app.app_context():
        db.engine.dispose()
