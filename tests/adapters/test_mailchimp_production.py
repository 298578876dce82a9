"""Mailchimp held against the production API (issue 17, item 8 and field values): an email change
re-keys the member, and merge-field values are written as their types say."""

from __future__ import annotations

from adapters import test_mailchimp as case
from adapters.contract import Exchange, Operation
from adapters.recorded import recorded
from crm_adapters.mailchimp import subscriber_hash

CHANGED = recorded("mailchimp/member_email_changed.json")
NEW_EMAIL = CHANGED["json"]["email_address"]
NEW_ID = subscriber_hash(NEW_EMAIL)


def run(operation: Operation) -> object:
    return case.TestMailchimp().run(operation)


def test_an_email_change_returns_the_members_new_id() -> None:
    answer = {**CHANGED["json"], "id": NEW_ID}
    operation = Operation(
        "update_fields",
        (case.KIM, {"email": NEW_EMAIL}),
        [Exchange("PATCH", case.MEMBERS, json=answer, sends={"email_address": NEW_EMAIL})],
    )
    assert run(operation) == NEW_ID


def test_an_update_that_keeps_the_email_keeps_the_id() -> None:
    operation = Operation(
        "update_fields", (case.KIM, {"first_name": "K"}), [Exchange("PATCH", case.MEMBERS, json=case.MEMBER)]
    )
    assert run(operation) is None


def test_the_old_id_after_an_email_change_is_not_found() -> None:
    from crm_adapters.errors import ContactNotFound

    operation = Operation(
        "update_fields",
        (case.KIM, {"first_name": "K"}),
        [Exchange("PATCH", case.MEMBERS, status=404, json=CHANGED["not_found"])],
        raises=ContactNotFound,
    )
    run(operation)


def test_date_merge_fields_are_written_month_day_year() -> None:
    merge_fields = recorded("mailchimp/merge_fields.json")["json"]
    operation = Operation(
        "update_fields",
        (case.KIM, {"SIGNUP": "2025-01-30T10:15:00Z", "TOPICS": ["news", "offers"]}),
        [
            Exchange("GET", "/lists/a6b5da1054/merge-fields", json=merge_fields),
            Exchange(
                "PATCH",
                case.MEMBERS,
                json=case.MEMBER,
                sends={"merge_fields": {"SIGNUP": "01/30/2025", "TOPICS": "news, offers"}},
            ),
        ],
    )
    run(operation)
