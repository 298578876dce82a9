"""The public ``/register`` page (CONTRACT.md §4): local registration as an HTML form.

Same validation and service as ``POST /api/users`` (``bridge.accounts.local_edits``), so a sign-up queues
its CRM pushes in the same transaction and never waits for a CRM. CSRF: Flask-WTF's token,
checked in the view. ``BRIDGE_PUBLIC_SIGNUP=0`` turns the page off (404).
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms import ValidationError

from bridge.accounts import local_edits as accounts
from bridge.accounts import passwords, users
from bridge.accounts.signup_country import request_signup_country
from bridge.extensions import csrf
from bridge.ratelimit import REGISTRATION, client_address, failed_attempt_limiter

bp = Blueprint("signup", __name__)
# The token is checked in the view, after the on/off switch, so a disabled page is a 404 for
# every method (the app-wide check would otherwise answer a POST with 400 first).
csrf.exempt(bp)

FORM_FIELDS = ("email", "first_name", "last_name")
# What each field needs, in the page's words: the validator's own messages ("value is not a
# valid email address: The part after the @-sign is not valid") are written for developers.
FIELD_HINTS = {
    "email": "Enter your email address, like name@example.com.",
    "password": f"Choose a password of at least {passwords.MIN_PASSWORD_LENGTH} characters (at most 256).",
    "first_name": "Keep the first name under 192 characters.",
    "last_name": "Keep the last name under 192 characters.",
}


@bp.before_request
def signup_enabled() -> None:
    if not current_app.config.get("BRIDGE_PUBLIC_SIGNUP", True):
        abort(404)


def _render(status: int = 200, *, error: str | None = None, problems: dict[str, str] | None = None) -> tuple[str, int]:
    values = {name: request.form.get(name, "") for name in FORM_FIELDS}
    return (
        render_template(
            "signup/register.html",
            values=values,
            error=error,
            problems=problems or {},
            site_name=current_app.config.get("BRIDGE_SITE_NAME", "crm-bridge"),
        ),
        status,
    )


@bp.get("/register")
def register_form() -> tuple[str, int]:
    return _render()


@bp.post("/register")
def register_submit() -> tuple[str, int]:
    # Every attempt counts, per client address (CONTRACT.md §10: 10 a minute): accounts are
    # not free to make by the hundred.
    if not failed_attempt_limiter(REGISTRATION).hit(client_address()):
        return _render(429, error="Too many sign-ups from this address. Try again in a minute.")
    form = request.form
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        try:
            validate_csrf(form.get("csrf_token"))
        except ValidationError as exc:
            raise CSRFError(str(exc)) from None
    if form.get("password", "") != form.get("password_confirm", ""):
        return _render(422, error="The two passwords do not match.", problems={"password_confirm": "does not match"})
    data = {name: form.get(name, "").strip() for name in FORM_FIELDS}
    data["password"] = form.get("password", "")
    try:
        registration = accounts.parse_input(accounts.RegistrationInput, data)
        user = accounts.register(registration, allow_role=False, signup_country=request_signup_country())
    except accounts.InvalidInput as exc:
        problems = {p["field"]: FIELD_HINTS.get(p["field"], "Check this field.") for p in exc.problems}
        return _render(422, error="Please check the highlighted fields.", problems=problems)
    except users.EmailTaken:
        return _render(
            409, error="An account with this email already exists.", problems={"email": "already registered"}
        )
    except users.UserRuleError as exc:
        return _render(exc.status, error=exc.message)
    return (
        render_template(
            "signup/welcome.html",
            user=user,
            site_name=current_app.config.get("BRIDGE_SITE_NAME", "crm-bridge"),
        ),
        201,
    )
