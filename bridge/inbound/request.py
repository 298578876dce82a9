"""Reading a WP Fusion-style webhook out of an HTTP request (CONTRACT.md §3).

This is the glue between Werkzeug and the adapters: it finds the access key (query, form,
``X-Access-Key`` or ``Authorization: Bearer``), the parameters (query string first, then a form
body), decodes the body (JSON, or a form with PHP bracket keys turned into nested dicts) and
builds the plain :class:`~crm_adapters.base.InboundRequest` adapters read. Nothing here touches
the database, so the async job can rebuild the same request from its stored payload.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from crm_adapters.base import InboundRequest

ACTIONS = ("test", "add", "update", "update_tags")
# Parameters of the contract; besides the query string they may come in a form body.
PARAMETERS = ("wpf_action", "access_key", "contact_id", "role", "send_notification", "async")
FLAG_PARAMETERS = ("send_notification", "async")
TRUTHY = frozenset({"1", "true", "yes", "on"})
FALSY = frozenset({"0", "false", "no", "off", ""})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_BRACKETS = re.compile(r"\[([^\]]*)\]")


class InvalidParameter(ValueError):
    """A contract parameter has a value we cannot read (``send_notification=maybe``)."""


@dataclass(frozen=True)
class InboundOptions:
    """The parameters that change how a webhook is processed (None: not given)."""

    role: str | None = None
    send_notification: bool | None = None
    run_async: bool = False


@dataclass
class WebhookCall:
    """Everything the view learned from one HTTP request, before any database work.

    ``body_error`` is set when the body could not be decoded: reported as ``invalid_payload``
    only once the key and action were checked, so a wrong key still gets its 403.
    """

    action: str | None
    access_key: str | None
    parameters: dict[str, str]
    inbound: InboundRequest
    body_error: str | None = None

    def options(self) -> InboundOptions:
        """The processing options. Raises :class:`InvalidParameter`."""
        role = (self.parameters.get("role") or "").strip() or None
        return InboundOptions(
            role=role,
            send_notification=parse_flag("send_notification", self.parameters.get("send_notification")),
            run_async=bool(parse_flag("async", self.parameters.get("async"))),
        )


def parse_flag(name: str, value: str | None) -> bool | None:
    """``1 true yes on`` → True; ``0 false no off`` and empty → False; absent → None."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in TRUTHY:
        return True
    if lowered in FALSY:
        return False
    raise InvalidParameter(f"{name} must be one of 1, true, yes, on, 0, false, no, off")


def nest_php_keys(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Form pairs with PHP bracket keys as nested dicts, the way PHP's ``$_POST`` reads them.

    ``contact[id]=3`` → ``{"contact": {"id": "3"}}``; ``tags[]=a&tags[]=b`` → ``{"tags":
    ["a", "b"]}``; a repeated plain key keeps its last value, as PHP does.
    """
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        head, _, rest = raw_key.partition("[")
        if not head or (rest and not raw_key.endswith("]")):
            root[raw_key] = value
            continue
        path = [head, *_BRACKETS.findall("[" + rest)] if rest else [head]
        node: dict[str, Any] = root
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            if part == "":
                part = str(sum(1 for key in node if key.isdigit()))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return _lists_from_indexes(root)


def _lists_from_indexes(node: Any) -> Any:
    """``{"0": a, "1": b}`` (from ``x[]=a&x[]=b`` or ``x[0]=a``) becomes ``[a, b]``."""
    if not isinstance(node, dict):
        return node
    converted = {key: _lists_from_indexes(value) for key, value in node.items()}
    if converted and all(key == str(index) for index, key in enumerate(converted)):
        return list(converted.values())
    return converted


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def decode_body(body: bytes, content_type: str) -> tuple[Any, dict[str, Any], list[tuple[str, str]], str | None]:
    """(json, nested form, flat form pairs, error) for a raw body.

    JSON is read when the content type says so or the body starts like JSON; a form when the
    content type is urlencoded (or absent and the body looks like ``a=b&c=d``).
    """
    kind = media_type(content_type)
    stripped = body.strip()
    if not stripped:
        return None, {}, [], None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, {}, [], "body is not UTF-8 text"
    if "json" in kind or ((not kind or kind == "text/plain") and stripped[:1] in (b"{", b"[")):
        try:
            return json.loads(text), {}, [], None
        except ValueError as exc:
            return None, {}, [], f"body is not valid JSON ({exc.msg} at position {exc.pos})"
    if kind == "application/x-www-form-urlencoded" or (not kind and "=" in text):
        try:
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return None, {}, [], "body is not a valid form"
        return None, nest_php_keys(pairs), pairs, None
    return None, {}, [], None


def access_key_from(parameters: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The key from the query or form, else ``X-Access-Key``, else ``Authorization: Bearer``."""
    key = parameters.get("access_key") or headers.get("x-access-key")
    if not key:
        authorization = headers.get("authorization") or ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            key = token
    key = (key or "").strip()
    return key or None


def build_call(
    *,
    method: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    content_type: str,
    form_pairs: list[tuple[str, str]] | None = None,
) -> WebhookCall:
    """Build a :class:`WebhookCall` from plain request parts (``form_pairs`` for multipart
    bodies Werkzeug already parsed). Query-string parameters win over form ones."""
    lowered_headers = {name.lower(): value for name, value in headers.items()}
    if form_pairs is not None:
        parsed_json, form, pairs, error = None, nest_php_keys(form_pairs), form_pairs, None
    else:
        parsed_json, form, pairs, error = decode_body(body, content_type)
    parameters: dict[str, str] = {}
    for name, value in pairs:
        if name in PARAMETERS:
            parameters[name] = value
    for name in PARAMETERS:
        if name in query:
            parameters[name] = query[name]
    adapter_query = {name: value for name, value in query.items() if name != "access_key"}
    for name in PARAMETERS:
        if name in parameters and name not in adapter_query and name != "access_key":
            adapter_query[name] = parameters[name]
    inbound = InboundRequest(
        method=method.upper(),
        query=adapter_query,
        headers=lowered_headers,
        body=body,
        content_type=content_type,
        json=parsed_json,
        form={key: value for key, value in form.items() if key != "access_key"},
    )
    action = (parameters.get("wpf_action") or "").strip().lower() or None
    return WebhookCall(
        action=action,
        access_key=access_key_from(parameters, lowered_headers),
        parameters={k: v for k, v in parameters.items() if k != "access_key"},
        inbound=inbound,
        body_error=error,
    )


def call_from_flask(flask_request: Any, body: bytes) -> WebhookCall:
    """The :class:`WebhookCall` for the current Flask request (``body`` already read)."""
    content_type = flask_request.headers.get("Content-Type", "")
    form_pairs = None
    if media_type(content_type) == "multipart/form-data":
        form_pairs = list(flask_request.form.items(multi=True))
    return build_call(
        method=flask_request.method,
        query=flask_request.args.to_dict(flat=True),
        headers=dict(flask_request.headers.items()),
        body=body,
        content_type=content_type,
        form_pairs=form_pairs,
    )
