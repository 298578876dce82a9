"""A self-hosted CRM behind a redirect (issue 17): redirects are never followed, but the error
says where the CRM points and which ``base_url`` reaches it."""

from __future__ import annotations

import pytest
import responses

from adapters.recorded import recorded
from bridge.connections.adapter_registry import adapter_class
from bridge.outbound.client import OutboundClient, OutboundPolicy
from crm_adapters.errors import CrmRejected

SETTINGS = {
    "mautic": {"base_url": "http://crm.example.com", "username": "api", "password": "pw-123"},
    "fluentcrm": {"base_url": "http://crm.example.com/", "username": "api", "app_password": "pw-123"},
}


@pytest.mark.parametrize("crm", sorted(SETTINGS))
def test_a_redirect_names_the_target_and_the_base_url_to_set(crm: str) -> None:
    answer = recorded(f"{crm}/http_to_https_301.json")
    http = OutboundClient(policy=OutboundPolicy(allow_private=True))
    adapter = adapter_class(crm)(SETTINGS[crm], http)
    with responses.RequestsMock() as rsps:
        rsps.add("GET", answer["request"], status=answer["status"], headers=answer["headers"], body=answer["body"])
        with pytest.raises(CrmRejected) as info:
            adapter.check()
    assert info.value.status == 301
    assert f"redirects to {answer['headers']['Location']}" in info.value.message
    assert info.value.message.endswith("set base_url to https://crm.example.com")


def test_a_redirect_elsewhere_keeps_the_base_urls_own_path() -> None:
    http = OutboundClient(policy=OutboundPolicy(allow_private=True))
    adapter = adapter_class("mautic")({**SETTINGS["mautic"], "base_url": "http://crm.example.com/mautic"}, http)
    with responses.RequestsMock() as rsps:
        rsps.add("GET", "http://crm.example.com/mautic/api/contacts", status=302, headers={"Location": "/login"})
        with pytest.raises(CrmRejected) as info:
            adapter.check()
    assert "redirects to http://crm.example.com/login" in info.value.message
    assert "base_url" not in info.value.message.split("not followed")[1]  # same host: nothing better to suggest
