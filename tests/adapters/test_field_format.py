"""The shared field formatter: reading dates and checkboxes the way WP Fusion reads them."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from crm_adapters.field_format import FieldKind, FormatRules, as_utc_datetime, format_fields

RULES = FormatRules(date=lambda m: m.strftime("%Y-%m-%d"), datetime=lambda m: m.isoformat(), true="Y", false="N")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-01-30", datetime(2025, 1, 30, tzinfo=UTC)),
        ("2025-01-30T10:15:00Z", datetime(2025, 1, 30, 10, 15, tzinfo=UTC)),
        ("2025-01-30T12:15:00+02:00", datetime(2025, 1, 30, 10, 15, tzinfo=UTC)),
        (1738232100, datetime(2025, 1, 30, 10, 15, tzinfo=UTC)),
        ("1738232100000", datetime(2025, 1, 30, 10, 15, tzinfo=UTC)),  # milliseconds
        (date(2025, 1, 30), datetime(2025, 1, 30, tzinfo=UTC)),
        ("next tuesday", None),
        (True, None),
    ],
)
def test_dates_are_read_from_what_users_and_crms_store(value, expected) -> None:
    assert as_utc_datetime(value) == expected


def test_values_follow_their_kind_and_unreadable_ones_pass_unchanged() -> None:
    kinds = {"d": FieldKind.DATE, "c": FieldKind.CHECKBOX, "off": FieldKind.CHECKBOX, "m": FieldKind.MULTI}
    fields = {"d": "2025-01-30T23:59:00Z", "c": "yes", "off": "0", "m": "a, b", "bad": ["x", None, "y"], "t": "text"}
    assert format_fields(fields, kinds, RULES) == {
        "d": "2025-01-30",
        "c": "Y",
        "off": "N",
        "m": ["a", "b"],
        "bad": "x, y",
        "t": "text",
    }
    assert format_fields({"d": "someday", "e": None}, {"d": FieldKind.DATE}, RULES) == {"d": "someday", "e": None}
