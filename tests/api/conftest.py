"""Fixtures for the API tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bridge.extensions import db


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    # `responses` mocks the CRM; without this the outbound client would try DNS first.
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True}


@pytest.fixture
def dump_database(app) -> Callable[[], str]:
    """Every row of every table as text: to prove a secret is nowhere in storage."""

    def dump() -> str:
        with app.app_context():
            parts = []
            for table in db.metadata.sorted_tables:
                parts += [repr(tuple(row)) for row in db.session.execute(select(table))]
            return "\n".join(parts)

    return dump


@pytest.fixture
def crm_fixture(request: pytest.FixtureRequest) -> Callable[[str], Any]:
    """The root conftest's ``load_fixture`` (a test module cannot ``import conftest`` reliably:
    pytest loads every conftest under that one module name)."""
    root = request.config.pluginmanager.get_plugin(str(Path(__file__).resolve().parents[1] / "conftest.py"))
    return root.load_fixture
