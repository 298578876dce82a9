"""The one adapter contract suite (django-anymail style): every CRM's test module subclasses
:class:`AdapterContract` and only declares data in an :class:`AdapterCase`: the shared payload
fixtures it must parse, extra inbound samples, and the API exchanges (shaped after the CRM's
real API: status codes, error bodies, pagination) each operation must make, in order.

Mocks use ``responses`` with an ordered registry, so an operation that makes a request the case
did not declare, skips one, or sends a body without the declared content fails.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs, parse_qsl

import pytest
import responses
from responses import matchers
from responses.registries import OrderedRegistry
from support import FIXTURES

from bridge.connections.adapter_registry import adapter_class
from bridge.outbound.client import OutboundClient, OutboundPolicy
from crm_adapters.base import Adapter, Contact, InboundRequest
from crm_adapters.errors import (
    AuthRefused,
    ContactNotFound,
    CrmUnavailable,
    InvalidPayload,
    InvalidSignature,
    MissingContactId,
    RateLimited,
)

REQUIRED_OPERATIONS = (
    "check",
    "find_contact_id",
    "find_contact_id_missing",
    "load_contact",
    "load_contact_missing",
    "load_tags",
    "upsert_new",
    "upsert_existing",
    "update_fields_custom",
    "apply_tags",
    "remove_tags",
    "list_tags",
    "list_fields",
)
# Setting names that hold secrets (CONTRACT.md §2): they must be declared secret=True.
SECRET_SETTING_NAMES = frozenset(
    {"app_password", "access_token", "refresh_token", "client_secret", "api_key", "password", "webhook_secret"}
)
UNSET = object()


@dataclass
class Exchange:
    """One request the operation must make and the CRM's answer to it."""

    method: str
    path: str  # appended to the case's ``api``; an absolute URL is used as is
    status: int = 200
    json: Any = None
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] | None = None  # query parameters the request must carry (subset)
    sends: Any = None  # JSON body (recursive subset) or form fields ({name: value | [values]})


@dataclass
class Operation:
    """Call ``method(*args)``; expect ``returns`` (UNSET: don't compare) or ``raises``."""

    method: str
    args: tuple[Any, ...]
    exchanges: list[Exchange]
    returns: Any = UNSET
    raises: type[Exception] | None = None
    check: Callable[[Any], None] | None = None  # extra assertions on the result


@dataclass
class Sample:
    """An inbound request and what the adapter must read from it (the fixtures' ``expect``)."""

    name: str
    request: InboundRequest
    expect: dict[str, Any]


@dataclass
class AdapterCase:
    type: str
    config: dict[str, Any]
    api: str
    auth_header: tuple[str, str]  # header every API request carries, e.g. ("Api-Token", "k")
    fixtures: list[str]  # paths under shared/fixtures
    operations: dict[str, Operation]
    samples: list[Sample] = field(default_factory=list)
    pings: list[InboundRequest] = field(default_factory=list)  # verification pings (Mailchimp)
    # For adapters that verify signatures: the settings that turn checking on, and
    # (description, request factory, accepted?) checked with them.
    signing_config: dict[str, Any] = field(default_factory=dict)
    signed_requests: list[tuple[str, Callable[[], InboundRequest], bool]] = field(default_factory=list)
    retry_after_header: tuple[str, float] = ("7", 7.0)  # Retry-After value → seconds expected


# -- helpers ----------------------------------------------------------------------------------


