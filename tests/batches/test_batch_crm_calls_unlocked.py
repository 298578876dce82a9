"""Batch pages for a rate-limited CRM (HubSpot) on SQLite with the default limits storage (the
database): every CRM call of a page is made with no transaction of the page's session open.
Inside one, the request counter's own write would wait for the write lock the page holds
(SQLite's busy timeout, then the page fails): see tests/api/test_crm_calls_unlocked.py."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from support import HUBSPOT_ANY, CrmCallProbe, short_sqlite_busy_timeout

from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db
from bridge.models import Batch, User

HUBSPOT = "https://api.hubapi.com"
# Every listing names contact 42 (with its email); every other call is answered as usual.
LISTING = {**HUBSPOT_ANY, "results": [{"id": "42", "properties": {"email": "ada@example.com", "firstname": "Augusta"}}]}


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True}


def run_batch(app, operation: str) -> tuple[Batch, CrmCallProbe]:
    from bridge.delivery.batches import start_batch

    with app.app_context():
        batch_id = start_batch(operation, "hub", {}).id
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock, short_sqlite_busy_timeout(app):
        probe = CrmCallProbe(LISTING).register(HUBSPOT, mock)
        DeliveryWorker(app).run(once=True)
    with app.app_context():
        return db.session.get(Batch, batch_id), probe


@pytest.fixture
def hub(app, make_connection) -> None:
    from bridge.accounts.users import create_user

    make_connection("hub", "hubspot", access_token="pat-na1-batch-token")
    with app.app_context():
        create_user(email="ada@example.com", first_name="Ada")
        db.session.commit()


@pytest.mark.parametrize("operation", ["import", "push", "resync"])
def test_a_batch_page_calls_hubspot_outside_a_transaction(app, hub, operation):
    batch, probe = run_batch(app, operation)
    assert probe.calls, "the CRM was never called"
    assert not any(probe.in_transaction), list(zip(probe.calls, probe.in_transaction, strict=True))
    assert (batch.done, batch.failed) == (1, 0), batch.last_error if hasattr(batch, "last_error") else batch
    with app.app_context():
        assert db.session.query(User).count() == 1
