"""Scrubbing secrets out of anything we log or store: URLs, headers, bodies, payloads.

One module so the inbound log, delivery attempts and log records all redact the same way.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote_plus, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"
MASKED = "********"

SECRET_PARAMS = frozenset({"access_key", "api_key", "apikey", "token", "access_token", "key", "secret"})
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-access-key",
        "x-api-key",
        "api-token",
        "api-key",
        "cookie",
        "set-cookie",
        "x-hubspot-signature",
        "x-hubspot-signature-v3",
        "webhook-signature",
    }
)
_PASSWORD_KEY = re.compile(r"(pass(word)?|pwd|secret|user_pass|app_password|client_secret|token)", re.I)
# What every match of ``_PASSWORD_KEY`` holds, lower-cased (``user_pass`` holds ``pass``, ...).
_PASSWORD_WORDS = ("pass", "pwd", "secret", "token")


def _name_pattern(name: str) -> str:
    """A parameter name as it may appear in a URL: any character may be percent-encoded
    (``%61ccess_key``, ``access%5Fkey`` reach the app as ``access_key`` once decoded)."""
    return "".join(f"(?:{re.escape(char)}|%{ord(char.lower()):02x}|%{ord(char.upper()):02x})" for char in name)


# access_key=... anywhere in a string (query strings, request lines, form bodies), its name
# written plainly or percent-encoded.
_ACCESS_KEY_IN_TEXT = re.compile(
    "(?i)(" + "|".join(_name_pattern(name) for name in ("access_key", "api_key", "access_token")) + ")"
    r"(=|%3D)[^&\s\"']*"
)
# The same for a text without ``%``, where no name can be encoded: the same matches, found
# without trying every encoded alternative at every character.
_PLAIN_ACCESS_KEY_IN_TEXT = re.compile(r"(?i)(access_key|api_key|access_token)(=)[^&\s\"']*")
_NAME_KEPT_VALUE_REDACTED = r"\1\2" + REDACTED


@functools.lru_cache(maxsize=4096)
def is_password_key(key: str) -> bool:
    """Cached: every recorded exchange asks it of every key of a CRM's JSON, and the keys repeat."""
    return bool(_PASSWORD_KEY.search(key))


def _may_name_a_key(value: str) -> bool:
    """Whether ``_ACCESS_KEY_IN_TEXT`` can match: it needs ``=`` (or ``%3D``) and a name that is
    written plainly (so holds ``_key`` or ``_token``) or percent-encoded (so holds ``%``). Most
    strings fail this in C; the pattern itself tries its alternation at every character, which
    cost a 64 KB form body milliseconds."""
    if "=" not in value and "%3" not in value:
        return False
    if "%" in value:
        return True
    lowered = value.lower()
    return "_key" in lowered or "_token" in lowered


def scrub_text(value: str, secrets: Iterable[str] = ()) -> str:
    """Remove ``access_key=…`` style parameters and any known secret value from free text."""
    if _may_name_a_key(value):
        pattern = _ACCESS_KEY_IN_TEXT if "%" in value else _PLAIN_ACCESS_KEY_IN_TEXT
        value = pattern.sub(_NAME_KEPT_VALUE_REDACTED, value)
    for secret in secrets:
        if secret and len(secret) >= 4:
            value = value.replace(secret, REDACTED)
    return value


@functools.lru_cache(maxsize=1024)
def encoded_forms(secrets: tuple[str, ...]) -> tuple[str, ...]:
    """Each secret as a receiver may echo it back: as is, percent-encoded (query strings,
    forms) and JSON-escaped; longest first, so a secret inside a longer one is not half
    replaced. Cached: a worker asks it with the same few secrets all day."""
    forms: set[str] = set()
    for secret in secrets:
        if not secret or len(secret) < 4:
            continue
        escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
        forms.update((secret, quote(secret, safe=""), quote_plus(secret), escaped, escaped.replace("/", "\\/")))
    return tuple(sorted(forms, key=len, reverse=True))


def sent_credentials(headers: Mapping[str, str], url: str) -> list[str]:
    """Every credential a request carries, in each encoding it was sent in: a credential
    header's value, its token after the scheme (``Bearer T``: ``T``), Basic's base64 and what
    it decodes to (``user:password``, ``password``), and secret query parameters. The client
    redacts these from everything it records of the exchange, so a CRM that echoes the request
    back (headers in a debug body) cannot put a runtime OAuth token or Basic credentials into
    attempts and admin pages."""
    found: list[str] = []
    for name, value in headers.items():
        if name.lower() not in SECRET_HEADERS or not value:
            continue
        value = str(value)
        scheme, _, token = value.strip().partition(" ")
        found += [value, token.strip()]
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                continue
            found += [decoded, decoded.partition(":")[2]]
    found += [value for name, value in parse_qsl(urlsplit(url).query) if name.lower() in SECRET_PARAMS]
    return [item for item in found if item]


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    """``url`` with secret query parameters and userinfo replaced, then scrubbed as text.

    The query comes back in the form ``urlencode`` writes (decoded, then encoded again), so a
    logged URL reads the same whichever way its sender encoded it."""
    parts = urlsplit(url)
    if not parts.query and "@" not in parts.netloc:
        return scrub_text(url, secrets)  # nothing to rebuild
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@" + netloc.rsplit("@", 1)[1]
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, _redacted_query(parts.query), parts.fragment))
    return scrub_text(rebuilt, secrets)


