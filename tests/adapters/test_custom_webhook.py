"""custom_webhook in the shared adapter contract suite.

The data is declared once, in tests/custom_webhook/test_contract_data.py (where it is also run
against the adapter directly); here it is turned into an AdapterCase. A custom webhook is a
one-way endpoint, so the failure-mapping tests use its one real request (``upsert_new``)
instead of ``load_contact``, and the inbound checks use its generic-JSON samples instead of a
CRM's shared fixtures.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from adapters.contract import (
    UNSET,
    AdapterCase,
    AdapterContract,
    Exchange,
    Operation,
    Sample,
    inbound,
)
from crm_adapters.errors import AuthRefused, CrmUnavailable, RateLimited

_path = Path(__file__).resolve().parents[1] / "custom_webhook" / "test_contract_data.py"
_spec = importlib.util.spec_from_file_location("custom_webhook_contract_data", _path)
assert _spec and _spec.loader
_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_data)
CASE: dict[str, Any] = _data.CASE


def _operation(spec: dict[str, Any]) -> Operation:
    exchanges = [
        Exchange(e["method"], e["path"].lstrip("/"), status=e["status"], json=e["json"], sends=e.get("sends"))
        for e in spec["exchanges"]
    ]
    return Operation(
        spec["method"],
        tuple(spec["args"]),
        exchanges,
        returns=spec.get("returns", UNSET) if not spec.get("raises") else UNSET,
        raises=spec.get("raises"),
    )


class TestCustomWebhook(AdapterContract):
    case = AdapterCase(
        type=CASE["type"],
        config=CASE["config"],
        api=CASE["api"] + "/",
        auth_header=CASE["auth_header"],
        fixtures=[],
        operations={name: _operation(spec) for name, spec in CASE["operations"].items()},
        samples=[Sample(s["name"], s["request"], s["expect"]) for s in CASE["samples"]],
    )

    def test_every_fixture_parses_to_its_expect_block(self) -> None:  # type: ignore[override]
        """No CRM-specific shared fixture exists for a generic webhook: its samples stand in."""
        for sample in self.case.samples:
            (contact,) = self.adapter().parse(sample.request)
            assert contact.contact_id == sample.expect["contact_id"]

    def test_samples_parse_to_their_expect_block(self) -> None:
        for sample in self.case.samples:
            (contact,) = self.adapter().parse(sample.request)
            expect = sample.expect
            assert (contact.contact_id, contact.email, contact.tags) == (
                expect["contact_id"],
                expect["email"],
                expect["tags"],
            ), sample.name
            for key, value in expect.get("fields", {}).items():
                assert contact.fields.get(key) == value

    def test_query_contact_id_wins_over_the_body(self) -> None:
        request = self.case.samples[0].request
        request.query = {**request.query, "contact_id": "98765"}
        assert [c.contact_id for c in self.adapter().parse(request)] == ["98765"]

    def _first_request_answering(self, status: int, headers: dict[str, str], body: str) -> Exception:
        upsert = self.case.operations["upsert_new"]
        first = upsert.exchanges[0]
        failing = Exchange(first.method, first.path, status=status, headers=headers, body=body)
        return self.run(Operation(upsert.method, upsert.args, [failing], raises=Exception))

    def test_failures_are_typed(self) -> None:
        assert isinstance(self._first_request_answering(401, {}, "{}"), AuthRefused)
        assert isinstance(self._first_request_answering(429, {"Retry-After": "7"}, ""), RateLimited)
        assert isinstance(self._first_request_answering(503, {}, "down"), CrmUnavailable)


def test_generic_inbound_without_id_is_refused() -> None:
    from crm_adapters.errors import MissingContactId

    adapter = TestCustomWebhook().adapter()
    with pytest.raises(MissingContactId):
        adapter.parse(inbound("POST", body='{"email": "x@example.com"}', content_type="application/json"))
