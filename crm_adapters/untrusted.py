"""Reading JSON that strangers send (the WP Fusion endpoint, ``/webhooks/crm/lead``): beside
``parsing.py`` because it is about what CRMs (and anyone posing as one) send, and it imports
nothing, so ``bridge.inbound`` and ``bridge.accounts`` both use it.

``json.loads`` alone accepts things that later break us: nesting thousands deep (a
``RecursionError`` in the parser or in any later walk: a 500), a lone surrogate ``"\\ud800"``
(no UTF-8 encoding exists, so the database refuses the row, the log row included), a NUL
``"\\u0000"`` (PostgreSQL refuses it in any text or JSON column) and ``NaN``/``Infinity``
(not JSON; PostgreSQL's JSON types refuse them). :func:`loads_untrusted` refuses all of them
with :class:`UntrustedJsonError`, in time linear in the text: the string walk runs only when the
text holds a ``\\u`` escape that can produce one of them, and the depth walk only when the text
holds more brackets than the allowed depth.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_JSON_DEPTH = 32
# The only escapes that decode to a NUL or a surrogate (backslash runs are checked in the walk).
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class UntrustedJsonError(ValueError):
    """The text is not JSON we accept; the message says why (safe to show the sender)."""


def _refuse_constant(name: str) -> Any:
    raise UntrustedJsonError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)  # one for all: json.loads(**kw) builds one a call


def loads_untrusted(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for bodies from the network; raises :class:`UntrustedJsonError`."""
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise UntrustedJsonError(f"JSON nested deeper than {max_depth} levels") from None
    except UntrustedJsonError:
        raise
    except ValueError as exc:
        position = f" at position {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise UntrustedJsonError(f"body is not valid JSON ({message}{position})") from None
    if text.count("[") + text.count("{") > max_depth and _deeper_than(value, max_depth):
        raise UntrustedJsonError(f"JSON nested deeper than {max_depth} levels")
    if _RISKY_ESCAPE.search(text) and _has_unstorable_string(value):
        raise UntrustedJsonError("JSON strings must not hold NUL characters or lone surrogates")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def unstorable(text: str) -> bool:
    """Whether ``text`` holds a NUL or a lone surrogate (no database stores those)."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _has_unstorable_string(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if unstorable(node):
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def storable(text: str | None) -> str | None:
    """``text`` with NULs and lone surrogates escaped (``\\u0000``, ``\\ud800``), so a log row
    that quotes hostile input is never refused by the database."""
    if text is None or not unstorable(text):
        return text
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")
