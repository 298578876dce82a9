"""What makes a custom webhook's settings valid (CONTRACT.md §8), checked when a connection is
saved and by ``connection test``: methods, URLs, header names, auth shapes, signing secrets,
limits, the recipe, and every template (an unknown variable is refused here, not at delivery)."""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from typing import Any

from crm_adapters import webhook_recipes
from crm_adapters import webhook_templates as templates
from crm_adapters.standard_webhooks import secret_key, signing_secrets

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
AUTH_FIELDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "bearer": ("token",),
    "api_key": ("header", "value"),
    "basic": ("username", "password"),
    "oauth2": ("token_url", "client_id", "client_secret"),
}
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
MAX_TIMEOUT_S = 120


def _auth_problems(auth: Any) -> list[str]:
    if not isinstance(auth, Mapping):
        return ['auth must be an object such as {"type":"none"}']
    kind = auth.get("type", "none")
    if kind not in AUTH_FIELDS:
        return [f"auth.type must be one of {', '.join(AUTH_FIELDS)}"]
    problems = [f"auth.{key} is required for {kind}" for key in AUTH_FIELDS[kind] if not auth.get(key)]
    if kind == "api_key" and auth.get("header") and not HEADER_NAME.match(str(auth["header"])):
        problems.append("auth.header must be a valid header name")
    if kind == "oauth2" and auth.get("token_url") and not str(auth["token_url"]).startswith(("http://", "https://")):
        problems.append("auth.token_url must be an http(s) URL")
    return problems


def config_problems(config: Mapping[str, Any]) -> list[str]:
    """Problems with ``config`` as sentences naming the setting (empty: fine)."""
    problems: list[str] = webhook_recipes.recipe_problems(config)
    config = webhook_recipes.with_recipe(config)
    method = str(config.get("method") or "POST").upper()
    if method not in METHODS:
        problems.append(f"method must be one of {', '.join(METHODS)}")
    if str(config.get("test_method") or "GET").upper() not in (*METHODS, "HEAD", "OPTIONS"):
        problems.append(f"test_method must be one of {', '.join(METHODS)}, HEAD, OPTIONS")
    test_url = config.get("test_url")
    if test_url not in (None, "") and not (isinstance(test_url, str) and test_url.startswith(("http://", "https://"))):
        problems.append("test_url must start with http:// or https://")
    url = config.get("url")
    if url not in (None, "") and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        problems.append("url must start with http:// or https://")
    for name in ("headers", "query"):
        value = config.get(name) or {}
        if not isinstance(value, Mapping):
            problems.append(f"{name} must be an object of name → template")
        elif name == "headers":
            problems += [f"headers: {key!r} is not a valid header name" for key in value if not HEADER_NAME.match(key)]
            problems += [f"headers.{key} must be a string" for key, item in value.items() if not isinstance(item, str)]
    problems += _auth_problems(config.get("auth") or {"type": "none"})
    for secret in signing_secrets(config):
        try:
            secret_key(secret)
        except (binascii.Error, ValueError):
            problems.append("signing secrets must be whsec_ followed by base64")
    for name, low, high in (("timeout", 1, MAX_TIMEOUT_S), ("max_body_bytes", 1, 10_485_760)):
        value = config.get(name)
        if value is not None and not (isinstance(value, int) and low <= value <= high):
            problems.append(f"{name} must be a whole number from {low} to {high}")
    for name in ("url", "headers", "query", "body"):
        problems += templates.template_problems(config.get(name), name)
    return problems
