"""A total deadline for each outbound request, however the other side trickles its answer.

``requests``' timeout bounds each socket operation, not the exchange: a CRM that sends one
byte a second (status line, headers or body) never lets a single read time out, so an attempt
with ``timeout=3`` lived 39 s, and the worker's lease heartbeats kept it alive for ever. Here
one daemon thread per process (:class:`Watchdog`) shuts the socket down when the request's
deadline passes; the blocked read then ends at once and the client reports a timeout.

The socket is known only inside urllib3, so the pool's connection classes
(:class:`DeadlineHTTPConnection`, :class:`DeadlineHTTPSConnection`) register it with the
deadline that :func:`deadline_for_thread` set for the calling thread (an ``OutboundClient``
is used by one thread at a time), on connect and again before each response is read (a
pooled connection is reused without connecting).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection


@dataclass(order=True)
class Watch:
    """One socket to shut down at ``deadline`` (``time.monotonic``) unless released first."""

    deadline: float
    seq: int
    sock: Any = field(compare=False)
    active: bool = field(default=True, compare=False)
    fired: bool = field(default=False, compare=False)


class Watchdog:
    """Shuts watched sockets down at their deadlines. One thread for the whole process; it
    sleeps until the earliest active deadline and is woken only when a new watch is earlier
    than that (with one timeout for everything, almost never)."""

    def __init__(self) -> None:
        self._heap: list[Watch] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, sock: Any, deadline: float) -> Watch:
        entry = Watch(deadline, next(self._seq), sock)
        with self._wake:
            earliest = self._heap[0].deadline if self._heap else None
            heapq.heappush(self._heap, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="outbound-deadlines", daemon=True)
                self._thread.start()
            elif earliest is None or deadline < earliest:
                self._wake.notify()
        return entry

    def release(self, entry: Watch) -> None:
        """The request is over: never shut this socket down (it may go back to the pool)."""
        with self._wake:
            entry.active = False

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and not self._heap[0].active:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake.wait()
                    continue
                wait = self._heap[0].deadline - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                entry = heapq.heappop(self._heap)
                entry.fired = True
                _shut(entry.sock)  # under the lock: a release that came first is honoured


def _shut(sock: Any) -> None:
    """Shut the descriptor down: the reader blocked on it wakes up with end-of-file. A TLS
    socket's own ``shutdown`` would also drop its SSL object under the reading thread, so the
    plain socket's is called."""
    # OSError: already closed, or detached (the TCP socket after the TLS handshake took it over).
    with contextlib.suppress(OSError, TypeError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


WATCHDOG = Watchdog()
_local = threading.local()


@dataclass
class ThreadDeadline:
    """The deadline of the request running on this thread and the sockets watched for it."""

    at: float
    watches: list[Watch] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return any(w.fired for w in self.watches) or time.monotonic() >= self.at


@contextmanager
def deadline_for_thread(seconds: float) -> Iterator[ThreadDeadline]:
    """Every socket this thread's pooled connections use in the block is shut down once
    ``seconds`` have passed; the watches end with the block."""
    current = ThreadDeadline(time.monotonic() + seconds)
    _local.current = current
    try:
        yield current
    finally:
        _local.current = None
        for entry in current.watches:
            WATCHDOG.release(entry)


def deadline_passed() -> bool:
    """Whether the request running on this thread is past its deadline: then a socket the
    watchdog shut down reads as one the other side closed."""
    current: ThreadDeadline | None = getattr(_local, "current", None)
    return current is not None and current.passed


def _watch_current(sock: Any) -> None:
    current: ThreadDeadline | None = getattr(_local, "current", None)
    if current is None or sock is None or any(w.sock is sock for w in current.watches):
        return
    current.watches.append(WATCHDOG.watch(sock, current.at))


class _Watched:
    """Registers the connection's socket with this thread's deadline: the TCP socket as soon
    as it is connected (so a trickled TLS handshake is cut too), the TLS socket after the
    handshake, and the socket again before each response is read (a pooled connection is
    reused without connecting)."""

    sock: Any

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        _watch_current(sock)
        return sock  # type: ignore[no-any-return]

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _watch_current(self.sock)

    def getresponse(self) -> Any:
        _watch_current(self.sock)
        return super().getresponse()  # type: ignore[misc]


class DeadlineHTTPConnection(_Watched, HTTPConnection):
    pass


class DeadlineHTTPSConnection(_Watched, HTTPSConnection):
    pass
