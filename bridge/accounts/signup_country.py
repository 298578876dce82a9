"""The signup country: the two-letter country a registration came from, recorded as
``meta.signup_country`` (CONTRACT.md §1, ``BRIDGE_GEO_HEADER`` / ``BRIDGE_GEOIP_DB``).

Only trusted sources count: a header the owner's proxy or CDN sets (Cloudflare's
``CF-IPCountry``, named by ``BRIDGE_GEO_HEADER``), else a MaxMind-format database the owner
provides (``BRIDGE_GEOIP_DB``, read with MaxMind's ``maxminddb``) looked up with the client
address (``request.remote_addr``: what the WSGI server, or a proxy fix in front of it, says).
A country the client typed into ``meta`` is never kept: templates such as the "Sync new user
to CRM" recipe send it to the CRM as a fact about the signup. ``client_meta`` is that rule for
every path that writes meta from outside (API create and PATCH, inbound ``add``/``update``, a
batch import's set-based add): ``bridge.accounts.users`` and ``local_edits`` apply it where meta
is written, so no view has to remember it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import maxminddb

COUNTRY = re.compile(r"^[A-Z]{2}$")
# Cloudflare's answers that are not countries: unknown (XX) and Tor (T1).
NOT_COUNTRIES = frozenset({"XX", "T1"})
META_KEY = "signup_country"
# Meta keys only the server writes: dropped from whatever a client, script or CRM sends.
SERVER_ONLY_META = frozenset({META_KEY})


def country_from_header(value: str | None) -> str | None:
    code = (value or "").strip().upper()
    return code if COUNTRY.match(code) and code not in NOT_COUNTRIES else None


@functools.lru_cache(maxsize=4)
def _reader(path: str) -> maxminddb.Reader:
    """One open database per path for the process (the reader is thread-safe); a database
    file replaced in place (a monthly GeoLite2 update) is read after a restart."""
    return maxminddb.open_database(path)


def country_from_database(path: str, address: str | None) -> str | None:
    """The ISO code of ``address`` in a GeoIP2/GeoLite2 Country or City database: its
    ``country``, else its ``registered_country``; None when unknown or unreadable."""
    if not address:
        return None
    try:
        record = _reader(path).get(address)
    except (OSError, ValueError):  # a missing or corrupt file, a malformed address
        return None
    if not isinstance(record, Mapping):
        return None
    for key in ("country", "registered_country"):
        place = record.get(key)
        code = place.get("iso_code") if isinstance(place, Mapping) else None
        if isinstance(code, str) and COUNTRY.match(code.upper()):
            return code.upper()
    return None


def signup_country(config: Mapping[str, Any], headers: Mapping[str, str], address: str | None) -> str | None:
    """The trusted country of a registration request, or None."""
    header = config.get("BRIDGE_GEO_HEADER")
    if header:
        return country_from_header(headers.get(str(header)))
    database = config.get("BRIDGE_GEOIP_DB")
    return country_from_database(str(database), address) if database else None


def client_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` as a client may write it: without the keys only the server sets."""
    return {key: value for key, value in meta.items() if key not in SERVER_ONLY_META}


def with_signup_country(meta: Mapping[str, Any], country: str | None) -> dict[str, Any]:
    """``meta`` without any client-supplied country, plus the trusted one when known."""
    result = client_meta(meta)
    if country:
        result[META_KEY] = country
    return result


def request_signup_country() -> str | None:
    """``signup_country`` of the current Flask request (the API's and ``/register``'s)."""
    from flask import current_app, request

    return signup_country(current_app.config, request.headers, request.remote_addr)
