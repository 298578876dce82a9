"""One-time login links ``/login/TOKEN`` (CONTRACT.md §7).

A link is an itsdangerous ``URLSafeTimedSerializer`` token (``SECRET_KEY`` + a salt of its own)
carrying the user id and a fingerprint of the user's password hash as it was when the link was
made. Setting a password changes the hash, so the fingerprint no longer matches and the link is
spent: usable once, with no table of used tokens. It expires after 72 hours.

Refusals are typed and each has its own page and status (documented in docs/mail.md):
forged or malformed 400, expired 410, already used 410.

The token rules (``make_login_token``, ``read_login_token``, ``set_password_with_link``) run
without a request, so the mail job, the CLI and the view share them; the view only renders.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, render_template
from flask_wtf import FlaskForm
from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import update
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo, Length

from bridge.accounts import passwords, users
from bridge.crypto import same_secret
from bridge.extensions import db
from bridge.models import User, utcnow

bp = Blueprint("login", __name__)

LINK_MAX_AGE_SECONDS = 72 * 3600
TOKEN_SALT = "crm-bridge.login-link.v1"  # noqa: S105 (a salt that separates token uses, not a secret)
MIN_PASSWORD_LENGTH = passwords.MIN_PASSWORD_LENGTH
MAX_PASSWORD_LENGTH = 1024

# The clock tokens are stamped and checked with. Tests replace it to move time; nothing else should.
clock: Callable[[], float] = time.time


# -- errors -----------------------------------------------------------------------------------


class LoginLinkError(Exception):
    """A link that cannot be used. ``status`` and ``reason`` drive the page the user sees."""

    status = 400
    reason = "invalid"
    title = "This link is not valid"
    explanation = "The link is damaged or was not issued by this site. Copy the whole link from the mail."


class LinkInvalid(LoginLinkError):
    """Forged, truncated, signed with another key, or for a user that no longer exists."""


class LinkExpired(LoginLinkError):
    status = 410
    reason = "expired"
    title = "This link has expired"
    explanation = "Login links are valid for 72 hours. Ask the site for a new one."


class LinkUsed(LoginLinkError):
    status = 410
    reason = "used"
    title = "This link has already been used"
    explanation = (
        "A password was set with it (or changed since it was sent). Sign in with that password, "
        "or ask the site for a new link."
    )


class PasswordRejected(users.UserRuleError):
    """The new password breaks a rule (length)."""

    status = 422
    code = "invalid_password"


# -- tokens -----------------------------------------------------------------------------------


class _ClockedSigner(TimestampSigner):
    """itsdangerous reads the time through ``get_timestamp`` both when signing and when
    checking ``max_age``; routing it through ``clock`` lets tests move time without sleeping."""

    def get_timestamp(self) -> int:
        return int(clock())


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=TOKEN_SALT, signer=_ClockedSigner)


def password_stamp(password_hash: str | None) -> str:
    """A keyed digest of the password hash: changes whenever the password does. Keyed with
    ``SECRET_KEY`` because the token payload is signed, not encrypted, and should not carry
    anything derived from the hash that could be attacked offline."""
    key = current_app.config["SECRET_KEY"].encode()
    digest = hmac.new(key, (password_hash or "").encode(), hashlib.sha256).hexdigest()
    return digest[:32]


def make_login_token(user: User) -> str:
    """A signed token for ``user``, spent as soon as the user's password changes."""
    return _serializer().dumps({"uid": user.id, "pw": password_stamp(user.password_hash)})


@dataclass(frozen=True)
class LoginLink:
    user: User
    fingerprint: str


def read_login_token(token: str) -> LoginLink:
    """Check a token. Raises ``LinkExpired``, ``LinkInvalid`` or ``LinkUsed``.

    The signature is checked before the age, so an expired token is known to be genuine.
    """
    try:
        data: Any = _serializer().loads(token, max_age=LINK_MAX_AGE_SECONDS)
    except SignatureExpired as exc:
        raise LinkExpired() from exc
    except BadData as exc:
        raise LinkInvalid() from exc
    if not isinstance(data, dict) or not isinstance(data.get("uid"), int) or not isinstance(data.get("pw"), str):
        raise LinkInvalid()
    user = db.session.get(User, data["uid"])
    if user is None:
        raise LinkInvalid()
    if not same_secret(data["pw"], password_stamp(user.password_hash)):
        raise LinkUsed()
    return LoginLink(user=user, fingerprint=data["pw"])


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(f"the password must be at most {MAX_PASSWORD_LENGTH} characters long")


def set_password_with_link(token: str, password: str) -> User:
    """Spend ``token`` to set ``password`` (flushed, not committed: the caller commits).

    The update only applies while the password hash is still the one the link was made for, so
    two submissions racing with the same link cannot both succeed: the loser gets ``LinkUsed``.
    """
    link = read_login_token(token)
    check_new_password(password)
    user = link.user
    old_hash = user.password_hash
    same_hash = User.password_hash.is_(None) if old_hash is None else User.password_hash == old_hash
    result = db.session.execute(
        update(User)
        .where(User.id == user.id, same_hash)
        .values(password_hash=passwords.hash_password(password), updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise LinkUsed()
    db.session.refresh(user)
    return user


# -- the page ---------------------------------------------------------------------------------


class SetPasswordForm(FlaskForm):
    password = PasswordField(
        "New password",
        validators=[
            DataRequired("Enter a new password."),
            Length(
                min=MIN_PASSWORD_LENGTH,
                max=MAX_PASSWORD_LENGTH,
                message=f"Use at least {MIN_PASSWORD_LENGTH} characters.",
            ),
        ],
    )
    password_confirm = PasswordField(
        "Repeat the password",
        validators=[
            DataRequired("Repeat the password."),
            EqualTo("password", message="The two passwords do not match."),
        ],
    )


@bp.after_request
def keep_token_private(response: Response) -> Response:
    """The token is in the URL: keep it out of caches and other sites' Referer headers."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def _refusal(error: LoginLinkError) -> tuple[str, int]:
    return render_template("login/link_error.html", error=error, site_name=_site_name()), error.status


def _site_name() -> str:
    return current_app.config.get("BRIDGE_SITE_NAME") or "crm-bridge"


@bp.route("/login/<token>", methods=["GET", "POST"])
def set_password(token: str) -> Any:
    try:
        link = read_login_token(token)
    except LoginLinkError as error:
        return _refusal(error)
    form = SetPasswordForm()
    if form.validate_on_submit():
        try:
            user = set_password_with_link(token, form.password.data or "")
        except LoginLinkError as error:
            db.session.rollback()
            return _refusal(error)
        db.session.commit()
        return render_template("login/done.html", user=user, site_name=_site_name())
    status = 400 if form.is_submitted() else 200
    return render_template("login/set_password.html", form=form, user=link.user, site_name=_site_name()), status
