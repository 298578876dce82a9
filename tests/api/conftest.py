"""Fixtures for the API tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    # `responses` mocks the CRM; without this the outbound client would try DNS first.
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True}


@pytest.fixture
def api(client, auth_headers):
    """``api(method, path, json=None) -> response`` with a valid token."""

    def call(method: str, path: str, **kwargs):
        return client.open(path, method=method, headers=auth_headers, **kwargs)

    return call
