"""``POST /api/connections/NAME/dry-run``: what a registration push would send (CONTRACT §4)."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from bridge.api.auth import token_required
from bridge.api.blueprint import bp
from bridge.api.connections import unreadable_error
from bridge.connections.dry_run import DryRunUserNotFound, UnknownPreset, dry_run
from bridge.connections.service import get_connection
from bridge.connections.settings import UnreadableSecrets
from bridge.errors import ApiError


@bp.post("/connections/<name>/dry-run")
@token_required
def connection_dry_run(name: str) -> Any:
    """Body ``{"preset":"new_us_user"}`` or ``{"user_id":7}``, optional ``"send": true``."""
    connection = get_connection(name)
    if connection is None:
        raise ApiError(404, "not_found", f"no connection named {name!r}")
    body = request.get_json(silent=True)
    body = {} if body is None and not request.get_data() else body
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_payload", "expected a JSON object")
    user_id, preset, send = body.get("user_id"), body.get("preset"), body.get("send", False)
    if user_id is not None and (isinstance(user_id, bool) or not isinstance(user_id, int)):
        raise ApiError(400, "invalid_parameter", "user_id must be a whole number")
    if preset is not None and not isinstance(preset, str):
        raise ApiError(400, "invalid_parameter", "preset must be a string")
    if not isinstance(send, bool):
        raise ApiError(400, "invalid_parameter", "send must be true or false")
    try:
        result = dry_run(connection, preset=preset, user_id=user_id, send=send)
    except UnknownPreset as exc:
        raise ApiError(400, "invalid_parameter", str(exc)) from exc
    except DryRunUserNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except UnreadableSecrets as exc:
        raise unreadable_error(exc) from None
    return jsonify({"success": True, **result})
