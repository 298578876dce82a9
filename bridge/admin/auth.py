"""Signing in to the admin console.

Only users with the ``administrator`` role get in, checked with ``passwords.check_password``. The
Flask session holds the user id and a fingerprint of the password hash, so changing the password
(or losing the role) ends every open session on its next request. A wrong password and a
non-admin get the same answer, so the form does not tell which emails are admins.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from flask import g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from bridge.accounts.passwords import check_password
from bridge.accounts.users import ADMIN_ROLE, find_by_email
from bridge.admin.blueprint import bp
from bridge.extensions import db
from bridge.models import User
from bridge.ratelimit import ADMIN_LOGIN, client_address, failed_attempt_limiter

SESSION_USER = "admin_user_id"
SESSION_FINGERPRINT = "admin_fingerprint"
PUBLIC_ENDPOINTS = frozenset({"admin.login", "admin.static"})
LOGIN_REFUSED = "Those credentials do not belong to an administrator."


class LoginRefused(Exception):
    """Wrong email or password, or the account is not an administrator."""


def _fingerprint(user: User) -> str:
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:32]


def authenticate_admin(email: str, password: str) -> User:
    """The administrator with these credentials, or ``LoginRefused``."""
    user = find_by_email(email)
    if user is None or user.role != ADMIN_ROLE or not check_password(user, password):
        raise LoginRefused(LOGIN_REFUSED)
    return user


def signed_in_admin() -> User | None:
    """The administrator this session belongs to, if it is still valid."""
    user_id = session.get(SESSION_USER)
    if not isinstance(user_id, int):
        return None
    user = db.session.get(User, user_id)
    if user is None or user.role != ADMIN_ROLE or session.get(SESSION_FINGERPRINT) != _fingerprint(user):
        return None
    return user


def safe_next(target: str | None) -> str:
    """Only a path inside the console: an open redirect would make the login page a phishing aid."""
    if target and target.startswith("/admin") and not urlsplit(target).netloc and "\\" not in target:
        return target
    return url_for("admin.dashboard")


@bp.before_request
def require_admin() -> Response | None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    admin = signed_in_admin()
    if admin is None:
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
    g.admin = admin
    return None


@bp.after_request
def harden(response: Response) -> Response:
    """Console pages show operational data: never cached, never framed, no referrer leaves."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # Scripts only from our static folder (no inline handlers); style attributes are allowed
    # (bar widths), nothing is loaded from elsewhere, and forms post only here.
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    )
    return response


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if request.method == "GET":
        if signed_in_admin() is not None:
            return redirect(safe_next(request.args.get("next")))
        return render_template("admin/login.html", email="", error=None, next=request.args.get("next", ""))
    email = request.form.get("email", "")
    # Failed sign-ins have their own count (CONTRACT.md §10): a CRM with a wrong access key
    # behind the same proxy cannot lock the owner out of the console, nor the reverse.
    limiter, address = failed_attempt_limiter(ADMIN_LOGIN), client_address()
    if limiter.is_refused(address):
        error = "Too many failed attempts from this address. Try again in a minute."
        return render_template("admin/login.html", email=email, error=error, next=request.form.get("next")), 429
    try:
        user = authenticate_admin(email, request.form.get("password", ""))
    except LoginRefused as refused:
        db.session.rollback()  # the limiter writes through its own connection
        limiter.record_failure(address)
        return render_template("admin/login.html", email=email, error=str(refused), next=request.form.get("next")), 401
    session.clear()  # no session fixation: a fresh session for the signed-in admin
    session[SESSION_USER] = user.id
    session[SESSION_FINGERPRINT] = _fingerprint(user)
    return redirect(safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("admin.login"))
