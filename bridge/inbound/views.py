"""The WP Fusion endpoint: ``/?wpf_action=…&access_key=…`` (CONTRACT.md §3). Stub: issue 2."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("inbound", __name__)


@bp.route("/", methods=["GET", "POST"])
def index() -> str:
    return "crm-bridge"
