"""Console pages. Each view reads its arguments, calls a helper from ``queries`` (or a service
for the few actions), and renders; no rules live here."""

from __future__ import annotations

import json

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from bridge.accounts.user_json import tags_by_scope
from bridge.admin import chart, queries
from bridge.admin.auth import safe_next
from bridge.admin.blueprint import bp
from bridge.admin.configuration import effective_configuration
from bridge.admin.connection_views import connection_or_404
from bridge.connections import service as connection_service
from bridge.connections import settings as settings_service
from bridge.delivery.outbox import STATUSES
from bridge.errors import ApiError
from bridge.extensions import db
from bridge.models import Connection, Delivery, User, WebhookEvent

KEY_PLACEHOLDER = "YOUR_ACCESS_KEY"


def _page() -> int:
    return max(1, request.args.get("page", 1, type=int) or 1)


@bp.app_template_filter("admin_time")
def format_time(value: object) -> str:
    """Naive UTC timestamps, shown as such (the console has no idea of the viewer's zone)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") + " UTC" if hasattr(value, "strftime") else "—"


@bp.app_template_filter("admin_json")
def format_json(value: object, indent: int | None = None) -> str:
    """JSON for people: non-ASCII as itself (a masked secret reads ``••••1234``, not ``\\u2022``)."""
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


@bp.app_template_filter("admin_body")
def format_body(value: object) -> str:
    """A recorded request or response body: indented when it is JSON, else as it was."""
    if value is None or value == "":
        return "(no body)"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


@bp.get("/")
def dashboard() -> str:
    board = queries.dashboard()
    users = queries.users_by_id([d.user_id for d in board.recent_failures])
    return render_template("admin/dashboard.html", board=board, statuses=STATUSES, users=users)


# -- connections ------------------------------------------------------------------------------


@bp.get("/connections")
def connections() -> str:
    return render_template("admin/connections.html", summaries=queries.connection_summaries())


def _render_connection(connection: Connection) -> str:
    base_url = connection_service.base_url(request.url_root)
    recent = queries.recent_deliveries(10, Delivery.connection_id == connection.id)
    return render_template(
        "admin/connection.html",
        summary=queries.summarise(connection),
        settings=settings_service.public_settings(connection),
        secret_names=queries.secret_setting_names(connection),
        webhook_urls=connection_service.webhook_urls(base_url, KEY_PLACEHOLDER),
        placeholder=KEY_PLACEHOLDER,
        grace_keys=queries.grace_keys(connection),
        events=queries.recent_events(10, WebhookEvent.connection_id == connection.id),
        deliveries=recent,
        users=queries.users_by_id([d.user_id for d in recent]),
    )


@bp.get("/connections/<name>")
def connection_detail(name: str) -> str:
    return _render_connection(connection_or_404(name))


# -- users ------------------------------------------------------------------------------------


@bp.get("/users")
def users() -> str:
    email = request.args.get("email", "")
    return render_template("admin/users.html", page=queries.search_users(email, _page()), email=email)


@bp.get("/users/<int:user_id>")
def user_detail(user_id: int) -> str:
    user = db.session.get(User, user_id) or abort(404)
    return render_template(
        "admin/user.html",
        user=user,
        tags=tags_by_scope(user),
        links=queries.links_of(user),
        timeline=queries.timeline(user),
        meta=queries.pretty_json(user.meta or {}),
        connection_names=[c.name for c in connection_service.list_connections()],
    )


# -- inbound log ------------------------------------------------------------------------------


@bp.get("/webhooks")
def webhooks() -> str | tuple[str, int]:
    filters = queries.WebhookFilters.from_args(request.args)
    html = render_template(
        "admin/webhooks.html",
        filters=filters,
        page=queries.webhook_events(filters, _page()),
        connection_names=queries.distinct_values(WebhookEvent.connection_name),
        actions=queries.distinct_values(WebhookEvent.action),
    )
    return (html, 400) if filters.problem else html


@bp.get("/webhooks/<int:event_id>")
def webhook_detail(event_id: int) -> str:
    event = db.session.get(WebhookEvent, event_id) or abort(404)
    connection = db.session.get(Connection, event.connection_id) if event.connection_id else None
    secrets = settings_service.secret_values(connection) if connection else []
    return render_template("admin/webhook.html", event=event, payload=queries.pretty_payload(event.payload, secrets))


# -- deliveries -------------------------------------------------------------------------------


@bp.get("/deliveries")
def deliveries() -> str | tuple[str, int]:
    status = request.args.get("status", "")
    connection = request.args.get("connection", "")
    problem = None
    if status and status not in STATUSES:
        problem = f"There is no delivery status {status!r}; choose one of {', '.join(STATUSES)}."
        status = ""
    page = queries.deliveries(status, connection, _page())
    html = render_template(
        "admin/deliveries.html",
        problem=problem,
        chart=chart.hourly_svg(chart.deliveries_per_hour(), STATUSES),
        page=page,
        status=status,
        connection=connection,
        statuses=STATUSES,
        counts=queries.delivery_counts(),
        connection_names=[s.connection.name for s in queries.connection_summaries()],
        users=queries.users_by_id([d.user_id for d in page.items]),
    )
    return (html, 400) if problem else html


@bp.get("/deliveries/<int:delivery_id>")
def delivery_detail(delivery_id: int) -> str:
    delivery = db.session.get(Delivery, delivery_id) or abort(404)
    secrets = settings_service.secret_values(delivery.connection) if delivery.connection else []
    return render_template(
        "admin/delivery.html",
        delivery=delivery,
        payload=queries.pretty_json(delivery.payload or {}, secrets),
        result=queries.pretty_json(delivery.result, secrets) if delivery.result is not None else None,
        attempts=[(attempt, queries.pretty_json(attempt.exchanges or [], secrets)) for attempt in delivery.attempt_log],
        user=db.session.get(User, delivery.user_id) if delivery.user_id else None,
    )


@bp.post("/deliveries/<int:delivery_id>/retry")
def delivery_retry(delivery_id: int) -> Response:
    from bridge.delivery.deliveries import retry_delivery  # written in parallel (issue 5): imported when used

    try:
        retry_delivery(delivery_id)
        db.session.commit()
    except (LookupError, ValueError, ApiError) as exc:
        db.session.rollback()
        flash(f"Delivery #{delivery_id} was not retried: {exc}", "error")
    else:
        flash(f"Delivery #{delivery_id} is queued again.", "success")
    return redirect(safe_next(request.form.get("next")))


@bp.post("/deliveries/replay")
def deliveries_replay() -> Response:
    from bridge.delivery.deliveries import replay  # written in parallel (issue 5): imported when used

    replayed = replay(status="dead", since=None)
    db.session.commit()
    flash(f"{replayed} dead deliver{'y' if replayed == 1 else 'ies'} queued again.", "success")
    return redirect(url_for("admin.deliveries", status="pending" if replayed else "dead"))


# -- settings ---------------------------------------------------------------------------------


@bp.get("/settings")
def settings() -> str:
    from bridge.connections.adapter_registry import adapter_types

    return render_template(
        "admin/settings.html",
        items=effective_configuration(current_app.config),
        adapter_types=adapter_types(),
    )
