"""The one outbound HTTP client. Every adapter call goes through here.

What it promises (CONTRACT §9):

* a URL is requested only if ``bridge.outbound.policy`` allows its host and every address the
  host resolves to (allowlist; public addresses only unless private targets are allowed),
  checked before a socket is opened;
* the connection is made to the address that was checked (pinned): a :class:`PinnedAdapter`
  hands urllib3 the IP while the ``Host`` header, TLS SNI and certificate check keep the name,
  so a DNS answer that changes between check and connect (rebinding) cannot redirect us;
* redirects are never followed (a 3xx is returned as is), every request times out as a whole
  (``bridge.outbound.deadline``: a CRM that trickles its answer a byte at a time is cut off at
  the timeout, not kept alive by each byte), the response body is capped, and every exchange,
  refused ones included, is recorded with secrets redacted.

Why not ``requests-hardened``: it pins too, but judges only the first DNS answer, has no
hostname allowlist, no "allow private but keep the allowlist" mode, no response cap and no
recording; see docs/httpsafe.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from flask import current_app, has_app_context
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from bridge.outbound.deadline import DeadlineHTTPConnection, DeadlineHTTPSConnection, deadline_for_thread
from bridge.outbound.policy import IPAddress, OutboundPolicy, Resolver, check_url, pick_address, resolve
from bridge.outbound.redaction import encoded_forms, redact_body, redact_headers, redact_url, sent_credentials
from bridge.outbound.stale_connections import KEPT_CONNECTION_RETRY, KeptConnection
from crm_adapters.base import HttpResponse
from crm_adapters.errors import (
    OutboundDenied,
    ResponseTooLarge,
    TransportError,
    TransportTimeout,
)

USER_AGENT = "crm-bridge/0.1"
EXCERPT_CHARS = 2000

# -- the connection pools ---------------------------------------------------------------------


class OutboundHTTPConnection(KeptConnection, DeadlineHTTPConnection):
    """Watched by the request's deadline (``bridge.outbound.deadline``), and knows when it is
    a kept connection lost while idle (``bridge.outbound.stale_connections``)."""


class OutboundHTTPSConnection(KeptConnection, DeadlineHTTPSConnection):
    """The TLS twin of :class:`OutboundHTTPConnection`."""


class OutboundHTTPPool(HTTPConnectionPool):
    ConnectionCls = OutboundHTTPConnection


class OutboundHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = OutboundHTTPSConnection


POOL_CLASSES = {"http": OutboundHTTPPool, "https": OutboundHTTPSPool}

# -- pinning ----------------------------------------------------------------------------------


class PinnedAdapter(HTTPAdapter):
    """Dials the address ``pin(host, port)`` returns, keeping the name for Host, SNI and the
    certificate check. The pool key carries the IP and the server name, so pooled connections
    are reused only for the same pinned address and name.

    ``responses`` mocks ``HTTPAdapter.send`` and so bypasses the pin: tests that mock with it
    exercise adapters, not this policy (tests/http/ use real loopback servers).
    """

    def __init__(self, pin: Callable[[str, int], IPAddress]) -> None:
        # No retries but one: an idempotent request on a kept connection the CRM closed while
        # idle is sent again on a new one (``bridge.outbound.stale_connections``).
        super().__init__(max_retries=KEPT_CONNECTION_RETRY)
        self._pin = pin

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Pools whose connections honour the request's total deadline (``bridge.outbound.deadline``)
        and know when they were kept (``bridge.outbound.stale_connections``)."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOL_CLASSES

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        hostname = str(host_params["host"]).strip("[]")
        port = int(host_params["port"] or (443 if host_params["scheme"] == "https" else 80))
        address = self._pin(hostname, port)
        if "Host" not in request.headers:
            parts = urlsplit(request.url or "")
            shown = f"[{hostname}]" if ":" in hostname else hostname
            request.headers["Host"] = f"{shown}:{parts.port}" if parts.port else shown
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = hostname
            pool_kwargs["assert_hostname"] = hostname
        host_params["host"] = f"[{address}]" if address.version == 6 else str(address)
        return host_params, pool_kwargs


# -- the client -------------------------------------------------------------------------------


def prepare(method: str, url: str, session: requests.Session | None = None, **kwargs: Any) -> requests.PreparedRequest:
    """Build the request exactly as it would be sent; a malformed one (bad URL, a header value
    with a newline) is refused with ``OutboundDenied``."""
    headers = {"User-Agent": USER_AGENT, **(kwargs.pop("headers", None) or {})}
    try:
        if session is None:
            return requests.Request(method.upper(), url, headers=headers, **kwargs).prepare()
        # What ``session.prepare_request`` does for our sessions (no session auth, params or
        # hooks; proxies and .netrc are off), without its generic merging: about 7 % of a
        # registration push's CPU in the worker (1.91 → 1.77 ms).
        merged = CaseInsensitiveDict(session.headers)
        merged.update(headers)
        params = kwargs.pop("params", None)
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method.upper(),
            url=with_query(url, params) if params else url,
            headers={name: value for name, value in merged.items() if value is not None},
            cookies=session.cookies,
            **kwargs,
        )
        return prepared
    except (requests.RequestException, ValueError) as exc:
        raise OutboundDenied(f"invalid request: {exc.__class__.__name__}") from exc


def with_query(url: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> str:
    """``url`` with ``params`` appended to its query, encoded as ``requests`` encodes them
    (a list value repeats the key, ``None`` is left out). Done here because ``requests`` checks
    params against a runtime ``Protocol``, whose ``isinstance`` alone was 8 % of a worker's CPU."""
    pairs = params.items() if isinstance(params, Mapping) else params
    flat = [
        (key, value)
        for key, values in pairs
        for value in (values if isinstance(values, list | tuple) else (values,))
        if value is not None
    ]
    if not flat:
        return url
    parts = urlsplit(url)
    query = urlencode(flat)
    return urlunsplit(parts._replace(query=f"{parts.query}&{query}" if parts.query else query))


