"""``crm-bridge connection …`` when a stored secret was encrypted with another SECRET_KEY: every
command answers (no traceback), names the unreadable settings and how to fix them, and never
prints the secret or its ciphertext."""

from __future__ import annotations

import responses
from support import encrypt_with_other_key

from bridge.connections import service as connections
from bridge.connections import settings as connection_settings

PASSWORD = "wp-app-pass-Sup3rSecretValue"
BASE = "https://crm.example.com"
HINT = "encrypted with another SECRET_KEY: restore that key, or set it again with `crm-bridge connection set fluent"


def fluent_with_unreadable_password(app, cli) -> str:
    """A fluentcrm connection whose app_password this SECRET_KEY cannot decrypt; returns the
    ciphertext now stored."""
    sets = ("--set", f"base_url={BASE}", "--set", "username=api", "--set", f"app_password={PASSWORD}")
    assert cli("connection", "add", "fluent", "--type", "fluentcrm", *sets).exit_code == 0
    return encrypt_with_other_key(app, "fluent", "app_password")["app_password"]


def stored_password(app) -> str:
    with app.app_context():
        return connections.get_connection("fluent").settings["app_password"]


def test_show_names_the_unreadable_secret_and_how_to_fix_it(app, cli):
    ciphertext = fluent_with_unreadable_password(app, cli)
    result = cli("connection", "show", "fluent")
    assert result.exit_code == 0, result.output
    assert 'app_password = "•••• unreadable"' in result.stdout
    assert f"unreadable secrets: app_password ({HINT} KEY=VALUE`)" in result.stdout
    assert "missing required settings: none" in result.stdout
    assert PASSWORD not in result.output and ciphertext not in result.output


def test_show_and_list_json_gain_unreadable_settings_and_keep_every_field(app, cli, cli_json):
    ciphertext = fluent_with_unreadable_password(app, cli)
    code, shown = cli_json("connection", "show", "fluent")
    assert code == 0
    assert shown["unreadable_settings"] == ["app_password"]
    assert shown["settings"]["app_password"] == connection_settings.UNREADABLE_MASK
    assert shown["settings"]["username"] == "api" and shown["missing_settings"] == []
    assert {"name", "type", "enabled", "settings", "missing_settings", "access_keys"} <= set(shown)
    code, listed = cli_json("connection", "list")
    assert code == 0 and listed["total"] == 1
    assert listed["items"][0]["unreadable_settings"] == ["app_password"]
    assert ciphertext not in str(listed) and PASSWORD not in str(listed)


def test_readable_connections_list_no_unreadable_settings(app, cli, cli_json):
    assert cli("connection", "add", "other", "--type", "fluentcrm").exit_code == 0
    code, listed = cli_json("connection", "list")
    assert code == 0 and listed["items"][0]["unreadable_settings"] == []
    assert "cannot decrypt" not in cli("connection", "list").stdout


def test_list_text_says_which_connection_cannot_decrypt_what(app, cli):
    fluent_with_unreadable_password(app, cli)
    result = cli("connection", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith("fluent ")
    assert f"fluent: cannot decrypt app_password ({HINT} KEY=VALUE`)" in result.stdout


def test_test_fails_clearly_without_calling_the_crm(app, cli, cli_json):
    ciphertext = fluent_with_unreadable_password(app, cli)
    with responses.RequestsMock():  # any request would fail the test: none is registered
        result = cli("connection", "test", "fluent")
        code, data = cli_json("connection", "test", "fluent")
        dry = cli("connection", "test", "fluent", "--dry-run")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: connection 'fluent': app_password cannot be decrypted ({HINT} KEY=VALUE`)"
    )
    assert code == 1
    assert data["error"] == "secret_unreadable" and data["unreadable_settings"] == ["app_password"]
    assert data["success"] is False and "restore that key" in data["message"]
    assert dry.exit_code == 1 and "app_password cannot be decrypted" in dry.stderr
    for output in (result.output, str(data), dry.output):
        assert ciphertext not in output and PASSWORD not in output


def test_set_replaces_the_unreadable_secret(app, cli, cli_json):
    fluent_with_unreadable_password(app, cli)
    code, data = cli_json("connection", "set", "fluent", "app_password=a-brand-new-password-42")
    assert code == 0
    assert data["unreadable_settings"] == [] and data["settings"]["app_password"] == "••••d-42"
    with app.app_context():
        assert connection_settings.effective_settings(connections.get_connection("fluent"))["app_password"] == (
            "a-brand-new-password-42"
        )


def test_set_of_another_key_keeps_the_unreadable_secret_as_stored_and_warns(app, cli):
    ciphertext = fluent_with_unreadable_password(app, cli)
    result = cli("connection", "set", "fluent", "username=someone-else")
    assert result.exit_code == 0, result.output
    assert f"Warning: kept as they are, still unreadable: app_password ({HINT} KEY=VALUE`)" in result.stderr
    assert stored_password(app) == ciphertext  # untouched: restoring the old key brings it back
    with app.app_context():
        connection = connections.get_connection("fluent")
        assert connection_settings.read_settings(connection)[0]["username"] == "someone-else"


def test_set_with_what_show_printed_keeps_the_unreadable_secret(app, cli):
    ciphertext = fluent_with_unreadable_password(app, cli)
    result = cli("connection", "set", "fluent", f"app_password={connection_settings.UNREADABLE_MASK}", "username=x")
    assert result.exit_code == 0, result.output
    assert stored_password(app) == ciphertext


def test_restoring_the_old_key_makes_the_kept_secret_readable_again(app, cli):
    """The real sequence: saved under one key, the server restarted with another, a setting
    changed meanwhile, then the old key restored."""
    sets = ("--set", f"base_url={BASE}", "--set", "username=api", "--set", f"app_password={PASSWORD}")
    assert cli("connection", "add", "fluent", "--type", "fluentcrm", *sets).exit_code == 0
    old_key = app.config["SECRET_KEY"]
    app.config["SECRET_KEY"] = "a-new-secret-key-after-a-careless-redeploy"
    assert "unreadable secrets: app_password" in cli("connection", "show", "fluent").stdout
    assert cli("connection", "set", "fluent", "username=changed").exit_code == 0
    app.config["SECRET_KEY"] = old_key
    with app.app_context():
        settings = connection_settings.effective_settings(connections.get_connection("fluent"))
        assert (settings["app_password"], settings["username"]) == (PASSWORD, "changed")
