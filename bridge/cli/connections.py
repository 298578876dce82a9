"""CLI: ``crm-bridge connection …`` and ``crm-bridge access-key rotate``.

An access key is printed in full exactly twice in its life: by ``connection add`` and by
``access-key rotate``, the commands that make it. Everything else shows its last four
characters at most, and secret settings masked.
"""

from __future__ import annotations

import json
from typing import Any

import click
from flask.cli import AppGroup

from bridge.cli.group import bridge_group, emit, fail, json_option
from bridge.connections import service as connections
from bridge.connections import settings as connection_settings
from bridge.connections.adapter_registry import UnknownAdapterType, adapter_types
from bridge.extensions import db
from bridge.models import Connection
from crm_adapters.errors import AdapterError

# AppGroups, so their commands run inside an app context (with_appcontext).
connection_group = AppGroup("connection", help="Create, inspect, change, test and remove CRM connections.")
access_key_group = AppGroup("access-key", help="Rotate a connection's access key.")
for _group in (connection_group, access_key_group):
    bridge_group.add_command(_group)


def parse_assignments(pairs: tuple[str, ...], as_json: bool) -> dict[str, Any]:
    """``KEY=VALUE`` pairs → settings changes. ``KEY=null`` removes a setting; ``KEY=`` with
    nothing after it is refused, so a typo never silently blanks a credential."""
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            fail(f"expected KEY=VALUE, got {pair.split('=', 1)[0]!r}", as_json, "invalid_argument")
        if raw == "":
            fail(f"{key}= has no value (use {key}=null to remove the setting)", as_json, "invalid_argument")
        changes[key] = connection_settings.parse_cli_value(raw)
    return changes


def require_connection(name: str, as_json: bool) -> Connection:
    connection = connections.get_connection(name)
    if connection is None:
        fail(f"no connection named {name!r} (see: crm-bridge connection list)", as_json, "not_found")
    return connection  # type: ignore[return-value]  (fail() exits)


def fail_invalid(error: connection_settings.InvalidConnection, as_json: bool) -> None:
    """Print every problem, not just the first, so one run fixes them all."""
    db.session.rollback()
    if as_json:
        click.echo(
            json.dumps(
                {"success": False, "error": "invalid_connection", "message": str(error), "problems": error.problems}
            )
        )
        raise SystemExit(1)
    click.echo("Error: the connection was not saved:", err=True)
    for problem in error.problems:
        click.echo(f"  - {problem}", err=True)
    raise SystemExit(1)


def render_new_key(data: dict[str, Any], headline: str) -> str:
    lines = [
        headline,
        "",
        f"Access key (shown once; store it now): {data['access_key']}",
        "",
        "Webhook URLs for the CRM:",
    ]
    lines += [f"  {action:<12} {url}" for action, url in data["webhook_urls"].items()]
    return "\n".join(lines)


def render_connection(data: dict[str, Any]) -> str:
    keys = ", ".join(
        key["hint"] + (f" (expires {key['expires_at']})" if key["expires_at"] else "") for key in data["access_keys"]
    )
    lines = [
        f"{data['name']} ({data['type']}){'' if data['enabled'] else '  [disabled]'}",
        f"  access keys: {keys or 'none'}",
        "  settings:",
    ]
    lines += [f"    {name} = {json.dumps(value, ensure_ascii=False)}" for name, value in data["settings"].items()]
    if data["missing_settings"]:
        lines.append(f"  missing required settings: {', '.join(data['missing_settings'])}")
    else:
        lines.append("  missing required settings: none")
    if data["unreadable_settings"]:
        lines.append(f"  unreadable secrets: {unreadable_note(data)}")
    return "\n".join(lines)


def unreadable_note(data: dict[str, Any]) -> str:
    """``app_password (encrypted with another SECRET_KEY: …)`` for a connection's JSON."""
    names = data["unreadable_settings"]
    return f"{', '.join(names)} ({connection_settings.unreadable_hint(data['name'], names)})"


def fail_unreadable(error: connection_settings.UnreadableSecrets, as_json: bool) -> None:
    fail(str(error), as_json, "secret_unreadable", extra={"unreadable_settings": error.names})


