"""Ready-made custom webhook requests ("recipes") an owner picks by name instead of writing the
body: ``--set recipe=sync_new_user`` (CLI), ``{"settings": {"recipe": "sync_new_user"}}`` (API).

A recipe supplies the method and the body templates; settings the owner sets themselves
(``method``, ``body``) win over it, so a recipe is a starting point that can be adapted field by
field. Documented in docs/httpsafe.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    # "Sync new user to CRM", the custom-webhook recipe crm-bridge grew from: one POST per
    # registration with the user's id, email, tier, signup country (two letters, recorded from
    # the owner's trusted geo source) and the time of the signup. Single-expression strings keep
    # their JSON type (``user_id`` is a number).
    "sync_new_user": {
        "method": "POST",
        "body": {
            "user_id": "{{ contact.user_id }}",
            "email": "{{ contact.email }}",
            "tier": "{{ contact.meta.tier }}",
            "signup_country": "{{ contact.meta.signup_country }}",
            "signup_at": "{{ contact.created_at }}",
        },
    },
}


def recipe_problems(config: Mapping[str, Any]) -> list[str]:
    name = config.get("recipe")
    if name in (None, "") or name in RECIPES:
        return []
    return [f"recipe must be one of {', '.join(RECIPES)}"]


def with_recipe(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with its recipe's method and body filled in where the owner set none."""
    recipe = RECIPES.get(str(config.get("recipe") or ""))
    if recipe is None:
        return dict(config)
    return {**config, **{key: value for key, value in recipe.items() if config.get(key) in (None, "")}}
