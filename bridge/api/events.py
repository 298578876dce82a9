"""``GET /api/webhook-events``: the inbound log, newest first (CONTRACT.md §3, §4)."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from bridge.api.auth import token_required
from bridge.api.blueprint import bp
from bridge.errors import ApiError
from bridge.inbound.log import event_to_json, list_events

MAX_PER_PAGE = 200


def _positive_int(name: str, default: int, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, "invalid_parameter", f"{name} must be a positive whole number")
    value = int(raw)
    return min(value, maximum) if maximum else value


@bp.get("/webhook-events")
@token_required
def webhook_events() -> Any:
    """Filters: ``connection`` (name), ``status`` (HTTP status or outcome), ``action``."""
    page = _positive_int("page", 1)
    per_page = _positive_int("per_page", 50, MAX_PER_PAGE)
    rows, total = list_events(
        connection=request.args.get("connection") or None,
        status=request.args.get("status") or None,
        action=request.args.get("action") or None,
        page=page,
        per_page=per_page,
    )
    return jsonify({"items": [event_to_json(row) for row in rows], "total": total, "page": page})
