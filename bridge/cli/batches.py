"""CLI: ``crm-bridge batch import|push|resync|list|show|cancel|undo`` (CONTRACT.md §11).

A starting command follows its batch until it ends: a progress bar (rich) on a terminal, a
plain line per step otherwise; ``--detach`` returns at once; Ctrl-C detaches (the batch goes on
in the workers), it never cancels. With ``--json`` the batch JSON is printed when the command
returns. The batch is run by the delivery workers; when none has beaten within a minute (no
``crm-bridge worker`` and no inline worker), the command runs one in this process while it
follows, so the command works on its own (e.g. from ``make live-check``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click
from flask import current_app

from bridge.cli.group import bridge_group, emit, fail, json_option, require_schema

POLL_SECONDS = 0.25
PLAIN_EVERY_SECONDS = 2.0


@bridge_group.group("batch")
def batch_group() -> None:
    """Batch operations: import contacts, push or resync users, with progress."""


def _render(data: dict[str, Any]) -> str:
    total = data["total"] if data["total"] is not None else "?"
    line = (
        f"Batch {data['id']} {data['operation']} {data['connection']}: {data['status']}, {data['done']}/{total} done "
        f"({data['created']} created, {data['updated']} updated, {data['unchanged']} unchanged, "
        f"{data['failed']} failed"
    )
    if "removed" in data:
        line += f", {data['removed']} removed"
    line += ")"
    if data.get("message"):
        line += f"\n  {data['message']}"
    for error in data["errors"][:10]:
        line += f"\n  {error['item']}: {error['error']}"
    return line


def _render_list(data: dict[str, Any]) -> str:
    if not data["items"]:
        return "No batches."
    lines = [f"{'ID':>5}  {'OPERATION':<9} {'CONNECTION':<16} {'STATUS':<10} {'DONE':>7} {'TOTAL':>7} {'FAILED':>6}"]
    for row in data["items"]:
        total = row["total"] if row["total"] is not None else "?"
        lines.append(
            f"{row['id']:>5}  {row['operation']:<9} {row['connection']:<16} {row['status']:<10} "
            f"{row['done']:>7} {total!s:>7} {row['failed']:>6}"
        )
    lines.append(f"{data['total']} in total (page {data['page']}).")
    return "\n".join(lines)


def _snapshot(batch_id: int) -> dict[str, Any]:
    from bridge.delivery import batches
    from bridge.extensions import db

    try:
        return batches.batch_to_json(batches.get_batch(batch_id))
    finally:
        db.session.remove()  # a fresh read each time (and no transaction held between polls)


def _worker_alive() -> bool:
    from bridge.delivery import heartbeats
    from bridge.extensions import db

    since, alive = heartbeats.liveness()
    db.session.rollback()
    return bool(alive) and since is not None and since < heartbeats.WORKER_STALE_SECONDS


def _follow(batch_id: int, as_json: bool) -> dict[str, Any]:
    """Follow the batch until it ends (or Ctrl-C); returns its last JSON."""
    from bridge.delivery.worker import DeliveryWorker

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    worker = None
    if not _worker_alive():
        click.echo("No delivery worker is running: running the batch in this process.", err=True)
        worker = DeliveryWorker(app, concurrency=1)
        worker.start()
    show = _progress_bar(batch_id) if sys.stdout.isatty() and not as_json else _plain_lines(as_json)
    data = _snapshot(batch_id)
    try:
        while data["status"] in ("queued", "running"):
            show(data)
            time.sleep(POLL_SECONDS)
            data = _snapshot(batch_id)
        show(data)
    except KeyboardInterrupt:
        data = _snapshot(batch_id)
        hint = "it goes on in the workers" if worker is None else "it goes on when a worker runs"
        click.echo(f"\nDetached from batch {batch_id} ({hint}): crm-bridge batch show {batch_id}", err=True)
    finally:
        if worker is not None:
            worker.stop(timeout=30)
    return data


def _plain_lines(as_json: bool) -> Callable[[dict[str, Any]], None]:
    last: dict[str, Any] = {"at": 0.0, "line": None}

    def show(data: dict[str, Any]) -> None:
        if as_json:
            return
        now = time.monotonic()
        line = (
            f"batch {data['id']}: {data['status']} {data['done']}/{data['total'] if data['total'] is not None else '?'}"
        )
        if line != last["line"] and (
            now - last["at"] >= PLAIN_EVERY_SECONDS or data["status"] not in ("queued", "running")
        ):
            click.echo(line, err=True)
            last.update(at=now, line=line)

    return show


def _progress_bar(batch_id: int) -> Callable[[dict[str, Any]], None]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn(f"batch {batch_id} {{task.fields[status]}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    )
    task = progress.add_task("batch", total=None, status="queued")
    progress.start()

    def show(data: dict[str, Any]) -> None:
        progress.update(task, completed=data["done"], total=data["total"], status=data["status"])
        if data["status"] not in ("queued", "running"):
            progress.stop()

    return show


def _started(start: Callable[[], Any], detach: bool, as_json: bool) -> None:
    from bridge.delivery import batches

    require_schema()
    try:
        batch = start()
    except batches.BatchError as exc:
        fail(exc.message, as_json, exc.code)
        return
    data = batches.batch_to_json(batch)
    if not detach:
        data = _follow(batch.id, as_json)
    emit(data, as_json, _render)
    if data["status"] == "failed":
        sys.exit(1)


detach_option = click.option("--detach", is_flag=True, help="Return at once; the workers run the batch.")


@batch_group.command("import")
@click.argument("connection")
@click.option("--tag", help="Only contacts with this tag (its name).")
@click.option("--role", help="Role of the users created (default: the connection's default_role).")
@click.option("--send-welcome", is_flag=True, help="Send each new user the welcome mail.")
@detach_option
@json_option
def import_command(
    connection: str, tag: str | None, role: str | None, send_welcome: bool, detach: bool, as_json: bool
) -> None:
    """Make every contact of the CRM (or those with --tag) a local user, as an inbound add would."""
    from bridge.delivery import batches

    params = {"tag": tag, "role": role, "send_welcome": send_welcome}
    _started(lambda: batches.start_batch("import", connection, params), detach, as_json)


@batch_group.command("push")
@click.argument("connection")
@click.option("--all", "every", is_flag=True, help="Every user, not only those not linked to the connection yet.")
@detach_option
@json_option
def push_command(connection: str, every: bool, detach: bool, as_json: bool) -> None:
    """Push every local user not linked to the connection, as a registration is pushed."""
    from bridge.delivery import batches

    _started(lambda: batches.start_batch("push", connection, {"all": every}), detach, as_json)


@batch_group.command("resync")
@click.argument("connection")
@detach_option
@json_option
def resync_command(connection: str, detach: bool, as_json: bool) -> None:
    """Link every local user to its contact (by email when unlinked) and load its tags."""
    from bridge.delivery import batches

    _started(lambda: batches.start_batch("resync", connection, {}), detach, as_json)


@batch_group.command("undo")
@click.argument("batch_id", type=int)
@detach_option
@json_option
def undo_command(batch_id: int, detach: bool, as_json: bool) -> None:
    """Remove the users an import created that nobody has changed since (contacts stay)."""
    from bridge.delivery import batches

    _started(lambda: batches.start_undo(batch_id), detach, as_json)


@batch_group.command("list")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]))
@click.option("--page", type=int, default=1, show_default=True)
@json_option
def list_command(status: str | None, page: int, as_json: bool) -> None:
    """List batches, newest first."""
    from bridge.delivery import batches

    rows, total = batches.list_batches(status=status, page=page)
    emit({"items": [batches.batch_to_json(b) for b in rows], "total": total, "page": page}, as_json, _render_list)


@batch_group.command("show")
@click.argument("batch_id", type=int)
@json_option
def show_command(batch_id: int, as_json: bool) -> None:
    """A batch's counts, status and first errors."""
    from bridge.delivery import batches

    try:
        emit(batches.batch_to_json(batches.get_batch(batch_id)), as_json, _render)
    except batches.BatchError as exc:
        fail(exc.message, as_json, exc.code)


@batch_group.command("cancel")
@click.argument("batch_id", type=int)
@json_option
def cancel_command(batch_id: int, as_json: bool) -> None:
    """Stop a batch: no further page starts (users already made stay)."""
    from bridge.delivery import batches

    try:
        emit(batches.batch_to_json(batches.cancel_batch(batch_id)), as_json, _render)
    except batches.BatchError as exc:
        fail(exc.message, as_json, exc.code)
