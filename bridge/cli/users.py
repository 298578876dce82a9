"""CLI: roles, administrators, API tokens and local users.

``crm-bridge user create`` is local registration (``registration.register_user``), so its pushes are
queued in the same transaction as the user, exactly as for ``POST /api/users``. Administrators
are made only by ``crm-bridge admin create``. Generated passwords and tokens are printed once.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy import func, select

from bridge.accounts import api_tokens, passwords, registration, staff, user_json, users, welcome_mail
from bridge.cli.group import bridge_group, emit, fail, json_option
from bridge.extensions import db
from bridge.models import Connection, Delivery, User, iso

MIN_CHOSEN_PASSWORD = passwords.MIN_PASSWORD_LENGTH
PAGE_SIZE = 50

# AppGroups, so their commands run inside an app context (with_appcontext).
role_group = AppGroup("role", help="Roles users can have.")
admin_group = AppGroup("admin", help="Administrators of the admin console.")
token_group = AppGroup("token", help="API tokens for /api.")
user_group = AppGroup("user", help="Local user accounts.")
for _group in (role_group, admin_group, token_group, user_group):
    bridge_group.add_command(_group)


def require_plausible_email(email: str, as_json: bool) -> None:
    """A cheap guard against swapped arguments (``admin create PASSWORD``); full validation of
    addresses is the registration service's business."""
    local, at, domain = email.strip().partition("@")
    if not (local and at and domain) or any(c.isspace() for c in email.strip()):
        fail(f"{email!r} is not an email address", as_json, "invalid_email")


def read_password_from_stdin(as_json: bool) -> str:
    """The first line of stdin, so ``echo PW | crm-bridge …`` and a here-string both work and
    the password never appears in the process list or shell history."""
    line = sys.stdin.readline().rstrip("\r\n")
    if len(line) < MIN_CHOSEN_PASSWORD:
        fail(f"the password from stdin must be at least {MIN_CHOSEN_PASSWORD} characters", as_json, "weak_password")
    return line


# -- roles ------------------------------------------------------------------------------------


@role_group.command("add")
@click.argument("slug")
@click.option("--title", help="Human-readable name (default: the slug, capitalised).")
@json_option
def role_add_command(slug: str, title: str | None, as_json: bool) -> None:
    """Create a role that webhooks, registrations and the CLI may assign."""
    try:
        role = staff.add_role(slug, title)
    except staff.RoleInvalid as exc:
        db.session.rollback()
        fail(str(exc), as_json, exc.code)
    db.session.commit()
    emit({"slug": role.slug, "title": role.title}, as_json, lambda d: f"Role {d['slug']!r} ({d['title']}) created.")


@role_group.command("list")
@json_option
def role_list_command(as_json: bool) -> None:
    """Every role with its number of users."""
    items = [{"slug": role.slug, "title": role.title, "users": n} for role, n in staff.roles_with_counts()]
    emit(
        {"items": items, "total": len(items)},
        as_json,
        lambda d: "\n".join(f"{i['slug']:<24} {i['title']:<24} {i['users']} users" for i in d["items"]),
    )


# -- administrators and tokens ----------------------------------------------------------------


@admin_group.command("create")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin instead of generating one.")
@json_option
def admin_create_command(email: str, password_stdin: bool, as_json: bool) -> None:
    """Create an administrator, or promote an existing user and set their password."""
    require_plausible_email(email, as_json)
    password = read_password_from_stdin(as_json) if password_stdin else passwords.generate_password(20)
    try:
        user, created = staff.make_admin(email, password)
    except users.UserRuleError as exc:
        db.session.rollback()
        fail(exc.message, as_json, exc.code)
    db.session.commit()
    data: dict[str, Any] = {"id": user.id, "email": user.email, "username": user.username, "created": created}
    if not password_stdin:
        data["password"] = password

    def render(d: dict[str, Any]) -> str:
        verb = "Created administrator" if d["created"] else "Promoted to administrator"
        lines = [f"{verb}: {d['email']} (username {d['username']})"]
        if "password" in d:
            lines.append(f"Password (shown once): {d['password']}")
        return "\n".join(lines)

    emit(data, as_json, render)


@token_group.command("create")
@click.argument("name")
@json_option
def token_create_command(name: str, as_json: bool) -> None:
    """An API token for /api (Authorization: Bearer TOKEN). Shown once; stored as a hash."""
    try:
        row, token = api_tokens.create_token(name)
    except api_tokens.TokenNameInvalid as exc:
        db.session.rollback()
        fail(str(exc), as_json, "invalid_name")
    db.session.commit()
    emit(
        {"name": row.name, "token": token},
        as_json,
        lambda d: f"API token {d['name']!r} (shown once; store it now):\n{d['token']}",
    )


