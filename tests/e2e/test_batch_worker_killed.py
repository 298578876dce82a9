"""A worker process killed in the middle of a batch leaves nothing undone and nothing done
twice: its page's lease expires, another worker runs the page again from the same cursor, and
the batch ends with every item counted once (the CRM has one contact per user, each user one
link; an import makes each user once)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest
from fakecrm import connection_settings
from sqlalchemy import func, select
from test_outbound_worker_processes import LEASE_SECONDS, spawn_worker  # noqa: F401  (the fixture)

from bridge.accounts import users
from bridge.delivery import batches
from bridge.extensions import db
from bridge.models import Batch, ContactLink, User

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True, "BRIDGE_LEASE_SECONDS": LEASE_SECONDS}


def start(app, operation: str, params: dict[str, Any]) -> int:
    with app.app_context():
        batch_id = batches.start_batch(operation, "fluent", params).id
        db.session.remove()
        return batch_id


def wait_done(app, batch_id: int, timeout: float = 60) -> Batch:
    """Bounded poll: other processes write the batch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            batch = db.session.get(Batch, batch_id)
            db.session.expunge_all()
            db.session.remove()
        if batch.status not in ("queued", "running"):
            return batch
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} still {batch.status}")


def kill_during(fake, spawn_worker, held) -> None:  # noqa: F811
    """Run a worker until the fake CRM holds a request of the batch (the first request ``held``
    matches), kill it, let the request finish (the CRM did its work; the worker never heard),
    and start another worker."""
    fake.gate, fake.gate_when = threading.Event(), held
    doomed = spawn_worker()
    assert fake.wait_for(lambda f: any(held(r) for r in f.requests), timeout=30)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(30)
    fake.gate.set()
    fake.gate = None
    spawn_worker()


def test_a_push_whose_worker_was_killed_makes_each_contact_once(app, make_connection, fake_crm, spawn_worker):  # noqa: F811
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm))
    with app.app_context():
        for n in range(40):
            users.create_user(email=f"u{n}@example.com", username=f"u{n}")
        db.session.commit()
    batch_id = start(app, "push", {})

    kill_during(fake_crm, spawn_worker, lambda r: r.method == "POST" and r.path.endswith("/subscribers"))
    batch = wait_done(app, batch_id)

    assert (batch.status, batch.total, batch.done, batch.created, batch.failed) == ("succeeded", 40, 40, 40, 0)
    assert len(fake_crm.contacts) == 40
    assert sorted(c["email"] for c in fake_crm.contacts.values()) == sorted(f"u{n}@example.com" for n in range(40))
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ContactLink)) == 40


def test_an_import_whose_worker_was_killed_makes_each_user_once(app, make_connection, fake_crm, spawn_worker):  # noqa: F811
    fake_crm._create_tag("promo")
    for n in range(250):
        fake_crm.seed_contact(f"c{n}@example.com", first_name=f"C{n}", tag_slugs=["promo"])
    make_connection("fluent", "fluentcrm", **connection_settings(fake_crm))
    batch_id = start(app, "import", {"tag": "promo"})

    # Killed while page 2 is being listed (listed ahead while page 1 is written, so page 1 too
    # is lost with the worker and runs again).
    kill_during(fake_crm, spawn_worker, lambda r: r.path.endswith("/subscribers") and r.query.get("page") == "2")
    batch = wait_done(app, batch_id)

    assert (batch.status, batch.total, batch.done, batch.created, batch.failed) == ("succeeded", 250, 250, 250, 0)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 250
        assert db.session.scalar(select(func.count()).select_from(ContactLink)) == 250
