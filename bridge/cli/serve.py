"""``crm-bridge serve``: the embedded default (``make serve``).

Creates or migrates the database, makes sure there is an admin login and a first connection
(both printed once, on the run that creates them), and starts the service with the inline
delivery worker.
"""

from __future__ import annotations

import click
from flask import current_app
from sqlalchemy import select

from bridge.cli.group import bridge_group


@bridge_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def serve_command(host: str, port: int) -> None:
    """Initialise and run the service on the embedded default."""
    from bridge.accounts.passwords import generate_password
    from bridge.accounts.users import ADMIN_ROLE, create_user, ensure_default_roles
    from bridge.connections import service as connections
    from bridge.database import upgrade_schema
    from bridge.extensions import db
    from bridge.models import User

    upgrade_schema()
    ensure_default_roles()
    base_url = current_app.config.get("BRIDGE_BASE_URL") or f"http://{host}:{port}"
    lines = [f"crm-bridge is starting on {base_url}", f"Admin console: {base_url}/admin/"]
    if db.session.scalar(select(User.id).where(User.role == ADMIN_ROLE).limit(1)) is None:
        password = generate_password(20)
        create_user(email="admin@localhost", username="admin", password=password, role=ADMIN_ROLE)
        lines.append(f"  first admin login: admin@localhost / {password}   (shown once; change it)")
    if not connections.any_connection_exists():
        connection, key = connections.create_connection("default", "fluentcrm")
        urls = connections.webhook_urls(base_url, key)
        lines += [
            f"A first connection '{connection.name}' (type fluentcrm) was created. Its access key, shown once:",
            f"  {key}",
            f"  add URL: {urls['add']}",
            "  set its CRM credentials: crm-bridge connection set default base_url=https://crm.example.com "
            "username=api app_password=...",
            f"  or in the console: {base_url}/admin/connections/default/edit",
        ]
    lines.append(
        "Create another connection: crm-bridge connection add NAME --type fluentcrm "
        "--set base_url=https://crm.example.com --set username=api --set app_password=... "
        f"(or in the console: {base_url}/admin/connections/new)"
    )
    db.session.commit()
    click.echo("\n".join(lines))
    if str(current_app.config.get("BRIDGE_WORKER", "off")).lower() == "inline":
        from bridge.delivery.inline_worker import start_inline

        start_inline(current_app._get_current_object())  # type: ignore[attr-defined]
    current_app.run(host=host, port=port, threaded=True, use_reloader=False)
