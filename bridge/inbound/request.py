"""Reading a WP Fusion-style webhook out of an HTTP request (CONTRACT.md §3).

This is the glue between Werkzeug and the adapters: it finds the access key (query, form,
``X-Access-Key`` or ``Authorization: Bearer``), the parameters (query string first, then a form
body), decodes the body (JSON, or a form with PHP bracket keys turned into nested dicts) and
builds the plain :class:`~crm_adapters.base.InboundRequest` adapters read. Nothing here touches
the database, so the async job can rebuild the same request from its stored payload.

Strangers send these bodies before any key is checked, so the work is split in two. Building a
:class:`WebhookCall` only splits a form into its pairs (linear; the access key may be among
them) and notes what is wrong (not UTF-8, more than :data:`MAX_FIELDS` fields, a NUL). Decoding
JSON and nesting PHP bracket keys happen when :attr:`WebhookCall.inbound` is first read, which
the view does only once the key was accepted; both are linear and bounded in depth. Every
refusal is a ``body_error`` the view answers as 400 ``invalid_payload``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from werkzeug.exceptions import RequestEntityTooLarge

from crm_adapters.base import InboundRequest
from crm_adapters.untrusted import UntrustedJsonError, loads_untrusted

ACTIONS = ("test", "add", "update", "update_tags")
# Parameters of the contract; besides the query string they may come in a form body.
PARAMETERS = ("wpf_action", "access_key", "contact_id", "role", "send_notification", "async")
FLAG_PARAMETERS = ("send_notification", "async")
TRUTHY = frozenset({"1", "true", "yes", "on"})
FALSY = frozenset({"0", "false", "no", "off", ""})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_BRACKETS = re.compile(r"\[([^\]]*)\]")
MAX_FIELDS = 1_000  # form fields (pairs or multipart parts) in one body
MAX_FORM_DEPTH = 6  # bracket groups in one form key: data[merges][GROUPINGS][0][groups] has 4
TOO_MANY_FIELDS = f"the body has more than {MAX_FIELDS} form fields"
NUL_REFUSED = "parameters and form fields must not hold NUL characters"


def _encoded(name: str) -> str:
    """A regex for ``name`` as a form may write it: any character may be percent-encoded."""
    return "".join(f"(?:{re.escape(char)}|%{ord(char):02x}|%{ord(char):02X})" for char in name)


# ``access_key=VALUE`` pairs of a form, found without splitting it (for forms refused as too big).
_ACCESS_KEY_PAIR = re.compile(r"(?:^|&)" + _encoded("access_key") + r"=([^&]*)")


class InvalidForm(ValueError):
    """A form body we refuse to nest (keys nested too deep)."""


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
    ``presented_keys`` are the distinct keys the request carried (query, form, headers):
    ``access_key`` is None unless there was exactly one, so disagreeing keys are refused.
    """

    action: str | None
    access_key: str | None
    parameters: dict[str, str]
    method: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    content_type: str
    form_pairs: list[tuple[str, str]] | None = None
    body_error: str | None = None
    presented_keys: tuple[str, ...] = ()
    _inbound: InboundRequest | None = field(default=None, repr=False)

    @property
    def inbound(self) -> InboundRequest:
        """The request as adapters read it. Decodes the body on first use (JSON, or the form
        nested by its PHP bracket keys) and records a refusal in ``body_error``."""
        if self._inbound is None:
            parsed_json: Any = None
            form: dict[str, Any] = {}
            if self.body_error is None:
                try:
                    if self.form_pairs is not None:
                        form = nest_php_keys(self.form_pairs)
                    elif _looks_like_json(self.body, self.content_type):
                        parsed_json = loads_untrusted(self.body.decode("utf-8"))
                except (InvalidForm, UntrustedJsonError) as exc:
                    self.body_error = str(exc)
            self._inbound = InboundRequest(
                method=self.method,
                query=self.query,
                headers=self.headers,
                body=self.body,
                content_type=self.content_type,
                json=parsed_json,
                form={key: value for key, value in form.items() if key != "access_key"},
            )
        return self._inbound

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
    ["a", "b"]}``; a repeated plain key keeps its last value, as PHP does. Linear: each dict
    keeps a count of its numeric keys for the next ``[]`` (counting them per pair was quadratic,
    seconds of an unauthenticated worker for ``t[]=1&t[]=1…``). A key with more than
    :data:`MAX_FORM_DEPTH` bracket groups raises :class:`InvalidForm`.
    """
    root: dict[str, Any] = {}
    numeric: dict[int, int] = {}  # id(dict) -> how many digit keys it holds
    for raw_key, value in pairs:
        head, _, rest = raw_key.partition("[")
        if not head or (rest and not raw_key.endswith("]")):
            root[raw_key] = value
            continue
        path = [head, *_BRACKETS.findall("[" + rest)] if rest else [head]
        if len(path) > MAX_FORM_DEPTH + 1:
            raise InvalidForm(f"form keys may nest at most {MAX_FORM_DEPTH} levels deep")
        node: dict[str, Any] = root
        for depth, part in enumerate(path):
            if part == "":
                part = str(numeric.get(id(node), 0))
            if part.isdigit() and part not in node:
                numeric[id(node)] = numeric.get(id(node), 0) + 1
            if depth == len(path) - 1:
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


def _looks_like_json(body: bytes, content_type: str) -> bool:
    kind = media_type(content_type)
    return "json" in kind or ((not kind or kind == "text/plain") and body.lstrip()[:1] in (b"{", b"["))


def split_form(body: bytes, content_type: str) -> tuple[list[tuple[str, str]] | None, str | None]:
    """(form pairs or None, error) for a raw body: the cheap first step, before the key check.

    A form is read when the content type is urlencoded (or absent and the body looks like
    ``a=b&c=d``); JSON and other bodies give no pairs here. Splitting is linear, so even an
    oversized form is split (its access key may be in it); the error then says why it is refused.
    """
    stripped = body.strip()
    if not stripped:
        return None, None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, "body is not UTF-8 text"
    if _looks_like_json(body, content_type):
        return None, None
    kind = media_type(content_type)
    if kind == "application/x-www-form-urlencoded" or (not kind and "=" in text):
        if text.count("&") >= MAX_FIELDS:  # refused anyway: only its access keys are read
            return _access_keys_in(text), TOO_MANY_FIELDS
        try:
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return None, "body is not a valid form"
        return pairs, _form_error(pairs)
    return None, None


def _access_keys_in(text: str) -> list[tuple[str, str]]:
    """The ``access_key`` pairs of a form too large to parse. The pattern tries its encoded
    alternatives at every character (milliseconds for a 300 KB form): a form that neither
    names the key plainly nor encodes anything cannot hold one, which a substring search says."""
    if "access_key" not in text and "%" not in text:
        return []
    return [("access_key", unquote_plus(value)) for value in _ACCESS_KEY_PAIR.findall(text)]


def _form_error(pairs: Sequence[tuple[str, str]]) -> str | None:
    if len(pairs) > MAX_FIELDS:
        return TOO_MANY_FIELDS
    if any("\x00" in name or "\x00" in value for name, value in pairs):
        return NUL_REFUSED
    return None


def access_key_from(parameters: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The key from the query or form, else ``X-Access-Key``, else ``Authorization: Bearer``."""
    key = parameters.get("access_key") or headers.get("x-access-key")
    if not key:
        key = _bearer(headers)
    key = (key or "").strip()
    return key or None


