"""Reading what CRMs send: ids, emails, tag lists, ``Retry-After`` and request bodies, the same
way for every adapter (a CRM sends an id as a number one day and a string the next)."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

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
    """Contact ids are always strings; numbers arrive as ints, floats or strings."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() or None