@connection_group.command("add")
@click.argument("name")
@click.option("--type", "type_slug", required=True, help="Adapter type, e.g. fluentcrm.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="A setting (repeatable).")
@json_option
def add_command(name: str, type_slug: str, assignments: tuple[str, ...], as_json: bool) -> None:
    """Create a connection; prints its access key once and its webhook URLs."""
    changes = parse_assignments(assignments, as_json)
    try:
        connection, key = connections.create_connection(name, type_slug, changes)
    except UnknownAdapterType as exc:
        fail(str(exc), as_json, "unknown_type")
    except connections.ConnectionExists as exc:
        fail(str(exc), as_json, "connection_exists")
    except connection_settings.InvalidConnection as exc:
        fail_invalid(exc, as_json)
    db.session.commit()
    data = {
        "name": connection.name,
        "type": connection.type,
        "access_key": key,
        "webhook_urls": connections.webhook_urls(connections.base_url(), key),
    }
    missing = connection_settings.missing_settings(connection)
    headline = f"Connection {connection.name!r} ({connection.type}) created."
    if missing:
        headline += f"\nStill to set: {', '.join(missing)} (crm-bridge connection set {connection.name} KEY=VALUE …)"
    emit(data, as_json, lambda d: render_new_key(d, headline))


@connection_group.command("list")
@json_option
def list_command(as_json: bool) -> None:
    """Every connection: type, enabled, key hint, missing settings (no secrets)."""
    items = [connections.connection_to_json(c) for c in connections.list_connections()]

    def render(data: dict[str, Any]) -> str:
        if not data["items"]:
            return "No connections. Create one: crm-bridge connection add NAME --type TYPE"
        rows = [f"{'NAME':<20} {'TYPE':<16} {'ENABLED':<8} {'KEY':<8} MISSING"]
        for item in data["items"]:
            hint = item["access_keys"][-1]["hint"] if item["access_keys"] else "-"
            missing = ", ".join(item["missing_settings"]) or "-"
            rows.append(
                f"{item['name']:<20} {item['type']:<16} {'yes' if item['enabled'] else 'no':<8} {hint:<8} {missing}"
            )
        notes = [f"{i['name']}: cannot decrypt {unreadable_note(i)}" for i in data["items"] if i["unreadable_settings"]]
        return "\n".join(rows + (["", *notes] if notes else []))

    emit({"items": items, "total": len(items)}, as_json, render)


@connection_group.command("show")
@click.argument("name")
@json_option
def show_command(name: str, as_json: bool) -> None:
    """One connection's settings (secrets masked) and what is still missing."""
    connection = require_connection(name, as_json)
    emit(connections.connection_to_json(connection), as_json, render_connection)


@connection_group.command("set")
@click.argument("name")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE…")
@json_option
def set_command(name: str, assignments: tuple[str, ...], as_json: bool) -> None:
    """Change settings (validated; nothing is saved if any is invalid). KEY=null removes one."""
    connection = require_connection(name, as_json)
    changes = parse_assignments(assignments, as_json)
    try:
        connection_settings.apply_settings(connection, changes)
    except connection_settings.InvalidConnection as exc:
        fail_invalid(exc, as_json)
    db.session.commit()
    data = connections.connection_to_json(connection)
    if data["unreadable_settings"] and not as_json:
        click.echo(f"Warning: kept as they are, still unreadable: {unreadable_note(data)}", err=True)
    emit(data, as_json, lambda d: "Saved.\n" + render_connection(d))


@connection_group.command("test")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Render the requests a new registration would send; send nothing.")
@json_option
def test_command(name: str, dry_run: bool, as_json: bool) -> None:
    """Call the CRM once with the connection's credentials (or render a registration push)."""
    connection = require_connection(name, as_json)
    if dry_run:
        run_dry(connection, as_json)
        return
    try:
        note = connections.check_connection(connection)
    except connection_settings.UnreadableSecrets as exc:
        fail_unreadable(exc, as_json)
    except connection_settings.IncompleteConnection as exc:
        fail(str(exc), as_json, "incomplete_connection")
    except AdapterError as exc:
        report_check_failure(connection, exc, as_json)
    except NotImplementedError:
        fail(f"the {connection.type} adapter cannot test a connection", as_json, "not_supported")
    emit(
        {"ok": True, "name": connection.name, "reached": note is None, "note": note},
        as_json,
        lambda d: f"OK: {d['name']}: {d['note']}." if d["note"] else f"OK: {d['name']} reached the CRM.",
    )


def report_check_failure(connection: Connection, error: AdapterError, as_json: bool) -> None:
    """The typed error (class, CRM status, message), then exit 1."""
    data = {
        "ok": False,
        "name": connection.name,
        "error_class": error.error_class,
        "status": error.status,
        "message": error.message,
    }
    if as_json:
        click.echo(json.dumps(data))
    else:
        status = f" (HTTP {error.status})" if error.status else ""
        click.echo(f"FAILED: {connection.name}: {error.error_class}{status}: {error.message}", err=True)
    raise SystemExit(1)


def run_dry(connection: Connection, as_json: bool) -> None:
    try:
        from bridge.connections.dry_run import dry_run  # written alongside; imported lazily
    except ImportError:
        fail("dry runs are not available in this build", as_json, "not_supported")
    try:
        result = dry_run(connection, preset="new_us_user", send=False)
    except connection_settings.UnreadableSecrets as exc:
        fail_unreadable(exc, as_json)
    except AdapterError as exc:
        report_check_failure(connection, exc, as_json)
    emit(result, as_json, render_dry_run)


def render_dry_run(result: Any) -> str:
    """Each request (method, URL, headers with secrets masked, body) and the answer it got (a
    stand-in when nothing was sent), then the error, if any; anything unexpected is JSON."""
    requests = result.get("requests") if isinstance(result, dict) else None
    if not isinstance(requests, list):
        return json.dumps(result, indent=2, default=str)
    answers = result.get("responses") or []
    sent = bool(result.get("send"))
    blocks = []
    for index, item in enumerate(requests):
        if not isinstance(item, dict):
            blocks.append(json.dumps(item, default=str))
            continue
        lines = [f"{item.get('method', '?')} {item.get('url', '?')}"]
        lines += [f"{header}: {value}" for header, value in (item.get("request_headers") or {}).items()]
        body = item.get("request_body")
        if body not in (None, ""):
            lines += ["", body if isinstance(body, str) else json.dumps(body, indent=2, default=str)]
        answer = answers[index] if index < len(answers) and isinstance(answers[index], dict) else None
        if answer:
            label = "answered" if sent else "stand-in answer, not sent"
            lines += ["", f"→ {answer.get('status')} ({label}): {answer.get('response_body') or ''}"]
        blocks.append("\n".join(lines))
    error = result.get("error")
    if isinstance(error, dict):
        blocks.append(f"error: {error.get('error_class')}: {error.get('message')}")
    return "\n\n".join(blocks) or "(no requests)"


@connection_group.command("remove")
@click.argument("name")
@json_option
def remove_command(name: str, as_json: bool) -> None:
    """Delete a connection (its keys, tags, links and queued deliveries). Needs the exact name."""
    connection = require_connection(name, as_json)
    connections.remove_connection(connection)
    db.session.commit()
    emit({"success": True, "name": name, "removed": True}, as_json, lambda d: f"Removed connection {d['name']!r}.")


@connection_group.command("types")
@json_option
def types_command(as_json: bool) -> None:
    """The connection types this installation knows (adapters found by entry point)."""
    items = [{"type": slug, "label": cls.label or slug} for slug, cls in adapter_types().items()]
    emit({"items": items, "total": len(items)}, as_json, lambda d: "\n".join(i["type"] for i in d["items"]))


@access_key_group.command("rotate")
@click.argument("name")
@click.option(
    "--grace", "grace_hours", default=24.0, show_default=True, type=click.FloatRange(min=0, max=24 * 365), help="Hours."
)
@json_option
def rotate_command(name: str, grace_hours: float, as_json: bool) -> None:
    """A new access key (printed once); older keys keep working for the grace period."""
    connection = require_connection(name, as_json)
    key = connections.rotate_access_key(connection, grace_hours)
    db.session.commit()
    data = {
        "name": connection.name,
        "access_key": key,
        "webhook_urls": connections.webhook_urls(connections.base_url(), key),
        "grace_hours": grace_hours,
    }
    if grace_hours:
        headline = f"New access key for {name!r}. The previous key keeps working for {grace_hours:g} hours."
    else:
        headline = f"New access key for {name!r}. The previous key no longer works."
    emit(data, as_json, lambda d: render_new_key(d, headline))
