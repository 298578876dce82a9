"""``crm-bridge connection …`` and ``crm-bridge access-key rotate``: output, validation, secrecy, rotation."""

from __future__ import annotations

import logging
import sys
import types
from datetime import timedelta

import pytest
import responses

from bridge.connections import service as connections
from bridge.extensions import db
from bridge.models import Connection, utcnow

PASSWORD = "wp-app-pass-Sup3rSecretValue"
BASE = "https://crm.example.com"
TAGS_URL = f"{BASE}/wp-json/fluent-crm/v2/tags"
FLUENT_SETS = ("--set", f"base_url={BASE}", "--set", "username=api", "--set", f"app_password={PASSWORD}")


def stored_connection(app, name: str) -> Connection | None:
    with app.app_context():
        connection = connections.get_connection(name)
        if connection is not None:
            db.session.expunge(connection)
        return connection


# -- add --------------------------------------------------------------------------------------


def test_add_prints_the_key_once_and_three_webhook_urls(app, cli):
    result = cli("connection", "add", "fluent", "--type", "fluentcrm", *FLUENT_SETS)
    assert result.exit_code == 0, result.output
    key_line = next(line for line in result.stdout.splitlines() if line.startswith("Access key"))
    key = key_line.rsplit(" ", 1)[1]
    assert key.startswith("cbk_")
    assert result.stdout.count(key) == 4  # the key line and the three URLs
    for action in ("add", "update", "update_tags"):
        assert f"http://127.0.0.1:5000/?wpf_action={action}&access_key={key}" in result.stdout
    with app.app_context():
        assert connections.find_by_access_key(key).name == "fluent"


def test_add_json_has_exactly_the_contract_shape(app, cli_json):
    app.config["BRIDGE_BASE_URL"] = "https://bridge.example.org/"
    code, data = cli_json("connection", "add", "fluent", "--type", "fluentcrm", *FLUENT_SETS)
    assert code == 0
    assert set(data) == {"name", "type", "access_key", "webhook_urls"}
    assert (data["name"], data["type"]) == ("fluent", "fluentcrm")
    assert data["webhook_urls"] == {
        action: f"https://bridge.example.org/?wpf_action={action}&access_key={data['access_key']}"
        for action in ("add", "update", "update_tags")
    }


def test_set_values_are_json_when_they_parse_else_strings(app, cli):
    result = cli(
        "connection", "add", "fluent", "--type", "fluentcrm",
        "--set", 'assign_tags=["new", "web"]', "--set", "push_updates=true", "--set", "password_length=20",
        "--set", "username=12345", "--set", "default_role=subscriber",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    settings = stored_connection(app, "fluent").settings
    assert settings["assign_tags"] == ["new", "web"]
    assert settings["push_updates"] is True
    assert settings["password_length"] == 20
    assert settings["username"] == "12345"  # JSON number, coerced to the string setting
    assert settings["default_role"] == "subscriber"


def test_add_with_invalid_settings_lists_every_problem_and_writes_nothing(app, cli, cli_json):
    result = cli(
        "connection", "add", "fluent", "--type", "fluentcrm",
        "--set", "username_format=nickname", "--set", "colour=blue", "--set", "password_length=6",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "username_format must be one of" in result.stderr
    assert "unknown setting 'colour'" in result.stderr
    assert "password_length must be at least 12" in result.stderr
    code, data = cli_json("connection", "add", "fluent", "--type", "fluentcrm", "--set", "base_url=ftp://x")
    assert code == 1
    assert data["error"] == "invalid_connection"
    assert data["problems"] == ["base_url must be an http(s) URL"]
    with app.app_context():
        assert not connections.any_connection_exists()


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("Bad Name", "--type", "fluentcrm"), "invalid_connection", "lower-case slug"),
        (("fluent", "--type", "nocrm"), "unknown_type", "unknown connection type 'nocrm'"),
        (("fluent", "--type", "fluentcrm", "--set", "base_url"), "invalid_argument", "expected KEY=VALUE"),
    ],
)
def test_add_refuses_bad_names_types_and_assignments(app, cli, cli_json, args, error, message):
    code, data = cli_json("connection", "add", *args)
    assert code == 1
    assert data["error"] == error
    assert message in data["message"]
    result = cli("connection", "add", *args)
    assert result.exit_code == 1
    assert message in result.stderr
    with app.app_context():
        assert not connections.any_connection_exists()


def test_add_refuses_a_taken_name(make_connection, cli_json):
    make_connection("fluent")
    code, data = cli_json("connection", "add", "fluent", "--type", "fluentcrm")
    assert (code, data["error"]) == (1, "connection_exists")


# -- list and show: no secrets ----------------------------------------------------------------


