"""The JSON API (``/api``), one module per resource; every route needs a Bearer API token."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

from bridge.api import connections, deliveries, dry_run, events, users  # noqa: E402, F401
