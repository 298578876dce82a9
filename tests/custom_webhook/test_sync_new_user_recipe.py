"""The "Sync new user to CRM" recipe (issue 16 item 10): picked by name on a new custom webhook
(``--set recipe=sync_new_user``), a registration through the API posts ``user_id``, ``email``,
``tier``, ``signup_country`` (from the owner's geo header) and ``signup_at`` to the receiver."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.delivery.worker import DeliveryWorker
from crm_adapters.custom_webhook import CustomWebhookAdapter
from crm_adapters.webhook_recipes import RECIPES


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_GEO_HEADER": "CF-IPCountry"}


def test_a_registration_posts_the_recipe_body(app, client, runner, auth_headers, receiver) -> None:
    added = runner.invoke(
        args=[
            "bridge", "connection", "add", "signups", "--type", "custom_webhook",
            "--set", f"url={receiver.url}/signups", "--set", "recipe=sync_new_user", "--json",
        ]
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    response = client.post(
        "/api/users",
        json={"email": "Jo@Example.com", "meta": {"tier": "pro", "signup_country": "FR"}},
        headers={**auth_headers, "CF-IPCountry": "NL"},
    )
    assert response.status_code == 201
    user = response.get_json()

    DeliveryWorker(app).run(once=True)

    (seen,) = receiver.requests
    assert (seen.method, seen.path) == ("POST", "/signups")
    assert json.loads(seen.body) == {
        "user_id": user["id"],
        "email": "jo@example.com",
        "tier": "pro",
        "signup_country": "NL",
        "signup_at": user["created_at"],
    }


def test_an_unknown_recipe_is_refused_when_saved(runner) -> None:
    result = runner.invoke(
        args=["bridge", "connection", "add", "x", "--type", "custom_webhook", "--set", "url=https://example.com/",
              "--set", "recipe=nope", "--json"]
    )  # fmt: skip
    assert result.exit_code != 0 and "recipe must be one of sync_new_user" in result.output


def test_every_recipe_passes_the_template_checks_and_the_owners_body_wins() -> None:
    for name in RECIPES:
        assert CustomWebhookAdapter.validate_config({"url": "https://example.com/", "recipe": name}) == []
    own = CustomWebhookAdapter({"url": "https://e.example/", "recipe": "sync_new_user", "body": {"a": 1}}, http=None)
    assert own.config["body"] == {"a": 1} and own.method == "POST"