# A query each of whose pairs ``parse_qsl`` then ``urlencode(…, safe="[]")`` give back exactly
# as written: ``name=value`` pairs (each with its ``=``, none empty) of characters neither
# decodes nor encodes. No ``%``, no ``+``: a name in it is the name as written.
_VERBATIM_PAIR = r"[A-Za-z0-9_.~\[\]-]*=[A-Za-z0-9_.~\[\]-]*"
_VERBATIM_QUERY = re.compile(f"{_VERBATIM_PAIR}(?:&{_VERBATIM_PAIR})*")


def _redacted_query(query: str) -> str:
    """The query with each secret parameter's value replaced by ``REDACTED``.

    A query that decoding and encoding again would give back unchanged (a webhook's
    ``wpf_action=update&access_key=…``) is masked in place, pair by pair, rather than parsed
    and encoded again (most of an inbound log row's cost); the result is the same either way.
    Any other query (encoded names, ``+``, pairs without ``=``, …) is parsed and encoded."""
    if _VERBATIM_QUERY.fullmatch(query):
        pairs = query.split("&")
        for index, pair in enumerate(pairs):
            name = pair.partition("=")[0]
            if name.lower() in SECRET_PARAMS:
                pairs[index] = f"{name}={REDACTED}"
        return "&".join(pairs)
    decoded = parse_qsl(query, keep_blank_values=True)
    return urlencode(
        [(name, REDACTED if name.lower() in SECRET_PARAMS else value) for name, value in decoded], safe="[]"
    )


def redact_headers(headers: Mapping[str, str], secrets: Iterable[str] = ()) -> dict[str, str]:
    return {
        name: (REDACTED if name.lower() in SECRET_HEADERS else scrub_text(str(value), secrets))
        for name, value in headers.items()
    }


def redact_data(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Mask password-like keys at any depth; scrub secret values from strings."""
    secrets = tuple(secrets)
    if isinstance(value, Mapping):
        return {
            key: (MASKED if is_password_key(str(key)) and val not in (None, "") else redact_data(val, secrets))
            for key, val in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_data(item, secrets) for item in value]
    if isinstance(value, str):
        return scrub_text(value, secrets)
    return value


def _may_hold_password_key(text: str) -> bool:
    """Whether ``_PASSWORD_KEY`` finds anything in ``text``. An ASCII text is asked with
    substring searches of its lower-cased copy, in C: the pattern tries its alternation at
    every character of a whole body. Beyond ASCII case-insensitive matching has more
    equivalents (the long s U+017F for ``s``, the Kelvin sign for ``k``), so the pattern itself answers."""
    if text.isascii():
        lowered = text.lower()
        return any(word in lowered for word in _PASSWORD_WORDS)
    return _PASSWORD_KEY.search(text) is not None


def _strings_verbatim(text: str, secrets: tuple[str, ...]) -> bool:
    """Whether JSON ``text`` holds its strings as they decode, so a search of the text finds
    what a search of the decoded values would. The one escape allowed is ``\\/`` (PHP's
    ``json_encode``, so WordPress, writes every ``/`` so), unless a secret holds a ``/``."""
    if "\\" not in text:
        return True
    return "\\" not in text.replace("\\/", "") and not any("/" in secret for secret in secrets)


def redact_body(body: bytes | str | None, content_type: str = "", secrets: Iterable[str] = ()) -> str:
    """A request or response body as loggable text: JSON and forms get password keys masked."""
    if body is None:
        return ""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    if not text:
        return ""
    stripped = text.lstrip()
    if stripped[:1] in "[{":
        secrets = tuple(secrets)
        if _strings_verbatim(text, secrets) and not _may_hold_password_key(text):
            # No key can be password-like, and every string (and secret) appears in the text as
            # it decodes: scrubbing the text does what the walk below would do, and more (keys
            # and numbers too), without decoding and re-encoding. Most CRM replies take this path.
            return scrub_text(text, secrets)
        try:
            return json.dumps(redact_data(json.loads(text), secrets), ensure_ascii=False)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to walk: kept as text
            pass
    if "form" in content_type or ("=" in text and "\n" not in text and " " not in text.strip()):
        lowered = text.lower()
        if any(part in lowered for part in _SENSITIVE_NAME_PARTS):  # substring searches, in C
            text = _SENSITIVE_FORM_PAIR.sub(_mask_form_pair, text)
    return scrub_text(text, secrets)


# A form pair whose name might be a password or a secret parameter (or is encoded, so might
# decode to one): only these are decoded and looked at, every other pair is kept as sent.
# Parsing and re-encoding every pair cost a 300 KB wrong-key form most of its time (issue 18).
_SENSITIVE_NAME_PARTS = ("pass", "pwd", "secret", "token", "key", "%", "+")
_SENSITIVE_FORM_PAIR = re.compile(r"(?:^|(?<=&))([^&=]*(?:pass|pwd|secret|token|key|%|\+)[^&=]*)=([^&]*)", re.I)


def _mask_form_pair(match: re.Match[str]) -> str:
    key = match.group(1)
    name = unquote_plus(key)
    if is_password_key(name) or name.lower() in SECRET_PARAMS:
        return f"{key}={MASKED}"
    return match.group(0)
