"""API: users (CONTRACT.md §4). Thin: parse, call ``bridge.accounts.local_edits``, render user JSON."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from bridge.accounts import local_edits as accounts
from bridge.accounts import user_json, users
from bridge.accounts.signup_country import request_signup_country
from bridge.api.auth import token_required
from bridge.api.blueprint import bp
from bridge.errors import ApiError
from bridge.models import User


def json_body() -> Any:
    """The request's JSON object, or a 400 ``invalid_payload``."""
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError(400, "invalid_payload", "the body must be JSON (Content-Type: application/json)")
    return data


def validated(model: type[accounts.M]) -> accounts.M:
    try:
        return accounts.parse_input(model, json_body())
    except accounts.InvalidInput as exc:
        raise ApiError(exc.status, exc.code, exc.message, extra={"problems": exc.problems}) from None


def page_argument() -> int:
    raw = request.args.get("page", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, "invalid_parameter", "page must be a positive whole number")
    return int(raw)


def rule_error(exc: users.UserRuleError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


def user_or_404(user_id: int) -> User:
    user = accounts.get_user(user_id)
    if user is None:
        raise ApiError(404, "not_found", f"no user with id {user_id}")
    return user


@bp.post("/users")
@token_required
def create_user() -> tuple[Response, int]:
    data = validated(accounts.RegistrationInput)
    try:
        created = accounts.register_json(data, signup_country=request_signup_country())
    except users.UserRuleError as exc:
        raise rule_error(exc) from None
    return jsonify(created), 201


@bp.get("/users")
@token_required
def list_users() -> Response:
    page = page_argument()
    rows, total = accounts.find_users(email=request.args.get("email"), tag=request.args.get("tag"), page=page)
    return jsonify(
        {"items": [user_json.user_to_json(u, with_activity=False) for u in rows], "total": total, "page": page}
    )


@bp.get("/users/<int:user_id>")
@token_required
def show_user(user_id: int) -> Response:
    return jsonify(user_json.user_to_json(user_or_404(user_id)))


@bp.patch("/users/<int:user_id>")
@token_required
def update_user(user_id: int) -> Response:
    user = user_or_404(user_id)
    change = validated(accounts.ProfileChange)
    try:
        changed = accounts.update_profile(user, change)
    except users.UserRuleError as exc:
        raise rule_error(exc) from None
    return jsonify({**user_json.user_to_json(user), "changed": changed})


@bp.post("/users/<int:user_id>/tags")
@token_required
def change_user_tags(user_id: int) -> Response:
    user = user_or_404(user_id)
    change = validated(accounts.TagChange)
    added, removed = accounts.change_tags(user, change)
    return jsonify({**user_json.user_to_json(user), "tags_added": added, "tags_removed": removed})
