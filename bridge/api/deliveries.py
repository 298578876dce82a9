"""API: deliveries (CONTRACT.md §4): list, show with attempts, retry one, replay many."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Response, jsonify, request

from bridge.api.auth import token_required
from bridge.api.blueprint import bp
from bridge.delivery import deliveries, outbox
from bridge.errors import ApiError
from bridge.extensions import db


def parse_since(value: object) -> datetime | None:
    """An ISO 8601 time (``Z`` or an offset; naive means UTC) as naive UTC, or a 400."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_parameter", "since must be an ISO 8601 date-time string")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"since is not an ISO 8601 date-time: {value!r}") from None
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when


def _int_arg(name: str, default: int | None) -> int | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit():
        raise ApiError(400, "invalid_parameter", f"{name} must be a whole number")
    return int(raw)


@bp.get("/deliveries")
@token_required
def list_deliveries() -> Response:
    status = request.args.get("status") or None
    if status and status not in outbox.STATUSES:
        raise ApiError(400, "invalid_parameter", f"status must be one of {', '.join(outbox.STATUSES)}")
    page = _int_arg("page", 1) or 1
    rows, total = deliveries.list_deliveries(
        status=status,
        connection=request.args.get("connection") or None,
        user_id=_int_arg("user_id", None),
        kind=request.args.get("kind") or None,
        page=page,
    )
    return jsonify({"items": [deliveries.delivery_to_json(d) for d in rows], "total": total, "page": page})


@bp.get("/deliveries/<int:delivery_id>")
@token_required
def show_delivery(delivery_id: int) -> Response:
    try:
        delivery = deliveries.get_delivery(delivery_id)
    except deliveries.DeliveryNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    return jsonify(deliveries.delivery_to_json(delivery, with_attempts=True))


@bp.post("/deliveries/<int:delivery_id>/retry")
@token_required
def retry_delivery(delivery_id: int) -> Response:
    try:
        delivery = deliveries.retry_delivery(delivery_id)
    except deliveries.DeliveryNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except deliveries.DeliveryNotRetryable as exc:
        raise ApiError(409, "not_retryable", str(exc)) from None
    db.session.commit()
    return jsonify({"success": True, "delivery": deliveries.delivery_to_json(delivery)})


@bp.post("/deliveries/replay")
@token_required
def replay_deliveries() -> Response:
    data = request.get_json(silent=True)
    if data is None and request.get_data():
        raise ApiError(400, "invalid_payload", "the body must be JSON")
    data = data or {}
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_payload", "the body must be a JSON object")
    status = data.get("status", "dead")
    try:
        count = deliveries.replay(status=status, since=parse_since(data.get("since")))
    except deliveries.DeliveryNotRetryable as exc:
        raise ApiError(400, "invalid_parameter", str(exc)) from None
    db.session.commit()
    return jsonify({"success": True, "status": status, "replayed": count})