@token_group.command("list")
@json_option
def token_list_command(as_json: bool) -> None:
    """API tokens by name (never their values: only hashes are stored)."""
    items = [
        {"name": t.name, "created_at": iso(t.created_at), "last_used_at": iso(t.last_used_at)}
        for t in api_tokens.list_tokens()
    ]
    emit(
        {"items": items, "total": len(items)},
        as_json,
        lambda d: "\n".join(f"{i['name']:<32} created {i['created_at']}" for i in d["items"]) or "No API tokens.",
    )


@token_group.command("revoke")
@click.argument("name")
@json_option
def token_revoke_command(name: str, as_json: bool) -> None:
    """Revoke the API token called NAME: requests carrying it get 401 from then on."""
    try:
        api_tokens.revoke_token(name)
    except api_tokens.TokenNotFound as exc:
        fail(str(exc), as_json, "not_found")
    db.session.commit()
    emit({"success": True, "name": name, "revoked": True}, as_json, lambda d: f"API token {d['name']!r} revoked.")


# -- users ------------------------------------------------------------------------------------


@user_group.command("create")
@click.option("--email", required=True)
@click.option("--first-name", default="")
@click.option("--last-name", default="")
@click.option("--role", default=None, help="Default: subscriber. Administrators: use `crm-bridge admin create`.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (else the user has none yet).")
@json_option
def user_create_command(
    email: str, first_name: str, last_name: str, role: str | None, password_stdin: bool, as_json: bool
) -> None:
    """Register a local user; pushes to connections with push_on_register are queued with it."""
    require_plausible_email(email, as_json)
    password = read_password_from_stdin(as_json) if password_stdin else None
    try:
        user = registration.register_user(
            email=email, first_name=first_name, last_name=last_name, role=role, password=password
        )
    except users.UserRuleError as exc:
        db.session.rollback()
        fail(exc.message, as_json, exc.code)
    queued = [
        {"id": delivery_id, "kind": kind, "connection": connection_name}
        for delivery_id, kind, connection_name in db.session.execute(
            select(Delivery.id, Delivery.kind, Connection.name)
            .outerjoin(Connection, Connection.id == Delivery.connection_id)
            .where(Delivery.user_id == user.id)
            .order_by(Delivery.id)
        )
    ]
    db.session.commit()
    data = user_json.user_to_json(user, with_activity=False)
    data["queued_deliveries"] = queued

    def render(d: dict[str, Any]) -> str:
        who = f"{d['id']}: {d['email']} (username {d['username']}, role {d['role']})"
        return f"Created user {who}; queued {len(queued)} push(es)."

    emit(data, as_json, render)


@user_group.command("login-link")
@click.argument("email")
@click.option("--send", is_flag=True, help="Mail it (the welcome mail) instead of printing it.")
@json_option
def user_login_link_command(email: str, send: bool, as_json: bool) -> None:
    """A fresh one-time login link for EMAIL (valid 72 hours): printed, or mailed with --send."""
    user = users.find_by_email(email)
    if user is None:
        fail(f"no user with the email {email!r} (see: crm-bridge user list)", as_json, "not_found")
    if send:
        delivery = welcome_mail.queue_welcome(user)
        db.session.commit()
        emit(
            {"email": user.email, "queued": True, "delivery_id": delivery.id},
            as_json,
            lambda d: f"A login link is queued for {d['email']} (delivery #{d['delivery_id']}).",
        )
        return
    emit({"email": user.email, "link": welcome_mail.login_link(user)}, as_json, lambda d: d["link"])


@user_group.command("list")
@click.option("--email", help="Only this email (case-insensitive).")
@click.option("--page", default=1, type=click.IntRange(min=1), show_default=True)
@json_option
def user_list_command(email: str | None, page: int, as_json: bool) -> None:
    """Users, newest first, in pages of 50 (``{"items","total","page"}`` with --json)."""
    query = select(User)
    if email:
        query = query.where(User.email == (users.normalise_email(email) or ""))
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(query.order_by(User.id.desc()).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE))
    items = [user_json.user_to_json(user, with_activity=False) for user in rows]

    def render(d: dict[str, Any]) -> str:
        if not d["items"]:
            return "No users."
        lines = [f"{'ID':<6} {'EMAIL':<36} {'USERNAME':<24} ROLE"]
        lines += [f"{i['id']:<6} {i['email']:<36} {i['username']:<24} {i['role']}" for i in d["items"]]
        lines.append(f"{d['total']} user(s), page {d['page']}")
        return "\n".join(lines)

    emit({"items": items, "total": total, "page": page}, as_json, render)
