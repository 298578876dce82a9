"""The worker's handlers call CRMs with no transaction of their session open: on SQLite every
transaction holds the write lock, and HubSpot's requests are counted against its rate limit in
the database through a connection of their own (see tests/api/test_crm_calls_unlocked.py)."""

from __future__ import annotations

import pytest
import responses
from support import HUBSPOT_ANY, CrmCallProbe, short_sqlite_busy_timeout

from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db
from bridge.models import Delivery, User

HUBSPOT = "https://api.hubapi.com"


@pytest.fixture
def linked_user(app, make_connection) -> tuple[str, int]:
    """A HubSpot connection (its access key) and a user linked to its contact 42."""
    from bridge.accounts.users import create_user, link_contact
    from bridge.connections.service import get_connection

    key = make_connection("hub", "hubspot", access_token="pat-na1-worker-token")
    with app.app_context():
        user = create_user(email="ada@example.com", first_name="Ada")
        link_contact(user, get_connection("hub"), "42")
        db.session.commit()
        return key, user.id


def run_worker(app) -> list[bool]:
    """Run the worker once with every HubSpot call answered; the probe's transaction flags."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock, short_sqlite_busy_timeout(app):
        probe = CrmCallProbe(HUBSPOT_ANY).register(HUBSPOT, mock)
        DeliveryWorker(app).run(once=True)
    assert probe.calls, "the CRM was never called"
    return probe.in_transaction


def test_a_tag_push(app, linked_user):
    from bridge.accounts.tag_push import set_connection_tags
    from bridge.connections.service import get_connection

    with app.app_context():
        user = db.session.get(User, linked_user[1])
        delivery = set_connection_tags(user, get_connection("hub"), ["vip"])[2]
        db.session.commit()
        delivery_id = delivery.id
    assert not any(run_worker(app))
    with app.app_context():
        done = db.session.get(Delivery, delivery_id)
        assert (done.status, done.result["contact_id"]) == ("succeeded", "42"), done.last_error


def test_a_queued_webhook_that_loads_the_contact(app, client, linked_user):
    key, user_id = linked_user
    response = client.post(f"/?wpf_action=update&access_key={key}&async=1", json={"vid": 42})
    assert response.status_code == 202, response.get_json()
    assert not any(run_worker(app))
    with app.app_context():
        done = db.session.get(Delivery, response.get_json()["job_id"])
        assert done.status == "succeeded", done.last_error
        assert db.session.get(User, user_id).first_name == "Augusta"