def test_key_and_secrets_never_shown_after_add_nor_stored_in_clear(app, cli, cli_json, dump_database, caplog):
    caplog.set_level(logging.DEBUG)
    code, created = cli_json("connection", "add", "fluent", "--type", "fluentcrm", *FLUENT_SETS)
    assert code == 0
    key = created["access_key"]
    outputs = [
        cli("connection", "list").output,
        cli("connection", "list", "--json").output,
        cli("connection", "show", "fluent").output,
        cli("connection", "show", "fluent", "--json").output,
    ]
    for output in outputs:
        assert key not in output
        assert key[:-4] not in output
        assert PASSWORD not in output
    assert "…" + key[-4:] in outputs[0]
    stored = dump_database()
    assert key not in stored and PASSWORD not in stored
    assert connections.crypto.token_hash(key) in stored  # only the hash is kept
    assert key not in caplog.text and PASSWORD not in caplog.text


def test_show_masks_secrets_and_lists_missing_settings(app, cli, cli_json, make_connection):
    make_connection("fluent", "fluentcrm", app_password=PASSWORD)
    code, data = cli_json("connection", "show", "fluent")
    assert code == 0
    assert data["settings"]["app_password"] == "••••" + PASSWORD[-4:]
    assert data["missing_settings"] == ["base_url", "username"]
    assert data["settings"]["push_on_register"] is True  # defaults are shown too
    text = cli("connection", "show", "fluent").stdout
    assert "missing required settings: base_url, username" in text
    assert "app_password = " in text and PASSWORD not in text


def test_list_shows_every_connection(make_connection, cli, cli_json):
    assert "No connections" in cli("connection", "list").stdout
    make_connection("fluent")
    make_connection("active", "activecampaign", base_url="https://acct.api-us1.com")
    code, data = cli_json("connection", "list")
    assert code == 0
    assert data["total"] == 2
    assert [(i["name"], i["type"]) for i in data["items"]] == [("active", "activecampaign"), ("fluent", "fluentcrm")]
    text = cli("connection", "list").stdout
    assert "active" in text and "fluent" in text and "activecampaign" in text


def test_show_unknown_connection_fails_clearly(cli, cli_json):
    result = cli("connection", "show", "nope")
    assert result.exit_code == 1
    assert "no connection named 'nope'" in result.stderr
    assert cli_json("connection", "show", "nope") == (
        1,
        {
            "success": False,
            "error": "not_found",
            "message": "no connection named 'nope' (see: crm-bridge connection list)",
        },
    )


# -- set --------------------------------------------------------------------------------------


def test_set_saves_valid_changes_and_null_removes(app, make_connection, cli, cli_json):
    make_connection("fluent", "fluentcrm", username="old", return_password_field="wp_pass")
    result = cli("connection", "set", "fluent", f"base_url={BASE}", f"app_password={PASSWORD}", "enabled=false")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    settings = stored_connection(app, "fluent").settings
    assert settings["base_url"] == BASE and settings["enabled"] is False
    assert settings["app_password"].startswith("enc:v1:")  # encrypted at rest
    code, data = cli_json("connection", "set", "fluent", "return_password_field=null")
    assert code == 0
    assert data["settings"]["return_password_field"] is None
    assert "return_password_field" not in stored_connection(app, "fluent").settings


def test_set_invalid_writes_nothing(app, make_connection, cli, cli_json):
    make_connection("fluent", "fluentcrm", username="api")
    before = stored_connection(app, "fluent").settings
    result = cli("connection", "set", "fluent", "username=changed", "username_format=weird")
    assert result.exit_code == 1
    assert "username_format must be one of" in result.stderr
    code, data = cli_json("connection", "set", "fluent", "username=changed", "enabled=maybe")
    assert code == 1 and data["problems"] == ["enabled must be true or false"]
    code, data = cli_json("connection", "set", "fluent", "username=")
    assert code == 1 and "use username=null" in data["message"]
    assert stored_connection(app, "fluent").settings == before


# -- test -------------------------------------------------------------------------------------


@responses.activate
def test_test_reports_ok_when_the_crm_answers(make_connection, cli, cli_json, crm_fixture):
    make_connection("fluent", "fluentcrm", base_url=BASE, username="api", app_password=PASSWORD)
    responses.get(TAGS_URL, json=crm_fixture("fluentcrm/api/list_tags.json")["response"]["json"])
    result = cli("connection", "test", "fluent")
    assert result.exit_code == 0
    assert "OK" in result.stdout
    assert cli_json("connection", "test", "fluent") == (
        0,
        {"ok": True, "name": "fluent", "reached": True, "note": None},
    )
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")


@responses.activate
def test_test_reports_the_typed_error_and_exits_1(make_connection, cli, cli_json, crm_fixture):
    make_connection("fluent", "fluentcrm", base_url=BASE, username="api", app_password=PASSWORD)
    refused = crm_fixture("fluentcrm/api/wrong_password_401.json")["response"]
    responses.get(TAGS_URL, status=refused["status"], json=refused["json"])
    result = cli("connection", "test", "fluent")
    assert result.exit_code == 1
    assert "auth_refused (HTTP 401)" in result.stderr
    code, data = cli_json("connection", "test", "fluent")
    assert code == 1
    assert data["ok"] is False
    assert (data["error_class"], data["status"]) == ("auth_refused", 401)
    assert "credentials refused" in data["message"]


