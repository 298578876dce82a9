"""Local account changes from people and scripts: registration, profile edits, local tags.

Shared by the users API and the public ``/register`` page so both validate the same way
(pydantic v2 with email-validator) and both commit the user together with its pushes
(``bridge.accounts.registration`` writes the outbox rows in the same transaction). Functions here
commit; they raise ``InvalidInput`` or ``users.UserRuleError`` subclasses, never return False.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bridge.accounts import passwords, registration, user_json, usernames, users
from bridge.accounts.signup_country import client_meta
from bridge.extensions import db
from bridge.models import User, UserTag, utcnow

PAGE_SIZE = 50
MIN_PASSWORD_LENGTH = passwords.MIN_PASSWORD_LENGTH
TagName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=191)]
Username = Annotated[str, StringConstraints(min_length=1, max_length=191, pattern=r"^[A-Za-z0-9._@+-]+$")]
Name = Annotated[str, StringConstraints(max_length=191)]
Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=256, strip_whitespace=False)]


class InvalidInput(ValueError):
    """The request body does not have the right shape; ``message`` names each bad field."""

    status = 422
    code = "invalid_input"

    def __init__(self, message: str, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


class UsernameTaken(users.UserRuleError):
    status = 409
    code = "username_taken"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class RegistrationInput(_Input):
    email: EmailStr
    username: Username | None = None
    password: Password | None = None
    first_name: Name = ""
    last_name: Name = ""
    role: Annotated[str, StringConstraints(max_length=64)] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    tags: list[TagName] = Field(default_factory=list)


class ProfileChange(_Input):
    """A PATCH: only the fields given change. ``meta`` is merged; a key set to null is removed.
    Keys only the server writes (``signup_country``) are ignored: neither set nor removed."""

    email: EmailStr | None = None
    username: Username | None = None
    password: Password | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    role: Annotated[str, StringConstraints(max_length=64)] | None = None
    meta: dict[str, Any] | None = None


class TagChange(_Input):
    add: list[TagName] = Field(default_factory=list)
    remove: list[TagName] = Field(default_factory=list)


M = TypeVar("M", bound=BaseModel)


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "body"
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "extra_forbidden":
        message = "is not a known field"
    elif error.get("type") == "missing":
        message = "is required"
    return f"{where}: {message}"


def parse_input(model: type[M], data: Any) -> M:
    """Validate ``data`` (a JSON object) into ``model``; raise ``InvalidInput`` naming every
    bad field (``email: value is not a valid email address: …``)."""
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        raise InvalidInput("; ".join(_describe(e) for e in exc.errors()), problems) from None


def register(data: RegistrationInput, *, allow_role: bool = True, signup_country: str | None = None) -> User:
    """Create the user and its registration pushes in one transaction, and commit.

    ``meta.signup_country`` is ``signup_country`` (from a trusted source, see
    ``bridge.accounts.signup_country``), never the client's own value.

    A concurrent registration of the same email loses on the unique constraint and gets
    ``EmailTaken``; a username race is retried with a fresh username.
    """
    return _register(data, allow_role=allow_role, render=False, country=signup_country)[0]


def register_json(
    data: RegistrationInput, *, allow_role: bool = True, signup_country: str | None = None
) -> dict[str, Any]:
    """``register``, answering with the new user's JSON (``user_json.user_to_json``'s shape).

    A brand-new user has no CRM links, no activity and only the local tags just written, so
    the JSON is built from what this transaction wrote, before the commit: reading it back
    would cost four queries and, on SQLite, a second write-locked transaction per sign-up.
    """
    return _register(data, allow_role=allow_role, render=True, country=signup_country)[1]


def new_user_json(registered: registration.Registered) -> dict[str, Any]:
    """The JSON of a user registered in this transaction (no links, activity or CRM tags)."""
    user = registered.user
    return {
        **user_json.profile_json(user),
        "tags": {"": list(registered.local_tags)} if registered.local_tags else {},
        "crm_links": [],
        "crm_activity": [],
    }


def _register(
    data: RegistrationInput, *, allow_role: bool, render: bool, country: str | None
) -> tuple[User, dict[str, Any]]:
    for attempt in range(3):
        try:
            registered = registration.register(
                email=str(data.email),
                username=data.username,
                password=data.password,
                first_name=data.first_name,
                last_name=data.last_name,
                role=data.role if allow_role else None,
                meta=data.meta,
                signup_country=country,
                tags=data.tags,
            )
            rendered = new_user_json(registered) if render else {}
            db.session.commit()
            return registered.user, rendered
        except IntegrityError:
            db.session.rollback()
            if users.find_by_email(str(data.email)) is not None:
                raise users.EmailTaken(f"a user with email {str(data.email).lower()} exists") from None
            if attempt == 2:
                raise
        except Exception:
            db.session.rollback()
            raise
    raise AssertionError("unreachable")


def get_user(user_id: int) -> User | None:
    return db.session.get(User, user_id)


def update_profile(user: User, change: ProfileChange) -> list[str]:
    """Apply a PATCH, queue ``contact.update`` pushes for what changed, commit. Returns the
    changed field names."""
    changed: list[str] = []
    given = change.model_fields_set
    try:
        if "email" in given and change.email is not None:
            email = str(change.email).lower()
            if email != user.email:
                if users.find_by_email(email) is not None:
                    raise users.EmailTaken(f"a user with email {email} exists")
                user.email = email
                changed.append("email")
        if "username" in given and change.username and change.username != user.username:
            if usernames.username_taken(change.username):
                raise UsernameTaken(f"username {change.username!r} is taken")
            user.username = change.username
            changed.append("username")
        for column in ("first_name", "last_name"):
            value = getattr(change, column)
            if column in given and value is not None and value != getattr(user, column):
                setattr(user, column, value)
                changed.append(column)
        if "role" in given and change.role:
            role = users.resolve_role(change.role, "subscriber")
            if role != user.role:
                user.role = role
                changed.append("role")
        if "password" in given and change.password:
            user.password_hash = passwords.hash_password(change.password)
            changed.append("password")
        if "meta" in given and change.meta is not None:
            meta = dict(user.meta or {})
            for key, value in client_meta(change.meta).items():
                if value is None:
                    if key in meta:
                        meta.pop(key)
                        changed.append(key)
                elif meta.get(key) != value:
                    meta[key] = value
                    changed.append(key)
            user.meta = meta
        if changed:
            user.updated_at = utcnow()
            # A password or role is local: nothing to push for those alone.
            pushed = [name for name in changed if name not in ("password", "role", "username")]
            registration.queue_profile_update(user, pushed)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise users.EmailTaken("the email or username was taken concurrently") from None
    except Exception:
        db.session.rollback()
        raise
    return changed


def change_tags(user: User, change: TagChange) -> tuple[list[str], list[str]]:
    """Add and remove local tags (not a connection's), commit; returns (added, removed)."""
    try:
        added, removed = users.change_local_tags(user, add=change.add, remove=change.remove)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return added, removed


def find_users(*, email: str | None = None, tag: str | None = None, page: int = 1) -> tuple[list[User], int]:
    """Users by exact email (case-insensitive) and/or tag name (any scope), oldest first."""
    conditions = []
    if email:
        conditions.append(User.email == email.strip().lower())
    if tag:
        conditions.append(User.id.in_(select(UserTag.user_id).where(UserTag.name == tag.strip())))
    total = db.session.scalar(select(func.count(User.id)).where(*conditions)) or 0
    rows = db.session.scalars(
        select(User).where(*conditions).order_by(User.id).offset((max(page, 1) - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    )
    return list(rows), int(total)