def _bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token if scheme.lower() == "bearer" else None


def presented_keys(candidates: Iterable[str | None]) -> tuple[str, ...]:
    """The distinct non-empty keys among ``candidates``, in order."""
    seen: dict[str, None] = {}
    for candidate in candidates:
        key = (candidate or "").strip()
        if key:
            seen.setdefault(key, None)
    return tuple(seen)


def build_call(
    *,
    method: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    content_type: str,
    form_pairs: list[tuple[str, str]] | None = None,
    form_error: str | None = None,
    query_keys: Sequence[str] | None = None,
) -> WebhookCall:
    """Build a :class:`WebhookCall` from plain request parts (``form_pairs`` for multipart
    bodies Werkzeug already parsed, ``form_error`` when it refused one; ``query_keys`` every
    ``access_key`` of the query string). Query-string parameters win over form ones. The body is
    only split here, not decoded: see the module docstring."""
    lowered_headers = {name.lower(): value for name, value in headers.items()}
    if form_pairs is not None or form_error is not None:
        pairs, error = form_pairs, form_error or _form_error(form_pairs or [])
    else:
        pairs, error = split_form(body, content_type)
    parameters: dict[str, str] = {}
    for name, value in pairs or ():
        if name in PARAMETERS:
            parameters[name] = value
    for name in PARAMETERS:
        if name in query:
            parameters[name] = query[name]
    if error is None and any("\x00" in name or "\x00" in value for name, value in query.items()):
        error = NUL_REFUSED
    adapter_query = {name: value for name, value in query.items() if name != "access_key"}
    for name in PARAMETERS:
        if name in parameters and name not in adapter_query and name != "access_key":
            adapter_query[name] = parameters[name]
    keys = presented_keys(
        [
            *(query_keys if query_keys is not None else [query.get("access_key")]),
            *(value for name, value in pairs or () if name == "access_key"),
            lowered_headers.get("x-access-key"),
            _bearer(lowered_headers),
        ]
    )
    action = (parameters.get("wpf_action") or "").strip().lower() or None
    return WebhookCall(
        action=action,
        access_key=keys[0] if len(keys) == 1 else None,
        parameters={k: v for k, v in parameters.items() if k != "access_key"},
        method=method.upper(),
        query=adapter_query,
        headers=lowered_headers,
        body=body,
        content_type=content_type,
        form_pairs=pairs,
        body_error=error,
        presented_keys=keys,
    )


