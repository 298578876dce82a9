"""Connections: settings (defaults, validation, secrets encrypted at rest), access keys
(hashed, rotation with a grace period) and building an adapter for a connection."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from bridge import crypto
from bridge.adapters import adapter_class
from bridge.extensions import db
from bridge.http import OutboundClient, outbound_client
from bridge.models import AccessKey, Connection, utcnow
from crm_adapters.base import DEFAULT_FIELD_MAP, Adapter, Setting

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ACCESS_KEY_PREFIX = "cbk_"

COMMON_SETTINGS: list[Setting] = [
    Setting("enabled", "Enabled", default=True, kind="bool"),
    Setting("push_on_register", "Push new registrations", default=True, kind="bool"),
    Setting("push_updates", "Push profile updates", default=False, kind="bool"),
    Setting("field_map", "Field map (local key → CRM field)", default=dict(DEFAULT_FIELD_MAP), kind="json"),
    Setting("assign_tags", "Tags applied on registration", default=[], kind="list"),
    Setting("default_role", "Default role", default="subscriber"),
    Setting("username_format", "Username format (email | flname | fnamenum)", default="email"),
    Setting("send_welcome_email", "Send welcome email", default=False, kind="bool"),
    Setting("return_password_field", "CRM field receiving generated passwords", default=None),
    Setting("return_password_in_response", "Return password in webhook response", default=False, kind="bool"),
    Setting("always_load_from_crm", "Always load contact from CRM", default=False, kind="bool"),
    Setting("password_length", "Generated password length", default=16, kind="int"),
]
USERNAME_FORMATS = ("email", "flname", "fnamenum")
# Keys of a JSON secret (custom_webhook ``auth``) that describe it rather than hold a secret.
JSON_SECRET_PLAIN_KEYS = frozenset({"type", "header", "token_url", "scope", "client_auth"})
MIN_PASSWORD_LENGTH = 12
# What a secret that cannot be decrypted shows in place of its mask. Sent back unchanged (an API
# client PATCHing what it was shown), it keeps the stored secret, as a mask does.
UNREADABLE_MASK = "•••• unreadable"


class InvalidConnection(ValueError):
    """A connection could not be saved: ``problems`` lists each reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class ConnectionExists(InvalidConnection):
    """The name is taken (the API answers 409 rather than 422)."""


class IncompleteConnection(InvalidConnection):
    """Required settings are missing, so the CRM cannot be called yet."""


class UnreadableSecrets(crypto.SecretUnreadable):
    """Secret settings were encrypted with another ``SECRET_KEY`` (or are damaged).

    They stay stored as they are (restoring the old key makes them readable again) and are
    never replaced unless named in a change; but nothing that needs them runs, since an adapter
    without its credentials or signing secret would fail obscurely or skip a signature check.
    ``names`` lists them; the message says how to fix it and never carries a value.
    """

    def __init__(self, connection_name: str, names: Sequence[str]) -> None:
        self.connection_name = connection_name
        self.names = sorted(names)
        self.hint = unreadable_hint(connection_name, self.names)
        super().__init__(f"connection {connection_name!r}: {', '.join(self.names)} cannot be decrypted ({self.hint})")


def unreadable_hint(connection_name: str, names: Sequence[str]) -> str:
    """What to do about secrets encrypted with another SECRET_KEY. The command says ``KEY=VALUE``
    rather than ``app_password=…``: log redaction would eat a secret's name followed by ``=``."""
    return (
        "encrypted with another SECRET_KEY: restore that key, or set "
        f"{'it' if len(names) == 1 else 'them'} again with `bridge connection set {connection_name} KEY=VALUE`"
    )


def settings_for_type(type_slug: str) -> list[Setting]:
    return COMMON_SETTINGS + list(adapter_class(type_slug).settings)


def _setting_index(type_slug: str) -> dict[str, Setting]:
    return {setting.name: setting for setting in settings_for_type(type_slug)}


