"""A kept-alive connection the CRM closed while it sat idle: an idempotent request that meets it
is sent again, once, on a new connection; any other request is not.

Clients are kept per thread and connection (``bridge.outbound.kept_clients``), so the worker's
next delivery and the next inbound CRM read reuse a connection that may have sat idle longer
than the CRM (or a load balancer or NAT on the way) keeps it. urllib3 already tests a pooled
connection before reusing it (``is_connection_dropped``): one whose close already arrived is
dropped and a new one opened, so a request that was certainly never sent is never lost. What
is left is a close that crosses the request (the CRM's idle timer fires as the request arrives;
1 request in 300 sent back to back to a server that closes after each answer), and a middlebox
that forgot the connection and resets it when the request comes. The request then fails before
any byte of the answer (``RemoteDisconnected``, ``ConnectionResetError``), and the caller saw a
``TransportError`` it did nothing to earn.

What is done, with urllib3's own retry (``Retry``, requests' ``max_retries`` of the pinned
adapter) rather than a loop of ours: one retry (``total=1``, ``read=1``), no backoff, for the
methods urllib3 holds idempotent (``Retry.DEFAULT_ALLOWED_METHODS``: GET, HEAD, PUT, DELETE,
OPTIONS, TRACE), through the same pool, so it reaches the same pinned address on a new
connection. ``Retry`` alone would also resend a read that timed out and any request on a new
connection that broke, so :class:`KeptConnectionRetry` retries only when the connection had
answered an earlier request (:class:`KeptConnection`), this answer's status line had not
arrived, and the request's deadline has not passed (``bridge.outbound.deadline`` shuts the
socket at the deadline, which reads like a close: a CRM too slow to answer must not get the
request twice). Every other failure is handled exactly as requests' default
(``Retry(0, read=False)``) handles it: not retried. A 429 or 503 is never retried here
(``respect_retry_after_header=False``): the delivery layer schedules those.

Why not POST and PATCH: seen from here, a connection that closes before the first byte of the
answer looks the same whether the CRM closed it as the request arrived or received the request,
acted on it and then lost the connection (a restart, a proxy's timeout). RFC 9110 §9.2.2 (and
RFC 9112 §9.3.1) allow an automatic retry only of idempotent requests or of requests known not
to have been applied. Browsers resend any method on a reused connection that answered nothing
(Chromium's ``HttpNetworkTransaction::ShouldResendRequest``), accepting a rare duplicate of a
click; urllib3 counts the same failure as a read error (``Retry._is_read_error``: "assume that
the server began processing it") and retries only the idempotent methods. Here a duplicate POST
could create a contact twice or fire a custom webhook twice, while the POST known never to have
been sent (its connection found closed before writing) is already sent on a new connection by
urllib3's check above. So a POST or PATCH that fails this way stays a ``TransportError``: a
delivery is tried again by the delivery layer (backoff, the same ``Idempotency-Key`` for the
receiver to deduplicate), and a webhook's CRM read answers 502, which the CRM retries.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import ProtocolError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from bridge.outbound.deadline import deadline_passed


class KeptConnectionLost(ConnectionResetError):
    """A connection that had answered a request closed (or was reset) before the status line
    of the next answer arrived."""


class KeptConnection:
    """Mixed into the pool's connection classes: knows whether its socket has answered a
    request, and reports such a socket's close before the next answer as
    :class:`KeptConnectionLost` (unless the request's deadline shut it)."""

    _answered = False

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._answered = False  # a new socket

    def getresponse(self) -> Any:
        try:
            response = super().getresponse()  # type: ignore[misc]
        except ConnectionError as exc:  # RemoteDisconnected, ConnectionResetError, BrokenPipeError, …
            if self._answered and not deadline_passed():
                raise KeptConnectionLost(f"the kept connection closed before answering: {exc!r}") from exc
            raise
        self._answered = True
        return response


_NO_RETRY = Retry(0, read=False)  # requests' default (``HTTPAdapter(max_retries=0)``)


class KeptConnectionRetry(Retry):
    """urllib3's ``Retry``, retrying only a request whose kept connection was lost
    (:class:`KeptConnectionLost`); see the module docstring."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Retry:
        if isinstance(error, ProtocolError) and any(isinstance(arg, KeptConnectionLost) for arg in error.args):
            return super().increment(method, url, response, error, _pool, _stacktrace)
        return _NO_RETRY.increment(method, url, response, error, _pool, _stacktrace)


KEPT_CONNECTION_RETRY = KeptConnectionRetry(
    total=1,
    read=1,
    allowed_methods=Retry.DEFAULT_ALLOWED_METHODS,
    backoff_factor=0,
    respect_retry_after_header=False,
    raise_on_status=False,
)
