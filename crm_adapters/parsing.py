"""Reading what CRMs send: ids, emails, tag lists, ``Retry-After`` and request bodies, the same
way for every adapter (a CRM sends an id as a number one day and a string the next)."""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from crm_adapters.errors import InvalidPayload

if TYPE_CHECKING:
    from crm_adapters.inbound_request import InboundRequest


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def normalise_email(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return value or None


def split_tags(value: Any) -> list[str]:
    """Tags from a comma-joined string or a list, trimmed, empties dropped, order kept."""
    if value is None:
        return []
    items: Iterable[Any] = value.split(",") if isinstance(value, str) else value
    seen: dict[str, None] = {}
    for item in items:
        name = str(item).strip()
        if name:
            seen.setdefault(name, None)
    return list(seen)


def request_payload(request: InboundRequest) -> Any:
    """The body as data: parsed JSON, else the nested form, else ``{}`` when there is no body.

    A body that is neither JSON nor a form is an ``InvalidPayload``: the CRM sent something we
    cannot read, and guessing would process the wrong contact.
    """
    if request.json is not None:
        return request.json
    if request.form:
        return request.form
    if request.has_body:
        raise InvalidPayload("body is neither JSON nor a form")
    return {}


def stringify_id(value: Any) -> str | None:
    """Contact ids are always strings; numbers arrive as ints, floats or strings.

    Anything else (a list, an object, ``true``, ``NaN``) is an ``InvalidPayload``: stored as
    ``"[1, 2]"`` or ``"True"`` it would link a contact no CRM has.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidPayload("a contact id must be a string or a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidPayload("a contact id must be a finite number")
        if value.is_integer():
            value = int(value)
    return str(value).strip() or None


def redirect_advice(request_url: str, location: str, base_url: str) -> str:
    """What to say about a redirect. Redirects are never followed (a CRM must not steer our
    requests elsewhere), so name where the CRM points and the ``base_url`` that would reach it
    directly: a self-hosted CRM on ``http://`` answering 301 to ``https://`` on the same path
    needs ``base_url`` ``https://…``. Nothing is suggested when the redirect goes elsewhere on
    the same site (a login page)."""
    target_url = urljoin(request_url, location)
    advice = f"redirects to {target_url} (redirects are not followed)"
    base_url = base_url.rstrip("/")
    if not base_url or not request_url.startswith(base_url):
        return advice
    suffix = urlsplit(request_url[len(base_url) :]).path
    target = urlsplit(target_url)
    if suffix and target.path.endswith(suffix):
        path = target.path[: len(target.path) - len(suffix)]
    else:
        path = urlsplit(base_url).path
    suggested = urlunsplit((target.scheme, target.netloc, path.rstrip("/"), "", ""))
    return advice if suggested == base_url else f"{advice}; set base_url to {suggested}"


def json_object(text: str) -> dict[str, Any]:
    """``text`` as a JSON object, else ``{}`` (a dry run reading the body it would send)."""
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
