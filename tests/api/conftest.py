"""Fixtures for the API tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    # `responses` mocks the CRM; without this the outbound client would try DNS first.
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True}
