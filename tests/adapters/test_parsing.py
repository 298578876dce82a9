"""What every adapter reads the same way (``crm_adapters.parsing``), table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from crm_adapters.base import InboundRequest
from crm_adapters.errors import InvalidPayload
from crm_adapters.parsing import normalise_email, parse_retry_after, request_payload, split_tags, stringify_id

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),  # never negative
        ("Tue, 14 Nov 2023 22:14:20 GMT", 60.0),  # an HTTP date, a minute from NOW
        ("Tue, 14 Nov 2023 22:00:00 GMT", 0.0),  # already past
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, "7"), (7.0, "7"), ("  42 ", "42"), ("abc-1", "abc-1"), ("", None), (None, None), ("   ", None)],
)
def test_stringify_id(value: Any, expected: str | None) -> None:
    assert stringify_id(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(" Ada@Example.COM ", "ada@example.com"), ("", None), ("  ", None), (None, None), (42, None)],
)
def test_normalise_email(value: Any, expected: str | None) -> None:
    assert normalise_email(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("vip, gold,,vip ", ["vip", "gold"]), (["a", " b ", "", "a"], ["a", "b"]), (None, []), ("", [])],
)
def test_split_tags_trims_drops_empties_and_keeps_the_first_of_each(value: Any, expected: list[str]) -> None:
    assert split_tags(value) == expected


def test_request_payload_reads_json_then_form_and_refuses_what_is_neither() -> None:
    assert request_payload(InboundRequest("POST", json={"id": 1})) == {"id": 1}
    assert request_payload(InboundRequest("POST", form={"id": "1"})) == {"id": "1"}
    assert request_payload(InboundRequest("POST")) == {}
    with pytest.raises(InvalidPayload):
        request_payload(InboundRequest("POST", body=b"\x00not json"))
