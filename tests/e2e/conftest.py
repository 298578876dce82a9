"""End-to-end fixtures: a fake FluentCRM on loopback and in-process delivery workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fakecrm import FakeFluentCrm, FluentOutboundForTests
from flask import Flask

from bridge.worker import DeliveryWorker
from crm_adapters.base import Adapter
from crm_adapters.fluentcrm import FluentCrmAdapter


@pytest.fixture
def fake_crm() -> Iterator[FakeFluentCrm]:
    with FakeFluentCrm() as fake:
        yield fake


@pytest.fixture
def outbound_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Type ``fluentcrm`` can push: the real adapter when it implements upserts, else the
    test adapter shaped after the recorded FluentCRM exchanges (restored after the test)."""
    from bridge.adapters import adapter_types

    if FluentCrmAdapter.upsert_contact is Adapter.upsert_contact:
        monkeypatch.setitem(adapter_types(), "fluentcrm", FluentOutboundForTests)


@pytest.fixture
def start_worker(app: Flask) -> Iterator[Callable[..., DeliveryWorker]]:
    """``start_worker(concurrency=1)``: a delivery worker thread, stopped after the test."""
    started: list[DeliveryWorker] = []

    def start(**options: Any) -> DeliveryWorker:
        worker = DeliveryWorker(app, **options)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=30)
