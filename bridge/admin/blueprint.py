"""The admin blueprint object, apart from the views that register on it (no import cycle)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

bp = Blueprint(
    "admin",
    __name__,
    url_prefix="/admin",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

# (endpoint, label, icon, endpoint prefixes that mark it active). An entry whose endpoint is not
# registered is left out, so a page another package adds (batches) appears once it exists.
NAV: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("admin.dashboard", "Dashboard", "◎", ("admin.dashboard",)),
    ("admin.connections", "Connections", "⇄", ("admin.connection",)),
    ("admin.users", "Users", "☺", ("admin.user",)),
    ("admin.webhooks", "Inbound log", "↓", ("admin.webhook",)),
    ("admin.deliveries", "Deliveries", "↑", ("admin.deliver",)),
    ("admin.batches_page", "Batches", "≡", ("admin.batch",)),
    ("admin.tokens", "API tokens", "✱", ("admin.token",)),
    ("admin.admins", "Admins & roles", "♔", ("admin.admin", "admin.role")),
    ("admin.settings", "Settings", "⚙", ("admin.settings",)),
]


@bp.app_context_processor
def navigation() -> dict[str, Any]:
    return {"admin_nav": [entry for entry in NAV if entry[0] in current_app.view_functions]}