def test_test_of_an_incomplete_connection_makes_no_request(make_connection, cli_json):
    make_connection("fluent", "fluentcrm", username="api")
    with responses.RequestsMock():  # any request would fail this test
        code, data = cli_json("connection", "test", "fluent")
    assert code == 1
    assert data["error"] == "incomplete_connection"
    assert "base_url" in data["message"] and "app_password" in data["message"]


def test_test_dry_run_prints_the_rendered_requests(make_connection, cli, cli_json, monkeypatch):
    make_connection("fluent", "fluentcrm", base_url=BASE, username="api", app_password=PASSWORD)
    calls = []

    def fake_dry_run(connection, *, preset, send):
        calls.append((connection.name, preset, send))
        request = {"method": "POST", "url": f"{BASE}/x", "request_headers": {"A": "b"}, "request_body": {"email": "e"}}
        return {"requests": [request]}  # dry_run's keys (CONTRACT §4, docs/httpsafe.md)

    monkeypatch.setitem(sys.modules, "bridge.connections.dry_run", types.SimpleNamespace(dry_run=fake_dry_run))
    result = cli("connection", "test", "fluent", "--dry-run")
    assert result.exit_code == 0
    assert f"POST {BASE}/x" in result.stdout and "A: b" in result.stdout and '"email": "e"' in result.stdout
    code, data = cli_json("connection", "test", "fluent", "--dry-run")
    assert code == 0 and data["requests"][0]["method"] == "POST"
    assert calls == [("fluent", "new_us_user", False)] * 2


# -- remove -----------------------------------------------------------------------------------


def test_remove_needs_the_exact_name_and_revokes_the_key(app, make_connection, cli, cli_json):
    key = make_connection("fluent")
    assert cli("connection", "remove", "Fluent").exit_code == 1
    assert cli("connection", "remove", "fluen").exit_code == 1
    result = cli("connection", "remove", "fluent")
    assert result.exit_code == 0 and "Removed" in result.stdout
    with app.app_context():
        assert connections.get_connection("fluent") is None
        assert connections.find_by_access_key(key) is None
    make_connection("other")
    assert cli_json("connection", "remove", "other") == (0, {"success": True, "name": "other", "removed": True})


# -- access-key rotate ------------------------------------------------------------------------


def test_rotate_prints_a_new_key_and_the_old_one_works_for_the_grace_period(app, make_connection, cli, monkeypatch):
    old_key = make_connection("fluent")
    result = cli("access-key", "rotate", "fluent", "--grace", "2")
    assert result.exit_code == 0
    new_key = next(line for line in result.stdout.splitlines() if line.startswith("Access key")).rsplit(" ", 1)[1]
    assert new_key != old_key and old_key not in result.output
    assert f"?wpf_action=update_tags&access_key={new_key}" in result.stdout
    with app.app_context():
        assert connections.find_by_access_key(old_key).name == "fluent"
        assert connections.find_by_access_key(new_key).name == "fluent"
        later = utcnow() + timedelta(hours=2, minutes=1)
        monkeypatch.setattr(connections, "utcnow", lambda: later)
        assert connections.find_by_access_key(old_key) is None
        assert connections.find_by_access_key(new_key).name == "fluent"


def test_rotate_json_and_default_grace_of_24_hours(app, make_connection, cli_json, monkeypatch):
    old_key = make_connection("fluent")
    code, data = cli_json("access-key", "rotate", "fluent")
    assert code == 0
    assert set(data) == {"name", "access_key", "webhook_urls", "grace_hours"}
    assert data["grace_hours"] == 24
    with app.app_context():
        almost = utcnow() + timedelta(hours=23, minutes=59)
        monkeypatch.setattr(connections, "utcnow", lambda: almost)
        assert connections.find_by_access_key(old_key) is not None
        monkeypatch.setattr(connections, "utcnow", lambda: almost + timedelta(minutes=2))
        assert connections.find_by_access_key(old_key) is None
        assert connections.find_by_access_key(data["access_key"]) is not None


def test_rotate_with_no_grace_revokes_at_once_and_unknown_name_fails(app, make_connection, cli, cli_json):
    old_key = make_connection("fluent")
    code, data = cli_json("access-key", "rotate", "fluent", "--grace", "0")
    assert code == 0
    with app.app_context():
        assert connections.find_by_access_key(old_key) is None
        assert connections.find_by_access_key(data["access_key"]) is not None
    assert cli("access-key", "rotate", "nope").exit_code == 1
    assert cli("access-key", "rotate", "fluent", "--grace", "-1").exit_code == 2  # click's usage error