def parse_cli_value(raw: str) -> Any:
    """``--set`` values are JSON when they parse, else plain strings (CONTRACT §2)."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _coerce(setting: Setting, value: Any) -> Any:
    if value is None:
        return None
    kind = setting.kind
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{setting.name} must be true or false")
    if kind == "int":
        if isinstance(value, bool):
            raise ValueError(f"{setting.name} must be a whole number")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{setting.name} must be a whole number") from None
    if kind == "list":
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list) and all(isinstance(i, str) for i in value):
            return value
        raise ValueError(f"{setting.name} must be a list of strings")
    if kind == "json":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(f"{setting.name} must be JSON") from None
        return value
    if kind in ("str", "url"):
        if not isinstance(value, str | int | float):
            raise ValueError(f"{setting.name} must be a string")
        value = str(value)
        if kind == "url" and value and not re.match(r"^https?://", value):
            raise ValueError(f"{setting.name} must be an http(s) URL")
        return value
    return value


def _check_common(settings: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    field_map = settings.get("field_map")
    if field_map is not None and not (
        isinstance(field_map, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in field_map.items())
    ):
        problems.append("field_map must be an object of local key → CRM field name")
    if settings.get("username_format", "email") not in USERNAME_FORMATS:
        problems.append(f"username_format must be one of {', '.join(USERNAME_FORMATS)}")
    length = settings.get("password_length")
    if length is not None and length < MIN_PASSWORD_LENGTH:
        problems.append(f"password_length must be at least {MIN_PASSWORD_LENGTH}")
    return problems


def missing_settings(connection: Connection) -> list[str]:
    """Required settings not yet given. A connection may be saved incomplete (its access key
    works and payloads carrying the contact are served); API calls need these. A secret that
    is stored but cannot be decrypted is not missing: see ``unreadable_settings``."""
    return _missing_readable(connection.type, *read_settings(connection))


def _missing_readable(type_slug: str, settings: Mapping[str, Any], unreadable: Sequence[str]) -> list[str]:
    return [name for name in missing_from(type_slug, settings) if name not in unreadable]


def unreadable_settings(connection: Connection) -> list[str]:
    """Stored secret settings this ``SECRET_KEY`` cannot decrypt (see ``UnreadableSecrets``)."""
    return read_settings(connection)[1]


def missing_from(type_slug: str, settings: Mapping[str, Any]) -> list[str]:
    """``missing_settings`` for settings already decrypted (the inbound key cache has no row)."""
    return [s.name for s in settings_for_type(type_slug) if s.required and settings.get(s.name) in (None, "")]


def effective_settings(connection: Connection) -> dict[str, Any]:
    """Defaults overlaid with what is stored, secrets decrypted: what an adapter receives.
    Raises ``UnreadableSecrets`` when a secret cannot be decrypted (never a partial result)."""
    settings, unreadable = read_settings(connection)
    if unreadable:
        raise UnreadableSecrets(connection.name, unreadable)
    return settings


def read_settings(connection: Connection) -> tuple[dict[str, Any], list[str]]:
    """``effective_settings`` that does not raise: secrets that cannot be decrypted keep their
    defaults and are named in the second item. For showing a connection, reading its flags and
    validating a change: never for building an adapter."""
    result: dict[str, Any] = {}
    for setting in settings_for_type(connection.type):
        default = setting.default
        result[setting.name] = json.loads(json.dumps(default)) if default is not None else None
    index = _setting_index(connection.type)
    unreadable: list[str] = []
    for key, value in (connection.settings or {}).items():
        if crypto.is_encrypted(value):
            try:
                value = crypto.decrypt(value)
            except crypto.SecretUnreadable:
                unreadable.append(key)
                continue
            if key in index and index[key].kind == "json":
                value = json.loads(value)  # a JSON secret (custom_webhook's auth) is stored as JSON text
        result[key] = value
    return result, sorted(unreadable)


def _secret_leaves(value: Any) -> list[str]:
    """The secret strings inside a JSON secret; ``type``-like descriptor keys are not secret."""
    if isinstance(value, Mapping):
        return [
            leaf for key, item in value.items() if key not in JSON_SECRET_PLAIN_KEYS for leaf in _secret_leaves(item)
        ]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _secret_leaves(item)]
    return [str(value)] if value not in (None, "") else []


def _mask_secret(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: item if key in JSON_SECRET_PLAIN_KEYS else _mask_secret(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_secret(item) for item in value]
    return crypto.mask(str(value))


def public_settings(connection: Connection) -> dict[str, Any]:
    """Settings safe to show: secrets masked (never shown again in full once saved), and
    those that cannot be decrypted shown as ``UNREADABLE_MASK``."""
    return _public(connection.type, *read_settings(connection))


def _public(type_slug: str, settings: dict[str, Any], unreadable: Sequence[str]) -> dict[str, Any]:
    for name, setting in _setting_index(type_slug).items():
        if setting.secret and settings.get(name):
            settings[name] = _mask_secret(settings[name])
    return {**settings, **dict.fromkeys(unreadable, UNREADABLE_MASK)}


def secret_values(connection: Connection) -> list[str]:
    """Plain secret values of a connection, for redaction of logs and attempts (those that
    cannot be decrypted are left out: nothing can send them either)."""
    return secret_values_from(connection.type, read_settings(connection)[0])


def secret_values_from(type_slug: str, settings: Mapping[str, Any]) -> list[str]:
    """``secret_values`` for settings already decrypted; JSON secrets give each of their leaves."""
    index = _setting_index(type_slug)
    values = [
        leaf for name, s in index.items() if s.secret and settings.get(name) for leaf in _secret_leaves(settings[name])
    ]
    return [v for v in values if len(v) >= 4]


def apply_settings(connection: Connection, changes: Mapping[str, Any]) -> None:
    """Validate and store setting changes (``None`` removes a setting). Raises InvalidConnection."""
    index = _setting_index(connection.type)
    problems: list[str] = []
    stored = dict(connection.settings or {})
    for name, raw in changes.items():
        setting = index.get(name)
        if setting is None:
            problems.append(f"unknown setting {name!r} for type {connection.type}")
            continue
        if setting.secret and _is_mask_of_stored(raw, stored.get(name)):
            continue  # a form or API client sent back what we showed it: keep the secret
        try:
            value = _coerce(setting, raw)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if setting.secret and setting.kind == "json":
            value = _keep_masked_leaves(value, _stored_json(stored.get(name)))
        if value is None:
            stored.pop(name, None)
        elif setting.secret and setting.kind == "json":
            stored[name] = crypto.encrypt(json.dumps(value))
        elif setting.secret and isinstance(value, str) and value:
            stored[name] = crypto.encrypt(value)
        else:
            stored[name] = value
    candidate = Connection(name=connection.name, type=connection.type, settings=stored)
    # Secrets that cannot be decrypted stay stored as they are: they were checked when saved.
    merged, _unreadable = read_settings(candidate)
    problems += _check_common(merged)
    problems += adapter_class(connection.type).validate_config(merged)
    if problems:
        raise InvalidConnection(problems)
    connection.settings = stored


def store_changed_settings(connection_id: int, adapter: Adapter, *, commit: bool = True) -> list[str]:
    """Store what ``adapter`` changed on its connection (refreshed tokens): at once, so a
    refresh token the CRM rotated is never lost with a failed attempt. With ``commit=False``
    the change joins the session's open transaction. Returns the names stored (never the
    values: they are secrets)."""
    changes = adapter.settings_to_store()
    if not changes:
        return []
    connection = db.session.get(Connection, connection_id)
    if connection is None:
        return []
    apply_settings(connection, changes)
    if commit:
        db.session.commit()
    logger.info("connection %s: stored the settings its CRM changed (%s)", connection.name, ", ".join(sorted(changes)))
    return sorted(changes)


def _is_mask_of_stored(value: Any, stored: Any) -> bool:
    """True when ``value`` is exactly the masked form of the stored secret (``public_settings``
    output edited and sent back whole), which must not overwrite the real secret."""
    if not isinstance(value, str) or not value.startswith("••••") or not isinstance(stored, str):
        return False
    try:
        return value == crypto.mask(crypto.decrypt(stored))
    except crypto.SecretUnreadable:
        return value == UNREADABLE_MASK


def _stored_json(stored: Any) -> Any:
    """A stored JSON secret, decrypted and parsed; None when there is none or it is unreadable."""
    if not crypto.is_encrypted(stored):
        return None
    try:
        return json.loads(crypto.decrypt(stored))
    except (crypto.SecretUnreadable, ValueError):
        return None


def _keep_masked_leaves(value: Any, stored: Any) -> Any:
    """A JSON secret sent back with some leaves as shown (masked, ``••••3456``) and others
    edited: each masked leaf takes the stored value at the same place, so changing one part of
    ``{"type": "bearer", "token": …}`` never stores the mask as the token."""
    if isinstance(value, Mapping) and isinstance(stored, Mapping):
        return {key: _keep_masked_leaves(item, stored.get(key)) for key, item in value.items()}
    if isinstance(value, list) and isinstance(stored, list):
        return [_keep_masked_leaves(item, stored[i] if i < len(stored) else None) for i, item in enumerate(value)]
    if isinstance(value, str) and value.startswith("••••") and isinstance(stored, str | int | float):
        return stored if value == crypto.mask(str(stored)) else value
    return value


def create_connection(name: str, type_slug: str, settings: Mapping[str, Any] | None = None) -> tuple[Connection, str]:
    """Create a connection and its first access key. Returns the key in full: it is shown once."""
    problems = []
    if not NAME_PATTERN.match(name or ""):
        problems.append("name must be a lower-case slug (letters, digits, - and _)")
    elif db.session.scalar(select(Connection.id).where(Connection.name == name)):
        raise ConnectionExists([f"a connection named {name!r} exists"])
    adapter_class(type_slug)  # raises UnknownAdapterType
    if problems:
        raise InvalidConnection(problems)
    connection = Connection(name=name, type=type_slug, settings={})
    apply_settings(connection, settings or {})
    db.session.add(connection)
    key = _add_access_key(connection)
    db.session.flush()
    return connection, key


def _add_access_key(connection: Connection) -> str:
    key = crypto.new_token(ACCESS_KEY_PREFIX)
    connection.access_keys.append(AccessKey(key_hash=crypto.token_hash(key), hint=key[-4:]))
    return key


def rotate_access_key(connection: Connection, grace_hours: float = 24) -> str:
    """A new key; current keys keep working for ``grace_hours`` (0: revoked at once)."""
    now = utcnow()
    until = now + timedelta(hours=grace_hours)
    for key in connection.access_keys:
        if key.expires_at is None or key.expires_at > until:
            key.expires_at = until
    new_key = _add_access_key(connection)
    db.session.flush()
    return new_key


def find_by_access_key(key: str | None) -> Connection | None:
    """The connection this key selects, or None. Looked up by SHA-256, confirmed in constant time."""
    if not key or len(key) > 512:
        return None
    digest = crypto.token_hash(key)
    # One query: the key with its connection (the inbound hot path needs both).
    row = db.session.scalar(
        select(AccessKey).options(joinedload(AccessKey.connection)).where(AccessKey.key_hash == digest)
    )
    if row is None or not crypto.same_secret(row.key_hash, digest):
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return row.connection


def get_connection(name: str) -> Connection | None:
    return db.session.scalar(select(Connection).where(Connection.name == name))


def any_connection_exists() -> bool:
    return db.session.scalar(select(Connection.id).limit(1)) is not None


def build_adapter(connection: Connection, http: OutboundClient | None = None) -> Adapter:
    """The connection's adapter, with an outbound client that redacts its secrets."""
    client = http or outbound_client(secret_values(connection))
    return adapter_class(connection.type)(effective_settings(connection), client)


