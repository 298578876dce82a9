"""Fixtures for the CLI tests: invoke ``bridge …`` against the per-test app, and read the
database back to prove what was (and was not) written."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result


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
