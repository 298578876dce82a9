"""Connection settings as an HTML form: the fields a type's form shows (built from the adapter's
declared ``settings``, so a new adapter gets its form for free) and the change a submitted form
makes. The rules (coercion, validation, encryption, masks) stay in ``bridge.connections.settings``;
this module only translates between form fields and setting changes.

Secrets are write-only: the form never carries their value, and a secret left blank keeps what is
stored. The field map arrives as parallel rows ``field_map_local`` / ``field_map_crm``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.connections.settings import COMMON_SETTINGS, USERNAME_FORMATS, settings_for_type
from crm_adapters.base import Setting

SPECIAL = frozenset({"field_map", "assign_tags", "enabled"})  # edited by their own widgets
COMMON_NAMES = frozenset(s.name for s in COMMON_SETTINGS)
FIELD_MAP_LOCAL = "field_map_local"
FIELD_MAP_CRM = "field_map_crm"
LOCAL_FIELDS = ("email", "username", "first_name", "last_name", "role", "user_login", "user_pass")


class FormData(Protocol):
    """What a submitted form offers (Werkzeug's ``MultiDict``)."""

    def get(self, key: str, default: Any = ...) -> Any: ...
    def getlist(self, key: str) -> list[str]: ...
    def __contains__(self, key: object) -> bool: ...


@dataclass(frozen=True)
class FormField:
    """One input of a connection form."""

    name: str
    label: str
    kind: str  # str | url | int | bool | json | list
    required: bool
    secret: bool
    help: str
    value: str  # what the input shows: never a secret
    checked: bool  # for bools
    is_set: bool  # a secret is stored (the input says "leave blank to keep")
    group: str  # "crm" (the adapter's own) | "behaviour" (every type's)
    choices: tuple[str, ...] = ()  # a select instead of a text input

    @property
    def input_type(self) -> str:
        if self.secret:
            return "password"
        return {"int": "number", "url": "url"}.get(self.kind, "text")


def _shown(setting: Setting, value: Any) -> str:
    if value is None:
        return ""
    if setting.kind == "json":
        return json.dumps(value, indent=2, ensure_ascii=False)
    if setting.kind == "list" and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def form_fields(
    type_slug: str, current: Mapping[str, Any] | None = None, *, roles: Sequence[str] = ()
) -> list[FormField]:
    """The inputs for ``type_slug``, filled from ``current`` (settings as shown: secrets are
    only reported as set, never filled in). The field map, tags and the enabled switch have
    their own widgets and are left out. ``roles`` (the roles that exist) makes
    ``default_role`` a choice, as ``username_format`` is."""
    current = current or {}
    choices = {"username_format": tuple(USERNAME_FORMATS), "default_role": tuple(roles)}
    fields = []
    for setting in settings_for_type(type_slug):
        if setting.name in SPECIAL:
            continue
        value = current.get(setting.name, setting.default)
        fields.append(
            FormField(
                name=setting.name,
                label=setting.label,
                kind=setting.kind,
                required=setting.required,
                secret=setting.secret,
                help=setting.help,
                value="" if setting.secret else _shown(setting, value),
                checked=bool(value) if setting.kind == "bool" else False,
                is_set=bool(setting.secret and current.get(setting.name)),
                group="behaviour" if setting.name in COMMON_NAMES else "crm",
                choices=choices.get(setting.name, ()),
            )
        )
    return fields


def field_map_rows(current: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    field_map = (current or {}).get("field_map")
    if not isinstance(field_map, Mapping):
        return []
    return [(str(local), str(crm)) for local, crm in field_map.items()]


def field_map_from(form: FormData) -> dict[str, str]:
    """Rows with both sides filled; a later row for the same local field wins."""
    locals_, crms = form.getlist(FIELD_MAP_LOCAL), form.getlist(FIELD_MAP_CRM)
    return {
        local.strip(): crm.strip() for local, crm in zip(locals_, crms, strict=False) if local.strip() and crm.strip()
    }


def changes_from_form(type_slug: str, form: FormData, *, creating: bool) -> dict[str, Any]:
    """The settings change a submitted form asks for, for ``apply_settings``.

    A blank secret is left out (the stored one stays); a blank plain setting is left out when
    creating (its default applies) and removed when editing. Checkboxes arrive only when ticked,
    so every bool setting of the form is set. The field map is replaced by the rows sent.
    """
    changes: dict[str, Any] = {}
    for setting in settings_for_type(type_slug):
        name = setting.name
        if setting.kind == "bool":
            changes[name] = name in form
            continue
        if name == "field_map":
            if FIELD_MAP_LOCAL in form or FIELD_MAP_CRM in form:
                changes[name] = field_map_from(form)
            continue
        if name not in form:
            continue
        raw = str(form.get(name, "")).strip()
        if setting.secret and not raw:
            continue
        if not raw:
            if not creating:
                changes[name] = None
            continue
        changes[name] = raw
    return changes


def local_field_names(extra: Sequence[str] = ()) -> list[str]:
    """Local fields a field map row may name: the user's columns, plus any ``meta`` keys seen."""
    return sorted(set(LOCAL_FIELDS) | set(extra))
