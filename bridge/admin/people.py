"""Console pages for people and access: a user's tags per connection (pushed to the CRM), a new
login link, a resync from the CRM; API tokens, administrators and roles.

Thin: the rules are the services the CLI calls (``bridge.accounts.api_tokens``, ``staff``,
``tag_push``, ``welcome_mail``; ``bridge.inbound.resync``). A token or generated password is
shown once, in the answer to the POST that made it (rendered, never redirected).
"""

from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from bridge.accounts import api_tokens, passwords, staff, tag_push, users
from bridge.accounts.user_tags import replace_tags
from bridge.accounts.welcome_mail import queue_welcome
from bridge.admin.blueprint import bp
from bridge.admin.connection_views import connection_or_404
from bridge.extensions import db
from bridge.inbound.resync import NoContact, resync_user
from bridge.inbound.runtime import InboundRejected
from bridge.models import User
from crm_adapters.errors import AdapterError


def _user_or_404(user_id: int) -> User:
    return db.session.get(User, user_id) or abort(404, f"There is no user #{user_id}.")


def _back(user: User) -> Response:
    return redirect(url_for("admin.user_detail", user_id=user.id))


# -- a user's tags, login link, resync --------------------------------------------------------


@bp.post("/users/<int:user_id>/tags")
def user_tags(user_id: int) -> Response:
    """Set the user's tags on one connection (pushed to its CRM) or the local ones."""
    user = _user_or_404(user_id)
    tags = tag_push.parse_tags(request.form.get("tags", ""))
    scope = request.form.get("connection", "")
    if not scope:
        added, removed = replace_tags(user, None, tags)
        db.session.commit()
        flash(f"Local tags saved (+{len(added)}, -{len(removed)}).", "success")
        return _back(user)
    connection = connection_or_404(scope)
    added, removed, delivery = tag_push.set_connection_tags(user, connection, tags)
    db.session.commit()
    if delivery is None:
        flash(f"The tags on {connection.name} were already these: nothing to push.", "info")
    else:
        flash(
            f"Tags on {connection.name} saved (+{len(added)}, -{len(removed)}); delivery #{delivery.id} pushes them.",
            "success",
        )
    return _back(user)


@bp.post("/users/<int:user_id>/login-link")
def user_login_link(user_id: int) -> Response:
    """Mail the user a fresh one-time login link (the welcome mail: it carries one)."""
    user = _user_or_404(user_id)
    delivery = queue_welcome(user)
    db.session.commit()
    flash(f"A new login link is on its way to {user.email} (delivery #{delivery.id}).", "success")
    return _back(user)


@bp.post("/users/<int:user_id>/resync")
def user_resync(user_id: int) -> Response:
    user = _user_or_404(user_id)
    connection = connection_or_404(request.form.get("connection", ""))
    try:
        outcome = resync_user(user, connection)
    except (NoContact, AdapterError, InboundRejected) as exc:
        db.session.rollback()
        flash(f"Not resynced from {connection.name}: {getattr(exc, 'message', None) or exc}", "error")
    else:
        changed = outcome.body.get("updated_fields") or []
        flash(f"Resynced from {connection.name}: {', '.join(changed) or 'no field changed'}.", "success")
    return _back(user)


# -- API tokens -------------------------------------------------------------------------------


def _tokens_page(*, new_token: str | None = None, new_name: str = "", error: str | None = None) -> str:
    return render_template(
        "admin/tokens.html", tokens=api_tokens.list_tokens(), new_token=new_token, new_name=new_name, error=error
    )


@bp.get("/tokens")
def tokens() -> str:
    return _tokens_page()


@bp.post("/tokens")
def token_create() -> str | tuple[str, int]:
    try:
        row, token = api_tokens.create_token(request.form.get("name", ""))
        db.session.commit()
    except api_tokens.TokenNameInvalid as exc:
        db.session.rollback()
        return _tokens_page(error=str(exc), new_name=request.form.get("name", "")), 422
    return _tokens_page(new_token=token, new_name=row.name)


@bp.post("/tokens/revoke")
def token_revoke() -> Response:
    name = request.form.get("name", "")
    try:
        api_tokens.revoke_token(name)
        db.session.commit()
    except api_tokens.TokenNotFound as exc:
        flash(str(exc), "error")
    else:
        flash(f"API token {name!r} revoked: requests carrying it are refused from now on.", "success")
    return redirect(url_for("admin.tokens"))


# -- administrators and roles -----------------------------------------------------------------


def _admins_page(*, error: str | None = None, email: str = "", created: tuple[str, str] | None = None) -> str:
    return render_template(
        "admin/admins.html", admins=staff.administrators(), error=error, email=email, created=created
    )


@bp.get("/admins")
def admins() -> str:
    return _admins_page()


@bp.post("/admins")
def admin_create() -> str | tuple[str, int]:
    email = request.form.get("email", "").strip()
    chosen = request.form.get("password", "")
    password = chosen or passwords.generate_password(20)
    if "@" not in email:
        return _admins_page(error="Enter the new administrator's email address.", email=email), 422
    try:
        user, _created = staff.make_admin(email, password)
        db.session.commit()
    except users.UserRuleError as exc:
        db.session.rollback()
        return _admins_page(error=exc.message, email=email), 422
    return _admins_page(created=(user.email, "" if chosen else password))


@bp.post("/admins/<int:user_id>/revoke")
def admin_revoke(user_id: int) -> Response:
    user = _user_or_404(user_id)
    try:
        staff.revoke_admin(user, by=g.admin)
        db.session.commit()
    except users.UserRuleError as exc:
        db.session.rollback()
        flash(f"{user.email} stays an administrator: {exc.message}.", "error")
    else:
        flash(f"{user.email} is no longer an administrator (now a subscriber).", "success")
    return redirect(url_for("admin.admins"))


@bp.get("/roles")
def roles() -> str:
    return render_template("admin/roles.html", roles=staff.roles_with_counts(), error=None, slug="", title="")


@bp.post("/roles")
def role_create() -> Response | tuple[str, int]:
    slug, title = request.form.get("slug", ""), request.form.get("title", "")
    try:
        role = staff.add_role(slug, title)
        db.session.commit()
    except staff.RoleInvalid as exc:
        db.session.rollback()
        page = render_template(
            "admin/roles.html", roles=staff.roles_with_counts(), error=str(exc), slug=slug, title=title
        )
        return page, 422
    flash(f"Role {role.slug} ({role.title}) created.", "success")
    return redirect(url_for("admin.roles"))
