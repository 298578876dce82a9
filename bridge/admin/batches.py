"""Console: ``/admin/batches`` (CONTRACT.md §11): the batches with live progress bars, and
forms to start, cancel and undo one. Self-contained (its own views, template and a few lines of
inline script that poll ``/admin/batches.json``); the rules are ``bridge.delivery.batches``'."""

from __future__ import annotations

from typing import Any

from flask import flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from bridge.admin.blueprint import bp
from bridge.connections import service as connection_service
from bridge.delivery import batches
from bridge.extensions import db

SHOWN = 50


def _batches_json() -> dict[str, Any]:
    rows, total = batches.list_batches(per_page=SHOWN)
    return {"items": [batches.batch_to_json(b) for b in rows], "total": total, "page": 1}


@bp.get("/batches")
def batches_page() -> str:
    data = _batches_json()
    names = [connection.name for connection in connection_service.list_connections()]
    running = any(item["status"] in batches.OPEN for item in data["items"])
    return render_template("admin/batches.html", data=data, connection_names=names, running=running)


@bp.get("/batches.json")
def batches_json() -> Response:
    """What the page's script polls while a batch runs (the console's session, not an API token)."""
    return jsonify(_batches_json())


@bp.post("/batches")
def batches_start() -> Response:
    form = request.form
    operation = form.get("operation", "")
    params: dict[str, Any] = {}
    if operation == "import":
        params = {
            "tag": form.get("tag") or None,
            "role": form.get("role") or None,
            "send_welcome": bool(form.get("send_welcome")),
        }
    elif operation == "push":
        params = {"all": bool(form.get("all"))}
    try:
        batch = batches.start_batch(operation, form.get("connection", ""), params)
    except batches.BatchError as exc:
        db.session.rollback()
        flash(f"The batch was not started: {exc.message}", "error")
    else:
        flash(f"Batch #{batch.id} ({batch.operation} {batch.connection_name}) is queued.", "success")
    return redirect(url_for("admin.batches_page"))


@bp.post("/batches/<int:batch_id>/cancel")
def batches_cancel(batch_id: int) -> Response:
    try:
        batch = batches.cancel_batch(batch_id)
    except batches.BatchError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Batch #{batch.id} is {batch.status}.", "success")
    return redirect(url_for("admin.batches_page"))


@bp.post("/batches/<int:batch_id>/undo")
def batches_undo(batch_id: int) -> Response:
    try:
        batch = batches.start_undo(batch_id)
    except batches.BatchError as exc:
        db.session.rollback()
        flash(f"Batch #{batch_id} was not undone: {exc.message}", "error")
    else:
        flash(f"Undo of batch #{batch_id} is queued as batch #{batch.id}.", "success")
    return redirect(url_for("admin.batches_page"))
