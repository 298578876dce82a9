"""Mautic OAuth 2 (issue 17 item 9): an expired Bearer token (Mautic's live 60 minutes) is
refreshed with the refresh grant at ``/oauth/v2/token`` and the call retried, as WP Fusion's
class-mautic.php does; the new tokens reach the connection's stored settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses
from responses import matchers

from bridge.connections import service as connections
from bridge.connections.settings import effective_settings
from bridge.outbound.client import OutboundClient, OutboundPolicy
from crm_adapters.errors import AuthRefused
from crm_adapters.mautic import MauticAdapter

BASE = "https://mautic.example.com"
CONTACTS = BASE + "/api/contacts"
TOKEN_URL = BASE + "/oauth/v2/token"
HERE = Path(__file__).resolve().parents[1] / "fixtures" / "mautic" / "api"  # tests/fixtures: notes name sources
EXPIRED = json.loads((HERE / "token_expired_401.json").read_text())["response"]["json"]
REFRESH = json.loads((HERE / "refresh_token.json").read_text())
CREDENTIALS = {k: v for k, v in REFRESH["request"]["form"].items() if k != "grant_type"}
LISTING = {"total": "0", "contacts": []}


def bearer(token: str) -> list:
    return [matchers.header_matcher({"Authorization": f"Bearer {token}"})]


def adapter(**settings: str) -> MauticAdapter:
    config = {"base_url": BASE, "access_token": "old", **settings}
    return MauticAdapter(config, OutboundClient(policy=OutboundPolicy(allow_private=True)))


@responses.activate
def test_an_expired_token_is_refreshed_once_and_the_call_retried() -> None:
    expired = responses.get(CONTACTS, status=401, json=EXPIRED, match=bearer("old"))
    grant = responses.post(
        TOKEN_URL,
        json=REFRESH["response"]["json"],
        match=[matchers.urlencoded_params_matcher(REFRESH["request"]["form"])],
    )
    retried = responses.get(CONTACTS, json=LISTING, match=bearer("new"))
    mautic = adapter(**CREDENTIALS)
    mautic.check()
    assert (expired.call_count, grant.call_count, retried.call_count) == (1, 1, 1)
    assert mautic.settings_to_store() == {"access_token": "new", "refresh_token": "r2"}


@responses.activate
def test_the_registered_redirect_uri_is_sent_when_set() -> None:
    responses.get(CONTACTS, status=401, json=EXPIRED, match=bearer("old"))
    form = {"grant_type": "refresh_token", **CREDENTIALS, "redirect_uri": "https://site.example/cb"}
    responses.post(TOKEN_URL, json={"access_token": "new"}, match=[matchers.urlencoded_params_matcher(form)])
    responses.get(CONTACTS, json=LISTING, match=bearer("new"))
    adapter(**CREDENTIALS, redirect_uri="https://site.example/cb").check()


@responses.activate
def test_without_refresh_credentials_the_refusal_stands() -> None:
    responses.get(CONTACTS, status=401, json=EXPIRED)
    with pytest.raises(AuthRefused):
        adapter().check()
    assert [call.request.url.split("?")[0] for call in responses.calls] == [CONTACTS]


@responses.activate
def test_a_refused_refresh_is_auth_refused_and_not_retried() -> None:
    responses.get(CONTACTS, status=401, json=EXPIRED)
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "Invalid refresh token"})
    with pytest.raises(AuthRefused):
        adapter(**CREDENTIALS).check()
    assert len(responses.calls) == 2


@responses.activate
def test_the_new_tokens_are_stored_on_the_connection(app, make_connection) -> None:
    make_connection("mautic", "mautic", base_url=BASE, access_token="old", **CREDENTIALS)
    responses.get(CONTACTS, status=401, json=EXPIRED, match=bearer("old"))
    responses.post(TOKEN_URL, json={"access_token": "new", "refresh_token": "r2"})
    responses.get(CONTACTS, json=LISTING, match=bearer("new"))
    with app.app_context():
        connections.check_connection(connections.get_connection("mautic"))
    with app.app_context():
        stored = effective_settings(connections.get_connection("mautic"))
    assert (stored["access_token"], stored["refresh_token"]) == ("new", "r2")
