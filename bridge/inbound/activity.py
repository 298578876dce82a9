"""``POST /webhooks/crm/lead``: CRM activity onto the user's timeline (CONTRACT.md §6).

Thin: refuse an address past its failed-secret limit, authenticate (counting a failure), parse,
record, answer. The rules are in :mod:`bridge.accounts.crm_activity`. Answers
use the activity webhook's own shape (``{"ok": …}``), not the WP Fusion endpoint's.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from bridge.accounts import crm_activity as activity
from bridge.ratelimit import ACTIVITY_SECRET, client_address, failed_attempt_limiter

bp = Blueprint("activity", __name__, url_prefix="/webhooks/crm")


@bp.errorhandler(activity.ActivityError)
def render_activity_error(error: activity.ActivityError) -> tuple[Response, int]:
    return jsonify(ok=False, error=error.code, message=error.message), error.status


@bp.post("/lead")
def lead() -> Response:
    limiter, address = failed_attempt_limiter(ACTIVITY_SECRET), client_address()
    if limiter.is_refused(address):
        response = jsonify(ok=False, error="rate_limited", message="too many failed secrets from this address")
        response.status_code = 429
        response.headers["Retry-After"] = str(limiter.retry_after(address))
        return response
    try:
        activity.authenticate(request.headers, current_app.config)
    except activity.ActivityUnauthorised:
        limiter.record_failure(address)
        raise
    parsed = activity.parse_activity(request.get_data(cache=False))
    stored = activity.record_activity(parsed)
    if stored is None:
        return jsonify(ok=True, stored=False, reason=activity.NO_MATCH_REASON)
    return jsonify(ok=True, stored=True, lead_id=stored.user_id)
