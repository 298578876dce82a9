"""API: batch operations (CONTRACT.md §11): start, list, show, cancel, undo."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from bridge.api.auth import token_required
from bridge.api.blueprint import bp
from bridge.delivery import batches
from bridge.errors import ApiError


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if data is None and request.get_data():
        raise ApiError(400, "invalid_payload", "the body must be JSON")
    if not isinstance(data or {}, dict):
        raise ApiError(400, "invalid_payload", "the body must be a JSON object")
    return dict(data or {})


def _accepted(batch: Any) -> Response:
    response = jsonify(batches.batch_to_json(batch))
    response.status_code = 202
    return response


@bp.post("/batches")
@token_required
def start_batch() -> Response:
    body = _body()
    operation, connection = body.pop("operation", None), body.pop("connection", None)
    if not isinstance(operation, str) or not operation:
        raise ApiError(400, "invalid_parameter", "operation is required: import, push or resync")
    if not isinstance(connection, str) or not connection:
        raise ApiError(400, "invalid_parameter", "connection is required (a connection's name)")
    return _accepted(batches.start_batch(operation, connection, body))


@bp.get("/batches")
@token_required
def list_batches() -> Response:
    raw_page = request.args.get("page") or "1"
    if not raw_page.isdigit() or int(raw_page) < 1:
        raise ApiError(400, "invalid_parameter", "page must be a whole number from 1")
    status = request.args.get("status") or None
    if status and status not in batches.STATUSES:
        raise ApiError(400, "invalid_parameter", f"status must be one of {', '.join(batches.STATUSES)}")
    rows, total = batches.list_batches(status=status, page=int(raw_page))
    return jsonify({"items": [batches.batch_to_json(b) for b in rows], "total": total, "page": int(raw_page)})


@bp.get("/batches/<int:batch_id>")
@token_required
def show_batch(batch_id: int) -> Response:
    return jsonify(batches.batch_to_json(batches.get_batch(batch_id)))


@bp.post("/batches/<int:batch_id>/cancel")
@token_required
def cancel_batch(batch_id: int) -> Response:
    return jsonify(batches.batch_to_json(batches.cancel_batch(batch_id)))


@bp.post("/batches/<int:batch_id>/undo")
@token_required
def undo_batch(batch_id: int) -> Response:
    return _accepted(batches.start_undo(batch_id))
