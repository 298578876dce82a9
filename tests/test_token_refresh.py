"""OAuth refreshes coordinated between processes (bridge.connections.token_refresh): on PostgreSQL a refresh
token another process already redeemed is never presented again (its stored result is used),
and a redemption stores the new tokens at once, under the lock."""

from __future__ import annotations

import responses

from bridge.connections import service as connections
from bridge.connections.settings import apply_settings, effective_settings
from bridge.extensions import db
from bridge.outbound.client import OutboundClient, OutboundPolicy

BASE = "https://app.pulse.example"
API = BASE + "/api/v1/"
TOKEN_URL = "https://portal.thepulsespot.com/oauth/token"  # the portal, not the app


def pulse(make_connection) -> None:
    make_connection(
        "pulse", "pulsetech", base_url=BASE, access_token="old", refresh_token="r1", client_id="cid", client_secret="cs"
    )


def adapter_of(app):
    with app.app_context():
        connection = connections.get_connection("pulse")
        return connections.build_adapter(connection, OutboundClient(policy=OutboundPolicy(allow_private=True)))


def bearer(token: str) -> list:
    return [responses.matchers.header_matcher({"Authorization": f"Bearer {token}"})]


def stored_tokens(app) -> tuple[str, str]:
    with app.app_context():
        settings = effective_settings(connections.get_connection("pulse"))
        return settings["access_token"], settings["refresh_token"]


def test_a_refresh_token_another_process_redeemed_is_not_presented_again(app, backend, make_connection):
    pulse(make_connection)
    adapter = adapter_of(app)
    if backend == "sqlite":  # one process: crm_adapters.oauth covers it; nothing to coordinate
        assert adapter.refresh_guard is None
        return
    with app.app_context():  # meanwhile another process redeemed r1 and stored what it got
        apply_settings(connections.get_connection("pulse"), {"access_token": "new2", "refresh_token": "r2"})
        db.session.commit()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.get(API + "tags", status=401, match=bearer("old"))
        retried = rsps.get(API + "tags", json={"data": [], "meta": {"last_page": 1}}, match=bearer("new2"))
        with app.app_context():
            adapter.check()  # no POST to the token endpoint: RequestsMock refuses unregistered calls
    assert retried.call_count == 1
    assert adapter.settings_to_store() == {"access_token": "new2", "refresh_token": "r2"}


def test_a_redemption_stores_the_new_tokens_before_it_lets_go(app, backend, make_connection):
    pulse(make_connection)
    adapter = adapter_of(app)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.get(API + "tags", status=401, match=bearer("old"))
        rsps.post(TOKEN_URL, json={"access_token": "new", "refresh_token": "r2"})
        rsps.get(API + "tags", json={"data": [], "meta": {"last_page": 1}}, match=bearer("new"))
        with app.app_context():
            adapter.check()
    # On PostgreSQL stored at once, under the lock; on SQLite the caller stores them afterwards
    # (connections.store_changed_settings), as before.
    assert stored_tokens(app) == (("new", "r2") if backend == "postgresql" else ("old", "r1"))
