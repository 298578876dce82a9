"""Feeds the contract suite: each adapter test class's shared fixtures become test parameters."""

from __future__ import annotations

import pytest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fixture_path" in metafunc.fixturenames and metafunc.cls is not None:
        paths = metafunc.cls.case.fixtures
        metafunc.parametrize("fixture_path", paths, ids=paths)
