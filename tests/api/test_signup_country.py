"""``meta.signup_country`` at registration (issue 16 item 10): from the header the owner names
(``BRIDGE_GEO_HEADER``) or a MaxMind database the owner provides (``BRIDGE_GEOIP_DB``), never
from what the client sent. The database is a tiny MaxMind DB written by the test (mmdb-writer)
and read back by crm-bridge with MaxMind's ``maxminddb``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from bridge.accounts.signup_country import signup_country


def geoip_db(path: Path, networks: dict[str, dict[str, Any]]) -> str:
    """A GeoIP2-Country-shaped database: ``{"country": {"iso_code": …}}`` per network."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return str(path)


@pytest.fixture
def app_config(app_config: dict[str, Any], request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    extra = dict(getattr(request, "param", {}))
    if extra.pop("geoip", False):
        extra["BRIDGE_GEOIP_DB"] = geoip_db(tmp_path / "country.mmdb", {"127.0.0.0/8": {"country": {"iso_code": "IT"}}})
    return {**app_config, **extra}


def register(client, auth_headers, headers: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    body = {"email": "geo@example.com", "meta": {"tier": "pro", **meta}}
    response = client.post("/api/users", json=body, headers={**auth_headers, **(headers or {})})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["meta"]


@pytest.mark.parametrize("app_config", [{"BRIDGE_GEO_HEADER": "CF-IPCountry"}], indirect=True)
def test_the_owners_header_gives_the_country_and_the_clients_value_is_ignored(client, auth_headers) -> None:
    meta = register(client, auth_headers, {"CF-IPCountry": "de"}, signup_country="US")
    assert meta == {"tier": "pro", "signup_country": "DE"}


@pytest.mark.parametrize("app_config", [{"BRIDGE_GEO_HEADER": "CF-IPCountry"}], indirect=True)
def test_an_unknown_country_from_the_header_records_none(client, auth_headers) -> None:
    assert register(client, auth_headers, {"CF-IPCountry": "XX"}, signup_country="US") == {"tier": "pro"}


def test_without_a_trusted_source_no_country_is_recorded(client, auth_headers) -> None:
    assert register(client, auth_headers, {"CF-IPCountry": "DE"}, signup_country="US") == {"tier": "pro"}


@pytest.mark.parametrize("app_config", [{"geoip": True}], indirect=True)
def test_the_geoip_database_gives_the_country_of_the_client_address(client, auth_headers) -> None:
    assert register(client, auth_headers, signup_country="US") == {"tier": "pro", "signup_country": "IT"}


@pytest.mark.parametrize("app_config", [{"geoip": True}], indirect=True)
def test_the_register_page_records_the_country_too(app, client) -> None:
    page = client.get("/register").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"csrf_token": token, "email": "page@example.com", "password": "a good password"}
    response = client.post("/register", data={**form, "password_confirm": form["password"]})
    assert response.status_code == 201
    with app.app_context():
        from bridge.accounts.users import find_by_email

        assert find_by_email("page@example.com").meta == {"signup_country": "IT"}


def test_database_lookups_read_country_then_registered_country(tmp_path: Path) -> None:
    path = geoip_db(
        tmp_path / "c.mmdb",
        {
            "203.0.113.0/24": {"registered_country": {"iso_code": "FR"}},
            "2001:db8::/32": {"country": {"iso_code": "JP"}},
        },
    )
    config = {"BRIDGE_GEOIP_DB": path}
    assert signup_country(config, {}, "203.0.113.9") == "FR"
    assert signup_country(config, {}, "2001:db8::1") == "JP"
    assert signup_country(config, {}, "198.51.100.1") is None
    assert signup_country({"BRIDGE_GEOIP_DB": str(tmp_path / "missing.mmdb")}, {}, "203.0.113.9") is None


@pytest.mark.parametrize("app_config", [{"BRIDGE_GEO_HEADER": "CF-IPCountry"}], indirect=True)
def test_a_patch_can_neither_set_nor_overwrite_nor_remove_the_country(client, auth_headers) -> None:
    created = client.post(
        "/api/users",
        json={"email": "geo@example.com", "meta": {"tier": "pro"}},
        headers={**auth_headers, "CF-IPCountry": "DE"},
    ).get_json()
    url = f"/api/users/{created['id']}"

    overwrite = client.patch(url, json={"meta": {"signup_country": "US", "tier": "gold"}}, headers=auth_headers)
    assert overwrite.status_code == 200, overwrite.get_json()
    assert overwrite.get_json()["meta"] == {"tier": "gold", "signup_country": "DE"}
    assert overwrite.get_json()["changed"] == ["tier"]  # nothing else changed, nothing else pushed

    removal = client.patch(url, json={"meta": {"signup_country": None}}, headers=auth_headers)
    assert removal.get_json()["meta"] == {"tier": "gold", "signup_country": "DE"}
    assert removal.get_json()["changed"] == []
    assert client.get(url, headers=auth_headers).get_json()["meta"] == {"tier": "gold", "signup_country": "DE"}


def test_a_patch_cannot_give_a_country_to_a_user_without_one(client, auth_headers) -> None:
    created = client.post("/api/users", json={"email": "geo@example.com"}, headers=auth_headers).get_json()
    url = f"/api/users/{created['id']}"
    response = client.patch(url, json={"meta": {"signup_country": "US"}}, headers=auth_headers)
    assert response.status_code == 200
    assert response.get_json()["meta"] == {}
    assert client.get(url, headers=auth_headers).get_json()["meta"] == {}