def describe_request(prepared: requests.PreparedRequest, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The loggable, redacted view of a request (what attempts and dry runs store)."""
    return {
        "method": prepared.method,
        "url": redact_url(prepared.url or "", secrets),
        "request_headers": redact_headers(dict(prepared.headers), secrets),
        "request_body": redact_body(prepared.body, prepared.headers.get("Content-Type", ""), secrets)[:EXCERPT_CHARS],
    }


def describe_response(response: HttpResponse, secrets: Iterable[str] = ()) -> dict[str, Any]:
    content_type = response.header("Content-Type") or ""
    return {
        "status": response.status,
        "response_headers": redact_headers(dict(response.headers), secrets),
        "response_body": redact_body(response.body, content_type, secrets)[:EXCERPT_CHARS],
    }


@dataclass
class OutboundClient:
    """Implements ``crm_adapters.base.HttpClient``. One per delivery attempt or adapter use;
    ``exchanges`` collects what was sent and received, redacted: of the configured ``secrets``
    and of every credential the client sent (``sent``: a runtime OAuth token, Basic's base64),
    in each encoding it may come back in. Not shared between threads."""

    policy: OutboundPolicy = field(default_factory=OutboundPolicy)
    secrets: tuple[str, ...] = ()
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    session: requests.Session = field(default_factory=requests.Session)
    resolver: Resolver = resolve

    def __post_init__(self) -> None:
        self.session.trust_env = False  # no proxies or .netrc from the environment: they defeat pinning
        adapter = PinnedAdapter(self._pin)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._current: dict[str, Any] | None = None

    @property
    def redaction_secrets(self) -> tuple[str, ...]:
        """What to scrub from anything recorded of this client's exchanges (and from errors
        raised on them): the configured secrets and the credentials sent, encoded every way."""
        return encoded_forms((*self.secrets, *self.sent))

    def reset(self, secrets: tuple[str, ...]) -> None:
        """Start a new delivery on a kept client: its secrets, no exchanges, sent credentials
        or cookies of the previous one."""
        self.secrets = tuple(s for s in secrets if s)
        self.exchanges = []
        self.sent = []
        self.session.cookies.clear()

    def _learn(self, prepared: requests.PreparedRequest) -> None:
        for credential in sent_credentials(prepared.headers, prepared.url or ""):
            if credential not in self.sent:
                self.sent.append(credential)

    def _pin(self, host: str, port: int) -> IPAddress:
        address = pick_address(host, port, self.policy, self.resolver)
        if self._current is not None:
            self._current["address"] = str(address)
        return address

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
        exchange: dict[str, Any] = {"method": method.upper(), "url": redact_url(url, self.secrets)}
        self.exchanges.append(exchange)
        started = time.perf_counter()
        self._current = exchange
        try:
            prepared = prepare(
                method, url, self.session, params=params, headers=headers, json=json, data=data, auth=auth
            )
            self._learn(prepared)
            exchange.update(describe_request(prepared, self.redaction_secrets))
            check_url(prepared.url or url, self.policy)
            limit = timeout or self.policy.default_timeout
            with deadline_for_thread(limit) as due:
                try:
                    response = self.session.send(prepared, allow_redirects=False, stream=True, timeout=limit)
                    body = self._read_capped(response, deadline=started + limit)
                except requests.RequestException as exc:
                    if due.passed:  # the socket was shut at the deadline: that is a timeout
                        raise requests.Timeout(exc.__class__.__name__) from exc
                    raise
                if due.passed:  # a body read to its end only because the deadline shut it
                    raise TransportTimeout("the response took longer than the timeout to arrive")
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
        finally:
            self._current = None
        result = HttpResponse(status=response.status_code, headers=dict(response.headers), body=body, url=response.url)
        exchange.update(describe_response(result, self.redaction_secrets))
        self._finish(exchange, started)
        return result

    def _read_capped(self, response: requests.Response, *, deadline: float) -> bytes:
        limit = self.policy.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(65536):
                size += len(chunk)
                if size > limit:
                    raise ResponseTooLarge(f"response larger than {limit} bytes")
                if time.perf_counter() > deadline:
                    raise TransportTimeout("response took longer than the timeout to arrive")
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
