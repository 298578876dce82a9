"""Connection settings: the ones every connection has, defaults, validation and coercion, secrets
encrypted at rest (masked when shown, left as stored when unreadable after a ``SECRET_KEY``
change), and the decrypted view an adapter is built from.

Split from ``bridge.connections.service``, which keeps the connection's life cycle (create, access keys,
remove, test) and uses these rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bridge import crypto
from bridge.connections.adapter_registry import adapter_class
from bridge.models import Connection
from crm_adapters.base import DEFAULT_FIELD_MAP, Setting

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
        f"{'it' if len(names) == 1 else 'them'} again with `crm-bridge connection set {connection_name} KEY=VALUE`"
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
    return missing_among(connection.type, *read_settings(connection))


def missing_among(type_slug: str, settings: Mapping[str, Any], unreadable: Sequence[str]) -> list[str]:
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
    return public_from(connection.type, *read_settings(connection))


def public_from(type_slug: str, settings: dict[str, Any], unreadable: Sequence[str]) -> dict[str, Any]:
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


def apply_settings(connection: Connection, changes: Mapping[str, Any], *, judge_connection: bool = True) -> None:
    """Validate and store setting changes (``None`` removes a setting). Raises InvalidConnection.

    ``judge_connection=False`` is for values the CRM itself handed over (refreshed tokens): each
    is still checked, but the connection as a whole is not judged again, so a setting that went
    bad since it was saved cannot get the new tokens thrown away (the CRM has spent the old ones).
    """
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
    if judge_connection:
        candidate = Connection(name=connection.name, type=connection.type, settings=stored)
        # Secrets that cannot be decrypted stay stored as they are: they were checked when saved.
        merged, _unreadable = read_settings(candidate)
        problems += _check_common(merged)
        problems += adapter_class(connection.type).validate_config(merged)
    if problems:
        raise InvalidConnection(problems)
    connection.settings = stored


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
