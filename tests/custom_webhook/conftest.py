"""Custom webhook fixtures: a loopback HTTP receiver (a threaded ``http.server``) that records what reaches it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def fresh_token_cache() -> Iterator[None]:
    """The OAuth token cache is process-wide: every test starts without tokens."""
    from crm_adapters.custom_webhook import clear_token_cache

    clear_token_cache()
    yield
    clear_token_cache()


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True}