def call_from_flask(flask_request: Any, body: bytes) -> WebhookCall:
    """The :class:`WebhookCall` for the current Flask request (``body`` already read).

    Werkzeug refuses a multipart body of more than ``MAX_FORM_PARTS`` (1,000) parts with a 413;
    here that is a form with too many fields (the body's size was already checked), and its
    access key, if it was in the body, is not read.
    """
    environ = flask_request.environ
    content_type = environ.get("CONTENT_TYPE", "")
    form_pairs, form_error = None, None
    if media_type(content_type) == "multipart/form-data":
        try:
            form_pairs = list(flask_request.form.items(multi=True))
        except RequestEntityTooLarge:
            form_error = TOO_MANY_FIELDS
    return build_call(
        method=flask_request.method,
        query=flask_request.args.to_dict(flat=True),
        headers=headers_from_environ(environ),
        body=body,
        content_type=content_type,
        form_pairs=form_pairs,
        form_error=form_error,
        query_keys=flask_request.args.getlist("access_key"),
    )


def headers_from_environ(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers by lower-cased name, as Werkzeug's ``request.headers`` lists them
    (``Content-Type`` and ``Content-Length`` when not empty, then every ``HTTP_*`` variable but
    those two). Read from the WSGI environ at once: listing ``request.headers`` resumes a
    generator per header and title-cases each name only to have it lower-cased here again."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            if key != "HTTP_CONTENT_TYPE" and key != "HTTP_CONTENT_LENGTH":
                headers[key[5:].replace("_", "-").lower()] = value
        elif (key == "CONTENT_TYPE" or key == "CONTENT_LENGTH") and value:
            headers[key.replace("_", "-").lower()] = value
    return headers
