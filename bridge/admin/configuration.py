"""The effective configuration as the settings page shows it: secrets never in full.

Only crm-bridge's own settings are listed (``BRIDGE_*``, ``CRM_*``, the database and the secret
key; not Flask's internals). A value is hidden when its name ends in ``SECRET``, ``PASSWORD``,
``TOKEN`` or ``KEY`` (``BRIDGE_FAILED_KEY_LIMIT`` is a plain number and is shown), and URLs lose
their credentials (``smtps://user:pass@host`` shows
``smtps://[hidden]@host``): the mail URL and the database URL carry passwords.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HIDDEN = "[hidden]"
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|(^|_)KEY)$")
URL_CREDENTIALS = re.compile(r"(?<=//)[^/@\s]*@")
PREFIXES = ("BRIDGE_", "CRM_")
EXTRA = ("SECRET_KEY", "SQLALCHEMY_DATABASE_URI")
DESCRIPTIONS = {
    "SQLALCHEMY_DATABASE_URI": "database (DATABASE_URL)",
    "SECRET_KEY": "signs sessions and derives the settings encryption key",
    "BRIDGE_WORKER": "inline: delivery worker thread in the web process; off: separate workers",
    "BRIDGE_MAIL_URL": "unset: mail is written as .eml files under instance/mail/",
    "CRM_WEBHOOK_SECRET": "guards /webhooks/crm/lead (first choice)",
    "CRM_CALLBACK_SECRET": "guards /webhooks/crm/lead when CRM_WEBHOOK_SECRET is unset",
    "BRIDGE_ALLOW_PRIVATE_TARGETS": "development only: lets outbound requests reach private addresses",
    "BRIDGE_OUTBOUND_ALLOWLIST": "hosts outbound requests may reach (empty: any public host)",
    "BRIDGE_BASE_URL": "public URL for links in mail and webhook URLs (empty: the request's host)",
    "BRIDGE_SIGNIN_URL": "where users sign in; named on the page after they set a password",
    "BRIDGE_MAX_BODY_BYTES": "largest inbound request body",
    "BRIDGE_PUBLIC_SIGNUP": "off turns the /register page off",
    "BRIDGE_FAILED_KEY_LIMIT": "failed access keys per address per minute before refusing it",
    "BRIDGE_LEASE_SECONDS": "how long a worker holds a delivery before another may take it",
    "BRIDGE_RATELIMIT_STORAGE_URL": "redis://… for the failed-key counters (empty: the database)",
}


@dataclass(frozen=True)
class ConfigItem:
    name: str
    value: str
    secret: bool
    description: str = ""


def hide_credentials(url: str) -> str:
    return URL_CREDENTIALS.sub(f"{HIDDEN}@", url)


def display_value(name: str, value: Any) -> tuple[str, bool]:
    """(what to show, whether it was hidden)."""
    if SECRET_NAME.search(name):
        return ("set " + HIDDEN if value else "not set"), True
    if value is None or value == "":
        return "not set", False
    text = str(value)
    if "://" in text:
        hidden = hide_credentials(text)
        return hidden, hidden != text
    return text, False


def effective_configuration(config: Mapping[str, Any]) -> list[ConfigItem]:
    names = sorted({n for n in config if n.startswith(PREFIXES)} | {n for n in EXTRA if n in config})
    items = []
    for name in names:
        value, secret = display_value(name, config.get(name))
        items.append(ConfigItem(name=name, value=value, secret=secret, description=DESCRIPTIONS.get(name, "")))
    return items
