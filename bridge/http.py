"""The one outbound HTTP client. Every adapter call goes through here.

It applies the outbound policy (allowlist, no private targets), never follows redirects, times
out, caps how much of a response it reads, and records every exchange with secrets redacted so
the delivery layer can store it as an attempt.

TODO(issue 5): connect to the address that was checked (pinning) instead of resolving twice.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app, has_app_context

from bridge.redaction import redact_body, redact_headers, redact_url
from crm_adapters.base import HttpResponse
from crm_adapters.errors import (
    OutboundDenied,
    ResponseTooLarge,
    TransportError,
    TransportTimeout,
)

USER_AGENT = "crm-bridge/0.1"
DEFAULT_MAX_RESPONSE_BYTES = 1_048_576
EXCERPT_CHARS = 2000


@dataclass(frozen=True)
class OutboundPolicy:
    allow_private: bool = False
    allowlist: tuple[str, ...] = ()
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    default_timeout: float = 10.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OutboundPolicy:
        raw = config.get("BRIDGE_OUTBOUND_ALLOWLIST") or ""
        allowlist = tuple(p.strip().lower() for p in raw.split(",") if p.strip())
        return cls(
            allow_private=bool(config.get("BRIDGE_ALLOW_PRIVATE_TARGETS")),
            allowlist=allowlist,
        )

    def host_allowed(self, host: str) -> bool:
        if not self.allowlist:
            return True
        host = host.lower().rstrip(".")
        for pattern in self.allowlist:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) or fnmatch.fnmatch(host, pattern):
                    return True
            elif host == pattern:
                return True
        return False


def address_is_public(address: str) -> bool:
    """True only for globally routable unicast addresses (IPv4 embedded in IPv6 unwrapped)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_is_public(str(ip.ipv4_mapped))
        if ip.sixtofour is not None:
            return address_is_public(str(ip.sixtofour))
        if ip in ipaddress.ip_network("64:ff9b::/96"):
            return address_is_public(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    return ip.is_global and not ip.is_multicast


def check_target(url: str, policy: OutboundPolicy) -> None:
    """Raise ``OutboundDenied`` unless the URL may be requested under the policy."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise OutboundDenied(f"scheme {parts.scheme!r} is not allowed")
    host = parts.hostname
    if not host:
        raise OutboundDenied("URL has no host")
    if not policy.host_allowed(host):
        raise OutboundDenied(f"host {host} is not in BRIDGE_OUTBOUND_ALLOWLIST")
    if policy.allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as exc:
        raise TransportError(f"cannot resolve {host}: {exc}") from exc
    for info in infos:
        if not address_is_public(str(info[4][0])):
            raise OutboundDenied(f"host {host} resolves to a non-public address")


@dataclass
class OutboundClient:
    """Implements ``crm_adapters.base.HttpClient``. One per delivery attempt or adapter use;
    ``exchanges`` collects what was sent and received, redacted."""

    policy: OutboundPolicy = field(default_factory=OutboundPolicy)
    secrets: tuple[str, ...] = ()
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    session: requests.Session = field(default_factory=requests.Session)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | Sequence[tuple[str, Any]] | str | bytes | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        prepared = self.session.prepare_request(
            requests.Request(
                method.upper(),
                url,
                params=params,
                headers={"User-Agent": USER_AGENT, **(headers or {})},
                json=json,
                data=data,
                auth=auth,
            )
        )
        exchange: dict[str, Any] = {
            "method": prepared.method,
            "url": redact_url(prepared.url or url, self.secrets),
            "request_headers": redact_headers(dict(prepared.headers), self.secrets),
            "request_body": redact_body(prepared.body, prepared.headers.get("Content-Type", ""), self.secrets)[
                :EXCERPT_CHARS
            ],
        }
        self.exchanges.append(exchange)
        started = time.perf_counter()
        try:
            check_target(prepared.url or url, self.policy)
            response = self.session.send(
                prepared,
                allow_redirects=False,
                stream=True,
                timeout=timeout or self.policy.default_timeout,
            )
            body = self._read_capped(response)
        except (OutboundDenied, TransportError) as exc:
            self._finish(exchange, started, error=exc)
            raise
        except requests.Timeout as exc:
            error = TransportTimeout(f"timed out: {exc.__class__.__name__}")
            self._finish(exchange, started, error=error)
            raise error from exc
        except requests.RequestException as exc:
            error = TransportError(f"connection failed: {exc.__class__.__name__}")
            self._finish(exchange, started, error=error)
            raise error from exc
        result = HttpResponse(status=response.status_code, headers=dict(response.headers), body=body, url=response.url)
        exchange["status"] = result.status
        exchange["response_headers"] = redact_headers(dict(response.headers), self.secrets)
        exchange["response_body"] = redact_body(body, response.headers.get("Content-Type", ""), self.secrets)[
            :EXCERPT_CHARS
        ]
        self._finish(exchange, started)
        return result

    def _read_capped(self, response: requests.Response) -> bytes:
        limit = self.policy.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(65536):
                size += len(chunk)
                if size > limit:
                    raise ResponseTooLarge(f"response larger than {limit} bytes")
                chunks.append(chunk)
        finally:
            response.close()
        return b"".join(chunks)

    @staticmethod
    def _finish(exchange: dict[str, Any], started: float, error: Exception | None = None) -> None:
        exchange["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        if error is not None:
            exchange["error_class"] = getattr(error, "error_class", error.__class__.__name__)
            exchange["error"] = str(error)


def outbound_client(secrets: Iterable[str] = ()) -> OutboundClient:
    """A client with the running app's policy (or the safe default outside an app)."""
    policy = OutboundPolicy.from_config(current_app.config) if has_app_context() else OutboundPolicy()
    return OutboundClient(policy=policy, secrets=tuple(s for s in secrets if s))
