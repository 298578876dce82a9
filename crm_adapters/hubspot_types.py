"""HubSpot's lists and properties read as data: which lists can be tags, why one cannot, what
kind of value a contact property holds and how HubSpot wants it written. Kept apart from the
adapter (``crm_adapters.hubspot``) so each module stays one job.

Sources: https://developers.hubspot.com/docs/api/crm/lists (processing types; memberships can be
added to ``MANUAL`` and ``SNAPSHOT`` lists only), https://developers.hubspot.com/docs/api/crm/properties
(property ``type``/``fieldType``), WP Fusion 3.47.11 ``WPF_HubSpot::sync_tags_v3`` and
``format_field_value`` (dates as midnight-UTC milliseconds, checkboxes "true"/"false", several
values joined with ";").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from crm_adapters.field_format import FieldKind, FormatRules

CONTACT_OBJECT_TYPE = "0-1"
TAG_PROCESSING_TYPES = frozenset({"MANUAL", "SNAPSHOT"})  # the list types memberships can be added to
PROPERTY_KINDS = {
    "date": FieldKind.DATE,
    "datetime": FieldKind.DATETIME,
    "bool": FieldKind.CHECKBOX,
    "number": FieldKind.NUMBER,
}
# WP Fusion's WPF_HubSpot::format_field_value: a date is midnight UTC in milliseconds, a
# checkbox "true"/"false", several values joined with ";".


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


FORMAT_RULES = FormatRules(
    date=_epoch_ms,
    datetime=_epoch_ms,
    true="true",
    false="false",
    multi_separator=";",
    list_separator=";",
)


def is_tag_list(item: Mapping[str, Any]) -> bool:
    return (
        str(item.get("objectTypeId", CONTACT_OBJECT_TYPE)) == CONTACT_OBJECT_TYPE
        and str(item.get("processingType", "MANUAL")) in TAG_PROCESSING_TYPES
    )


def named(lists: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    return next((item for item in lists if str(item.get("name", "")).lower() == name.lower()), None)


def unusable_list(name: str, found: Mapping[str, Any]) -> str:
    """Why tag ``name`` cannot be applied: HubSpot's list of that name takes no memberships."""
    if str(found.get("objectTypeId", CONTACT_OBJECT_TYPE)) != CONTACT_OBJECT_TYPE:
        why = f"is a list of other records (objectTypeId {found.get('objectTypeId')}), not of contacts"
    else:
        why = (
            f"is an active ({found.get('processingType')}) list, whose members HubSpot picks by its filters:"
            " the API cannot add contacts to it"
        )
    return (
        f"HubSpot list {name!r} (id {found.get('listId')}) {why}; list names are unique in a portal, so"
        " rename the tag or the list"
    )


def property_kind(prop: Mapping[str, Any]) -> FieldKind:
    kind, field_type = str(prop.get("type", "")), str(prop.get("fieldType", ""))
    if kind == "enumeration" and field_type == "checkbox":
        return FieldKind.MULTI
    return PROPERTY_KINDS.get(kind, FieldKind.TEXT)
