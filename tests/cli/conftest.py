"""Fixtures for the CLI tests: invoke ``bridge …`` against the per-test app, and read the
database back to prove what was (and was not) written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import select

from bridge.extensions import db


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    # `responses` mocks the CRM; without this the outbound client would try DNS first.
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True}


@pytest.fixture
def cli(runner) -> Callable[..., Result]:
    """``cli("connection", "list", "--json", input=None) -> Result``; unexpected exceptions
    are re-raised so a crash never passes for an exit code."""

    def invoke(*args: str, input: str | None = None) -> Result:
        result = runner.invoke(args=["bridge", *args], input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return invoke


@pytest.fixture
def cli_json(cli) -> Callable[..., tuple[int, Any]]:
    """Run with ``--json`` and parse stdout: ``(exit_code, data)``."""

    def invoke(*args: str, input: str | None = None) -> tuple[int, Any]:
        result = cli(*args, "--json", input=input)
        return result.exit_code, json.loads(result.stdout)

    return invoke


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
