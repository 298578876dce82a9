"""What the settings page shows for each kind of configuration value (table-driven)."""

from __future__ import annotations

import pytest

from bridge.admin.configuration import display_value, effective_configuration


@pytest.mark.parametrize(
    ("name", "value", "shown", "hidden"),
    [
        ("SECRET_KEY", "s3cr3t-signing-key", "set [hidden]", True),
        ("CRM_WEBHOOK_SECRET", None, "not set", True),
        ("CRM_CALLBACK_SECRET", "cb-secret", "set [hidden]", True),
        (
            "SQLALCHEMY_DATABASE_URI",
            "postgresql+psycopg://bridge:dbpass99@db.internal:5432/bridge",
            "postgresql+psycopg://[hidden]@db.internal:5432/bridge",
            True,
        ),
        (
            "SQLALCHEMY_DATABASE_URI",
            "sqlite:////srv/instance/bridge.sqlite3",
            "sqlite:////srv/instance/bridge.sqlite3",
            False,
        ),
        ("BRIDGE_MAIL_URL", "smtps://user:pw@mail.example.com:465", "smtps://[hidden]@mail.example.com:465", True),
        (
            "BRIDGE_RATELIMIT_STORAGE_URL",
            "redis://:redispw@127.0.0.1:6379/0",
            "redis://[hidden]@127.0.0.1:6379/0",
            True,
        ),
        ("BRIDGE_MAIL_URL", None, "not set", False),
        ("BRIDGE_MAX_BODY_BYTES", 1048576, "1048576", False),
        ("BRIDGE_WORKER", "inline", "inline", False),
    ],
)
def test_display_value(name, value, shown, hidden):
    assert display_value(name, value) == (shown, hidden)


def test_effective_configuration_lists_bridge_and_crm_settings_only():
    config = {"BRIDGE_WORKER": "off", "CRM_WEBHOOK_SECRET": "x", "SECRET_KEY": "k", "UNRELATED": "y"}

    names = [item.name for item in effective_configuration(config)]

    assert names == ["BRIDGE_WORKER", "CRM_WEBHOOK_SECRET", "SECRET_KEY"]
