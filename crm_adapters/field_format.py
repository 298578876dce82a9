"""Typed field values: what a CRM's field list says a field is, and how that CRM wants it written.

Values leave crm-bridge as users and CRMs stored them (``"1990-05-17"``, ``"1"``, ``["a", "b"]``)
and a CRM refuses a date or checkbox written the wrong way. WP Fusion formats every value per CRM
before it goes out (``WPF_CRM_Base::format_field_value`` in ``includes/crms/class-base.php`` and
each CRM class's ``format_field_value`` filter, wp-fusion-lite 3.47.11). WP Fusion keys the rule on
the *local* field's declared type; crm-bridge has no local field types, so it keys on the type the
CRM's own field list declares (which each adapter already loads to name its fields).

An adapter says what kind each of its CRM's fields is (:data:`FieldKind`, from the field list) and
hands its :class:`FormatRules`; :func:`format_fields` does the rest. A value that does not read as
the kind (a date that is not a date) goes out unchanged, so the CRM's refusal names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import Enum
from typing import Any

# Epoch numbers this large are milliseconds (year 2286 in seconds), as HubSpot's are.
MILLISECONDS_FROM = 10_000_000_000
FALSE_WORDS = frozenset({"", "0", "false", "no", "off", "n", "f"})


class FieldKind(Enum):
    """What a CRM field holds, as far as formatting its value cares."""

    TEXT = "text"
    DATE = "date"  # a calendar day
    DATETIME = "datetime"  # an instant
    CHECKBOX = "checkbox"  # one yes/no value
    MULTI = "multi"  # several choices in one field
    NUMBER = "number"


@dataclass(frozen=True)
class FormatRules:
    """One CRM's way of writing typed values.

    ``date``/``datetime`` render a UTC ``datetime`` (a day comes as midnight UTC);
    ``true``/``false`` are the checkbox values; ``multi_separator`` joins several values into
    one string (None: send them as a JSON list). A list sent to a field that is not ``MULTI``
    is joined with ``list_separator`` (WP Fusion does the same per CRM).
    """

    date: Callable[[datetime], Any]
    datetime: Callable[[datetime], Any]
    true: Any = True
    false: Any = False
    multi_separator: str | None = None
    list_separator: str = ", "


def as_utc_datetime(value: Any) -> datetime | None:
    """A date or instant from what users and CRMs store: ``date``/``datetime`` objects, epoch
    seconds or milliseconds, ISO 8601 strings (``2024-01-30``, ``2024-01-30T10:00:00Z``). None
    when the value is none of these. A naive time is taken as UTC, as WP Fusion takes it."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= MILLISECONDS_FROM else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return as_utc_datetime(int(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            return None
        return as_utc_datetime(parsed)
    return None


def midnight_utc(moment: datetime) -> datetime:
    """The day of ``moment`` (in UTC) at 00:00 UTC: a date field stores a day, not a time."""
    return datetime.combine(moment.date(), time(), tzinfo=UTC)


def is_checked(value: Any) -> bool:
    """A checkbox value as WP Fusion reads it: ``0``, ``"0"``, ``false``, empty are unchecked."""
    if isinstance(value, str):
        return value.strip().lower() not in FALSE_WORDS
    if isinstance(value, list | tuple | set | dict):
        return bool(value)
    return bool(value)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | set):
        return [item for item in value if item not in (None, "")]
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [] if value is None else [value]


def format_value(value: Any, kind: FieldKind, rules: FormatRules) -> Any:
    """``value`` written the way ``rules`` wants a field of ``kind``."""
    if value is None:
        return None
    if kind in (FieldKind.DATE, FieldKind.DATETIME):
        if value == "":
            return value
        moment = as_utc_datetime(value)
        if moment is None:
            return value
        return rules.date(midnight_utc(moment)) if kind is FieldKind.DATE else rules.datetime(moment)
    if kind is FieldKind.CHECKBOX:
        return rules.true if is_checked(value) else rules.false
    if kind is FieldKind.MULTI:
        items = [str(item) for item in _as_list(value)]
        return items if rules.multi_separator is None else rules.multi_separator.join(items)
    if isinstance(value, list | tuple | set):
        return rules.list_separator.join(str(item) for item in value if item not in (None, ""))
    return value


def format_fields(fields: Mapping[str, Any], kinds: Mapping[str, FieldKind], rules: FormatRules) -> dict[str, Any]:
    """Every field's value formatted for its kind (a field the CRM did not list counts as text)."""
    return {name: format_value(value, kinds.get(name, FieldKind.TEXT), rules) for name, value in fields.items()}
