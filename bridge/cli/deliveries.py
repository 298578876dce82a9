"""CLI: ``crm-bridge deliveries list|retry|replay`` and ``crm-bridge worker`` (CONTRACT.md §2)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import click
from flask import current_app

from bridge.cli.group import bridge_group, emit, fail, json_option, require_schema


@bridge_group.group("deliveries")
def deliveries_group() -> None:
    """Outbound deliveries: list, retry, replay."""


def _render_rows(data: dict[str, Any]) -> str:
    if not data["items"]:
        return "No deliveries."
    lines = [f"{'ID':>6}  {'STATUS':<10} {'KIND':<16} {'CONNECTION':<16} {'USER':>6} {'TRIES':>5}  LAST ERROR"]
    for row in data["items"]:
        lines.append(
            f"{row['id']:>6}  {row['status']:<10} {row['kind']:<16} {row['connection'] or '-':<16} "
            f"{row['user_id'] or '-':>6} {row['attempts']:>5}  {row['last_error'] or ''}"
        )
    lines.append(f"{data['total']} in total (page {data['page']}).")
    return "\n".join(lines)


@deliveries_group.command("list")
@click.option("--status", type=click.Choice(["pending", "in_flight", "succeeded", "failed", "dead"]))
@click.option("--connection", help="Connection name.")
@click.option("--user-id", type=int)
@click.option("--page", type=int, default=1, show_default=True)
@json_option
def list_command(status: str | None, connection: str | None, user_id: int | None, page: int, as_json: bool) -> None:
    """List deliveries, newest first."""
    from bridge.delivery import deliveries

    rows, total = deliveries.list_deliveries(status=status, connection=connection, user_id=user_id, page=page)
    data = {"items": [deliveries.delivery_to_json(d) for d in rows], "total": total, "page": page}
    emit(data, as_json, _render_rows)


@deliveries_group.command("retry")
@click.argument("delivery_id", type=int)
@json_option
def retry_command(delivery_id: int, as_json: bool) -> None:
    """Queue a dead or failed delivery to be tried now."""
    from bridge.delivery import deliveries
    from bridge.extensions import db

    try:
        delivery = deliveries.retry_delivery(delivery_id)
    except (deliveries.DeliveryNotFound, deliveries.DeliveryNotRetryable) as exc:
        fail(str(exc), as_json, "not_found" if isinstance(exc, deliveries.DeliveryNotFound) else "not_retryable")
        return
    db.session.commit()
    emit(
        {"success": True, "delivery": deliveries.delivery_to_json(delivery)},
        as_json,
        lambda d: f"Delivery {delivery_id} queued again.",
    )


def _parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 date-time: {value!r}", param_hint="--since") from None
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


@deliveries_group.command("replay")
@click.option("--status", type=click.Choice(["dead", "failed"]), default="dead", show_default=True)
@click.option("--since", help="Only deliveries created at or after this ISO 8601 time (UTC unless an offset is given).")
@json_option
def replay_command(status: str, since: str | None, as_json: bool) -> None:
    """Queue every dead (or failed) delivery to be tried now."""
    from bridge.delivery import deliveries
    from bridge.extensions import db

    count = deliveries.replay(status=status, since=_parse_since(since))
    db.session.commit()
    emit({"success": True, "status": status, "replayed": count}, as_json, lambda d: f"{count} deliveries queued again.")


@bridge_group.command("worker")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="Deliveries in flight at once, over all of this command's processes.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    help="Worker processes sharing --concurrency (one process uses about one CPU core). "
    "Default: spread over the usable cores, at least 8 deliveries per process.",
)
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@json_option
def worker_command(concurrency: int, processes: int | None, once: bool, as_json: bool) -> None:
    """Run delivery workers until SIGTERM/SIGINT (running deliveries are finished first)."""
    from bridge.delivery.supervisor import run_worker_command, split_concurrency

    require_schema()
    try:
        threads = split_concurrency(concurrency, processes)
    except ValueError as error:
        fail(str(error), as_json, "invalid_argument")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    workers = run_worker_command(app, threads=threads, once=once)
    total = sum(w["processed"] for w in workers)
    died = sum(1 for w in workers if w.get("exit_code"))
    summary: dict[str, Any] = {"success": not died, "workers": workers, "processed": total}
    if len(workers) == 1:  # one worker runs in this process: it cannot have died
        summary["worker"] = workers[0]["worker"]
        text = f"Worker {summary['worker']} finished {total} deliveries."
    else:
        text = f"{len(workers) - died} workers finished {total} deliveries"
        text += f"; {died} died before finishing (see the log)." if died else "."
    emit(summary, as_json, lambda _data: text)
    if died:
        sys.exit(1)