def webhook_urls(base_url: str, access_key: str) -> dict[str, str]:
    base = base_url.rstrip("/") + "/"
    actions = ("add", "update", "update_tags")
    return {action: f"{base}?wpf_action={action}&access_key={access_key}" for action in actions}


# -- shared by the CLI, the API and the admin console -----------------------------------------

DEFAULT_BASE_URL = "http://127.0.0.1:5000"


def base_url(fallback: str | None = None) -> str:
    """Where this service is reachable, for webhook URLs: ``BRIDGE_BASE_URL``, else ``fallback``
    (the API passes the request's host), else the embedded default."""
    configured = current_app.config.get("BRIDGE_BASE_URL") if has_app_context() else None
    return (configured or fallback or DEFAULT_BASE_URL).rstrip("/")


def list_connections() -> list[Connection]:
    return list(db.session.scalars(select(Connection).order_by(Connection.name)))


def active_access_keys(connection: Connection) -> list[AccessKey]:
    """Keys that still open the connection (the current one and any in their grace period)."""
    now = utcnow()
    return [key for key in connection.access_keys if key.expires_at is None or key.expires_at > now]


def connection_to_json(connection: Connection) -> dict[str, Any]:
    """A connection as the CLI, API and admin console show it: secrets masked, and of each
    access key only its last four characters (the key itself is shown once, when made).
    ``unreadable_settings`` names the secrets this SECRET_KEY cannot decrypt."""
    settings, unreadable = read_settings(connection)
    return {
        "name": connection.name,
        "type": connection.type,
        "enabled": bool(settings.get("enabled", True)),
        "settings": _public(connection.type, dict(settings), unreadable),
        "missing_settings": _missing_readable(connection.type, settings, unreadable),
        "unreadable_settings": unreadable,
        "access_keys": [
            {"hint": "…" + key.hint, "created_at": _iso(key.created_at), "expires_at": _iso(key.expires_at)}
            for key in active_access_keys(connection)
        ],
        "created_at": _iso(connection.created_at),
        "updated_at": _iso(connection.updated_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value else None


def remove_connection(connection: Connection) -> None:
    """Delete a connection. Its keys, tags, contact links and queued deliveries go with it
    (``ON DELETE CASCADE``); the inbound log keeps its rows with the name only."""
    db.session.delete(connection)
    db.session.flush()


def check_connection(connection: Connection, http: OutboundClient | None = None) -> None:
    """One cheap authenticated CRM call through the adapter.

    Raises ``UnreadableSecrets`` when a stored secret cannot be decrypted and
    ``IncompleteConnection`` when required settings are missing (no request is made in either
    case), else whatever typed ``AdapterError`` the adapter raises.
    """
    unreadable = unreadable_settings(connection)
    if unreadable:
        raise UnreadableSecrets(connection.name, unreadable)
    missing = missing_settings(connection)
    if missing:
        raise IncompleteConnection([f"missing required setting {name!r}" for name in missing])
    adapter = build_adapter(connection, http)
    try:
        adapter.check()
    finally:
        store_changed_settings(connection.id, adapter)
