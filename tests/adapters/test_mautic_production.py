"""Mautic field values written as the field list types them (issue 17, field values)."""

from __future__ import annotations

from adapters import test_mautic as case
from adapters.contract import Exchange, Operation
from adapters.recorded import recorded
from crm_adapters.base import OutboundContact


def test_dates_booleans_and_multiselects_are_written_as_mautic_takes_them() -> None:
    fields = recorded("mautic/contact_fields.json")["json"]
    contact = OutboundContact(
        email="lena@example.de", fields={"birthday": "1990-05-17T22:30:00Z", "newsletter": "yes", "topics": "a, b"}
    )
    operation = Operation(
        "upsert_contact",
        (contact,),
        [
            Exchange("GET", "fields/contact", json=fields),
            Exchange(
                "POST",
                "contacts/new",
                json={"contact": case.LENA},
                sends={"birthday": "1990-05-17", "newsletter": 1, "topics": ["a", "b"], "email": "lena@example.de"},
            ),
        ],
    )
    case.TestMautic().run(operation)
