"""The console's buttons that talk to a CRM do it with no database transaction open: the
connection test, a dry run that sends, the field and tag pickers' refresh, a user's resync.

On SQLite every transaction holds the write lock; HubSpot's requests are counted against its
rate limit in the database (its own connection), which inside the request's transaction waited
for the lock its own thread held (see tests/api/test_crm_calls_unlocked.py).
"""

from __future__ import annotations

import pytest
import responses
from support import HUBSPOT_ANY, CrmCallProbe, short_sqlite_busy_timeout

from bridge.extensions import db
from bridge.models import User
from tests.admin.conftest import csrf_from

HUBSPOT = "https://api.hubapi.com"


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def hub(app, admin_client, make_connection):
    """A HubSpot connection, every HubSpot call answered by a probe, a short busy timeout."""
    make_connection("hub", "hubspot", access_token="pat-na1-console-token")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock, short_sqlite_busy_timeout(app):
        yield CrmCallProbe(HUBSPOT_ANY).register(HUBSPOT, mock)


def post(admin_client, page_path: str, path: str, **data: str):
    page = text(admin_client.get(page_path))
    return admin_client.post(path, data={"csrf_token": csrf_from(page), **data}, follow_redirects=True)


def test_the_test_button(admin_client, hub):
    response = post(admin_client, "/admin/connections/hub", "/admin/connections/hub/test")
    assert "hub: the CRM accepted our credentials" in text(response)
    assert hub.calls == ["GET /crm/v3/objects/contacts"] and hub.in_transaction == [False]


def test_a_dry_run_that_sends(admin_client, hub):
    response = post(
        admin_client, "/admin/connections/hub/dry-run", "/admin/connections/hub/dry-run", subject="preset", send="1"
    )
    assert response.status_code == 200 and "contact id &#39;42&#39;" in text(response)
    assert hub.calls == ["GET /crm/v3/objects/contacts/preset-user@example.com", "PATCH /crm/v3/objects/contacts/42"]
    assert hub.in_transaction == [False, False]


def test_refreshing_the_crms_field_and_tag_names(admin_client, hub):
    response = post(admin_client, "/admin/connections/hub/edit", "/admin/connections/hub/catalog")
    assert "Loaded 0 fields and 0 tags from the CRM." in text(response)
    assert hub.calls == ["GET /crm/v3/properties/contacts", "POST /crm/v3/lists/search"]
    assert hub.in_transaction == [False, False]


def test_resyncing_a_user(app, admin_client, hub):
    from bridge.accounts.users import create_user

    with app.app_context():
        user_id = create_user(email="ada@example.com", first_name="Ada").id
        db.session.commit()
    response = post(admin_client, f"/admin/users/{user_id}", f"/admin/users/{user_id}/resync", connection="hub")
    assert "Resynced from hub: first_name" in text(response), text(response)
    assert hub.calls[:2] == ["GET /crm/v3/objects/contacts/ada@example.com", "GET /crm/v3/objects/contacts/42"]
    assert hub.in_transaction == [False] * len(hub.calls)
    with app.app_context():
        assert db.session.get(User, user_id).first_name == "Augusta"
