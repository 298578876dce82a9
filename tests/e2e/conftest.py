"""End-to-end fixtures: a fake FluentCRM on loopback and in-process delivery workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakecrm import FakeFluentCrm


@pytest.fixture
def fake_crm() -> Iterator[FakeFluentCrm]:
    with FakeFluentCrm() as fake:
        yield fake
