"""``POST /webhooks/crm/lead``: CRM activity onto the user's timeline (CONTRACT.md §6). Stub: issue 6."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("activity", __name__, url_prefix="/webhooks/crm")
