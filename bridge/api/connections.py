"""API: connections (CONTRACT.md §4). Thin views over ``bridge.connections.service``.

The access key is in the body of two answers only: the 201 of ``POST /api/connections`` and the
200 of ``rotate-key``. Every other answer carries ``connection_to_json`` (secrets masked, key
hints only).
"""

from __future__ import annotations

import math
from typing import Any

from flask import request
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bridge.api.auth import token_required
from bridge.api.blueprint import bp
from bridge.connections import service as connections
from bridge.connections import settings as connection_settings
from bridge.connections.adapter_registry import UnknownAdapterType
from bridge.errors import ApiError
from bridge.extensions import db
from bridge.models import Connection
from crm_adapters.errors import AdapterError

PAGE_SIZE = 50


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what was wrong."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_payload", "the body must be a JSON object (Content-Type: application/json)")
    return body


def page_number() -> int:
    raw = request.args.get("page", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, "invalid_parameter", "page must be a positive whole number")
    return int(raw)


def invalid(
    error: connection_settings.InvalidConnection, status: int = 422, code: str = "invalid_connection"
) -> ApiError:
    db.session.rollback()
    return ApiError(status, code, str(error), extra={"problems": error.problems})


def unreadable_error(error: connection_settings.UnreadableSecrets) -> ApiError:
    """422 as for an incomplete connection: the stored connection cannot be used as it is."""
    return ApiError(422, "secret_unreadable", str(error), extra={"unreadable_settings": error.names})


def connection_or_404(name: str) -> Connection:
    connection = connections.get_connection(name)
    if connection is None:
        raise ApiError(404, "not_found", f"no connection named {name!r}")
    return connection


def new_key_body(connection: Connection, key: str) -> dict[str, Any]:
    urls = connections.webhook_urls(connections.base_url(request.host_url), key)
    return {**connections.connection_to_json(connection), "access_key": key, "webhook_urls": urls}


@bp.get("/connections")
@token_required
def list_connections() -> Any:
    page = page_number()
    total = db.session.scalar(select(func.count(Connection.id))) or 0
    rows = db.session.scalars(
        select(Connection).order_by(Connection.name).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    )
    return {"items": [connections.connection_to_json(c) for c in rows], "total": total, "page": page}


@bp.post("/connections")
@token_required
def create_connection() -> Any:
    body = json_object()
    name, type_slug, settings = body.get("name"), body.get("type"), body.get("settings", {})
    if not isinstance(name, str) or not name:
        raise ApiError(400, "invalid_parameter", "name is required (a lower-case slug)")
    if not isinstance(type_slug, str) or not type_slug:
        raise ApiError(400, "invalid_parameter", "type is required (e.g. fluentcrm)")
    if not isinstance(settings, dict):
        raise ApiError(400, "invalid_parameter", "settings must be a JSON object")
    try:
        connection, key = connections.create_connection(name, type_slug, settings)
        db.session.commit()
    except UnknownAdapterType as exc:
        raise ApiError(422, "unknown_type", str(exc)) from None
    except connections.ConnectionExists as exc:
        raise invalid(exc, 409, "connection_exists") from None
    except connection_settings.InvalidConnection as exc:
        raise invalid(exc) from None
    except IntegrityError:  # a concurrent request took the name between our check and commit
        db.session.rollback()
        raise ApiError(409, "connection_exists", f"a connection named {name!r} exists") from None
    return new_key_body(connection, key), 201


@bp.get("/connections/<name>")
@token_required
def show_connection(name: str) -> Any:
    return connections.connection_to_json(connection_or_404(name))


@bp.patch("/connections/<name>")
@token_required
def update_connection(name: str) -> Any:
    connection = connection_or_404(name)
    settings = json_object().get("settings")
    if not isinstance(settings, dict):
        raise ApiError(400, "invalid_parameter", 'expected {"settings": {…}} (null removes a setting)')
    try:
        connection_settings.apply_settings(connection, settings)
    except connection_settings.InvalidConnection as exc:
        raise invalid(exc) from None
    db.session.commit()
    return connections.connection_to_json(connection)


@bp.delete("/connections/<name>")
@token_required
def delete_connection(name: str) -> Any:
    connections.remove_connection(connection_or_404(name))
    db.session.commit()
    return {"success": True, "name": name, "deleted": True}


@bp.post("/connections/<name>/test")
@token_required
def test_connection(name: str) -> Any:
    connection = connection_or_404(name)
    try:
        note = connections.check_connection(connection)
    except connection_settings.UnreadableSecrets as exc:
        raise unreadable_error(exc) from None
    except connection_settings.IncompleteConnection as exc:
        raise invalid(exc, 422, "incomplete_connection") from None
    except AdapterError as exc:
        raise ApiError(
            502,
            exc.error_class,
            exc.message,
            extra={"ok": False, "error_class": exc.error_class, "crm_status": exc.status},
        ) from None
    except NotImplementedError:
        raise ApiError(501, "not_supported", f"the {connection.type} adapter cannot test a connection") from None
    return {"ok": True, "name": connection.name, "reached": note is None, "note": note}


@bp.post("/connections/<name>/rotate-key")
@token_required
def rotate_connection_key(name: str) -> Any:
    connection = connection_or_404(name)
    body = request.get_json(silent=True) if request.data else {}
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_payload", "the body must be a JSON object")
    grace = body.get("grace_hours", 24)
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not math.isfinite(grace):
        raise ApiError(400, "invalid_parameter", "grace_hours must be a number")
    if not 0 <= grace <= connections.MAX_GRACE_HOURS:
        raise ApiError(400, "invalid_parameter", f"grace_hours must be between 0 and {connections.MAX_GRACE_HOURS}")
    key = connections.rotate_access_key(connection, float(grace))
    db.session.commit()
    return {**new_key_body(connection, key), "grace_hours": grace}