def includes(*items: str) -> Callable[[Any], None]:
    """A result check: the returned list holds at least these items."""

    def check(result: Any) -> None:
        missing = set(items) - set(result)
        assert not missing, f"{missing} missing from {result!r}"

    return check


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def php_form(body: str) -> dict[str, Any]:
    """``contact[tags]=a&x[]=1`` → nested dicts and lists, as the inbound view hands them over."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node: Any = result
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "":
                node.append(value)
                break
            if last:
                node[part] = value
            else:
                nxt_is_list = parts[index + 1] == ""
                node = node.setdefault(part, [] if nxt_is_list else {})
    return result


def inbound(
    method: str = "POST",
    *,
    query: Mapping[str, str] | None = None,
    body: str = "",
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
    url: str = "",
) -> InboundRequest:
    """An InboundRequest as the inbound view builds it (JSON parsed, forms nested)."""
    content_type = content_type or ""
    parsed_json = None
    form: dict[str, Any] = {}
    if body and "json" in content_type:
        try:
            parsed_json = json.loads(body)
        except ValueError:
            parsed_json = None
    elif body and "x-www-form-urlencoded" in content_type:
        form = php_form(body)
    return InboundRequest(
        method=method,
        query=dict(query or {}),
        headers={k.lower(): v for k, v in (headers or {}).items()},
        body=body.encode(),
        content_type=content_type,
        json=parsed_json,
        form=form,
        url=url,
    )


def fixture_request(relative: str) -> tuple[InboundRequest, dict[str, Any]]:
    data = json.loads((FIXTURES / relative).read_text())
    query = {k: v for k, v in data.get("query", {}).items() if k != "wpf_action"}
    request = inbound(data["method"], query=query, body=data.get("body") or "", content_type=data.get("content_type"))
    return request, data["expect"]


def is_subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(k in actual and is_subset(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(is_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return expected == actual


def body_matcher(expected: Any) -> Callable[[Any], tuple[bool, str]]:
    def match(request: Any) -> tuple[bool, str]:
        raw = request.body or b""
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if "json" in (request.headers.get("Content-Type") or ""):
            actual: Any = json.loads(text or "null")
            ok = is_subset(expected, actual)
        else:
            actual = parse_qs(text, keep_blank_values=True)
            wanted = {k: v if isinstance(v, list) else [v] for k, v in expected.items()}
            ok = all(actual.get(k) == v for k, v in wanted.items())
        return ok, "" if ok else f"body {actual!r} does not contain {expected!r}"

    return match


def assert_contact_matches(contact: Contact, expect: Mapping[str, Any], *, contact_id: str | None = None) -> None:
    assert contact.contact_id == (contact_id or expect.get("contact_id"))
    assert isinstance(contact.contact_id, str)
    assert contact.email == expect["email"]
    assert contact.fields == expect["fields"]
    assert contact.tags == expect["tags"]


# -- the suite --------------------------------------------------------------------------------


class AdapterContract:
    """Subclass with ``case = AdapterCase(...)``: every test below runs for that adapter."""

    case: ClassVar[AdapterCase]

    def adapter(self, **overrides: Any) -> Adapter:
        http = OutboundClient(policy=OutboundPolicy(allow_private=True))
        return adapter_class(self.case.type)({**self.case.config, **overrides}, http)

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.case.api + path

    def mock(self, rsps: responses.RequestsMock, exchanges: list[Exchange]) -> None:
        name, value = self.case.auth_header
        for exchange in exchanges:
            match: list[Any] = [matchers.header_matcher({name: value}, strict_match=False)]
            if exchange.params is not None:
                match.append(matchers.query_param_matcher(exchange.params, strict_match=False))
            if exchange.sends is not None:
                match.append(body_matcher(exchange.sends))
            kwargs: dict[str, Any] = {"status": exchange.status, "headers": exchange.headers, "match": match}
            if exchange.body is not None:
                kwargs["body"] = exchange.body
            elif exchange.json is not None:
                kwargs["json"] = exchange.json
            rsps.add(exchange.method, self.url(exchange.path), **kwargs)

    def run(self, operation: Operation, **overrides: Any) -> Any:
        with responses.RequestsMock(registry=OrderedRegistry, assert_all_requests_are_fired=True) as rsps:
            self.mock(rsps, operation.exchanges)
            target = getattr(self.adapter(**overrides), operation.method)
            if operation.raises:
                with pytest.raises(operation.raises) as info:
                    target(*operation.args)
                return info.value
            return target(*operation.args)

    # -- registration and declaration --

    def test_case_declares_every_operation(self) -> None:
        assert set(REQUIRED_OPERATIONS) <= set(self.case.operations)

    def test_settings_are_declared_and_documented(self) -> None:
        adapter_type = adapter_class(self.case.type)
        docs = (sys.modules[adapter_type.__module__].__doc__ or "") + (adapter_type.__doc__ or "")
        assert "https://" in docs, "the docstring links the API docs it follows"
        for setting in adapter_type.settings:
            assert f"``{setting.name}``" in docs, f"{setting.name} is documented in the docstring"
            if setting.name in SECRET_SETTING_NAMES:
                assert setting.secret, f"{setting.name} must be secret=True"

    # -- inbound --

    def test_every_fixture_parses_to_its_expect_block(self, fixture_path: str) -> None:
        request, expect = fixture_request(fixture_path)
        adapter = self.adapter()
        assert not adapter.handles_verification_ping(request)
        adapter.verify(request)
        contacts = adapter.parse(request)
        if "contact_ids" in expect:
            assert [c.contact_id for c in contacts] == expect["contact_ids"]
            for contact in contacts:
                assert_contact_matches(contact, expect, contact_id=contact.contact_id)
        else:
            assert len(contacts) == 1
            assert_contact_matches(contacts[0], expect)

    def test_samples_parse_to_their_expect_block(self) -> None:
        for sample in self.case.samples:
            contacts = self.adapter().parse(sample.request)
            if "contact_ids" in sample.expect:
                assert [c.contact_id for c in contacts] == sample.expect["contact_ids"], sample.name
                for contact, expected in zip(contacts, sample.expect.get("each", []), strict=False):
                    assert_contact_matches(contact, expected, contact_id=contact.contact_id)
            else:
                assert len(contacts) == 1, sample.name
                assert_contact_matches(contacts[0], sample.expect)

    def test_query_contact_id_wins_over_the_body(self) -> None:
        singles = [p for p in self.case.fixtures if "contact_ids" not in fixture_request(p)[1]]
        request, _ = fixture_request(singles[0])
        request.query = {**request.query, "contact_id": "98765"}
        assert [c.contact_id for c in self.adapter().parse(request)] == ["98765"]

    def test_query_only_request_names_the_contact(self) -> None:
        contacts = self.adapter().parse(inbound("POST", query={"contact_id": "555"}))
        assert [(c.contact_id, c.email, c.tags) for c in contacts] == [("555", None, None)]

    def test_unreadable_body_is_invalid_payload(self) -> None:
        with pytest.raises(InvalidPayload):
            self.adapter().parse(inbound("POST", body="{not json", content_type="application/json"))

    def test_no_contact_id_anywhere_is_missing_contact_id(self) -> None:
        with pytest.raises(MissingContactId):
            self.adapter().parse(inbound("POST", body="{}", content_type="application/json"))

    def test_verification_pings(self) -> None:
        adapter = self.adapter()
        for request in self.case.pings:
            assert adapter.handles_verification_ping(request)
        assert not adapter.handles_verification_ping(inbound("POST", query={"contact_id": "1"}))

    def test_signatures(self) -> None:
        signs = "signed_webhooks" in adapter_class(self.case.type).capabilities
        assert signs == bool(self.case.signing_config) == bool(self.case.signed_requests)
        adapter = self.adapter(**self.case.signing_config)
        for description, make_request, accepted in self.case.signed_requests:
            request = make_request()
            if accepted:
                adapter.verify(request)
            else:
                with pytest.raises(InvalidSignature):
                    adapter.verify(request)
                    pytest.fail(f"accepted: {description}")
            self.adapter().verify(request)  # without a signing secret nothing is checked

    # -- API --

    @pytest.mark.parametrize("name", REQUIRED_OPERATIONS)
    def test_operation(self, name: str) -> None:
        operation = self.case.operations[name]
        result = self.run(operation)
        if operation.returns is not UNSET:
            assert result == operation.returns
        if operation.check:
            operation.check(result)

    def test_missing_contact_is_contact_not_found(self) -> None:
        assert isinstance(self.run(self.case.operations["load_contact_missing"]), ContactNotFound)

    def _first_request_answering(self, status: int, headers: dict[str, str], body: str) -> Exception:
        first = self.case.operations["load_contact"].exchanges[0]
        failing = Exchange(first.method, first.path, status=status, headers=headers, body=body)
        op = self.case.operations["load_contact"]
        return self.run(Operation(op.method, op.args, [failing], raises=Exception))

    def test_refused_credentials_are_auth_refused(self) -> None:
        error = self._first_request_answering(401, {}, '{"message":"Unauthorized"}')
        assert isinstance(error, AuthRefused)
        assert not error.retryable
        assert error.status == 401

    def test_rate_limit_carries_retry_after(self) -> None:
        header, seconds = self.case.retry_after_header
        error = self._first_request_answering(429, {"Retry-After": header}, '{"message":"Too many requests"}')
        assert isinstance(error, RateLimited)
        assert error.retryable
        assert error.retry_after == pytest.approx(seconds)

    def test_rate_limit_without_retry_after(self) -> None:
        error = self._first_request_answering(429, {}, "")
        assert isinstance(error, RateLimited)
        assert error.retry_after is None

    def test_server_error_is_retryable_unavailable(self) -> None:
        error = self._first_request_answering(503, {"Content-Type": "text/html"}, "<html>down</html>")
        assert isinstance(error, CrmUnavailable)
        assert error.retryable
        assert "down" in (error.body or "")

    def test_empty_tag_lists_send_nothing(self) -> None:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            adapter = self.adapter()
            adapter.apply_tags("11", [])
            adapter.remove_tags("11", [])
            assert len(rsps.calls) == 0
