"""Roles and administrators: the rules the CLI (``crm-bridge role …``, ``admin create``) and the
admin console share, so both refuse the same things with the same words."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from bridge.accounts import passwords, users
from bridge.extensions import db
from bridge.models import Role, User, utcnow

SUBSCRIBER = "subscriber"  # what a former administrator becomes (one of ``users.DEFAULT_ROLES``)
ROLE_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class RoleInvalid(ValueError):
    """The slug is malformed or taken; ``code`` is the CLI's JSON error code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def add_role(slug: str, title: str | None = None) -> Role:
    slug = (slug or "").strip()
    if not ROLE_SLUG.match(slug):
        raise RoleInvalid("a role is a lower-case slug (letters, digits, - and _)", "invalid_role")
    if users.role_exists(slug):
        raise RoleInvalid(f"role {slug!r} exists", "role_exists")
    role = Role(slug=slug, title=(title or "").strip() or slug.replace("_", " ").replace("-", " ").capitalize())
    db.session.add(role)
    db.session.flush()
    return role


def roles_with_counts() -> list[tuple[Role, int]]:
    counts = dict(db.session.execute(select(User.role, func.count(User.id)).group_by(User.role)).all())
    return [(role, counts.get(role.slug, 0)) for role in db.session.scalars(select(Role).order_by(Role.slug))]


def assignable_roles() -> list[str]:
    """Roles a connection may give its users (``default_role``): every role but administrator,
    which no webhook assigns."""
    return [role.slug for role, _ in roles_with_counts() if role.slug != users.ADMIN_ROLE]


def administrators() -> list[User]:
    return list(db.session.scalars(select(User).where(User.role == users.ADMIN_ROLE).order_by(User.email)))


def make_admin(email: str, password: str) -> tuple[User, bool]:
    """Create an administrator, or promote the user with this email and set the password.
    Returns (user, created). Raises ``users.UserRuleError``."""
    if len(password) < passwords.MIN_PASSWORD_LENGTH:
        raise users.UserRuleError(f"the password must be at least {passwords.MIN_PASSWORD_LENGTH} characters")
    users.ensure_default_roles()
    user = users.find_by_email(email)
    if user is None:
        return users.create_user(email=email, password=password, role=users.ADMIN_ROLE), True
    user.role = users.ADMIN_ROLE
    user.password_hash = passwords.hash_password(password)
    user.updated_at = utcnow()
    return user, False


class LastAdministrator(users.UserRuleError):
    """Demoting would leave the console without an administrator, or lock out the one asking."""


def revoke_admin(user: User, *, by: User) -> None:
    """Take the administrator role away (the user becomes a subscriber; their sessions end on
    their next request, since the console checks the role on each). Never oneself, never the
    last administrator."""
    if user.id == by.id:
        raise LastAdministrator("you cannot remove your own administrator rights; ask another administrator")
    if user.role != users.ADMIN_ROLE:
        raise users.UserRuleError(f"{user.email} is not an administrator")
    if len(administrators()) <= 1:
        raise LastAdministrator("the console needs at least one administrator")
    user.role = SUBSCRIBER
    user.updated_at = utcnow()
