"""OAuth 2 client-credentials tokens for custom webhooks: cached per process, fetched once.

A worker starts many deliveries at once; on a fresh process (or when the cached token has
expired, or the target refused it) each of them needs a token at the same moment. Fetching one
per delivery multiplies the token endpoint's load and, at providers that keep only the newest
client-credentials token, invalidates the tokens the others just received. So a fetch is
single-flight per token key (token URL, client id, scope: one connection's credentials): the
first caller fetches while holding that key's lock, and every thread of the process that
arrives meanwhile waits for it and then uses its token.

A refresh after a 401 names the token that was refused: if another thread has already replaced
it, that newer token is used instead of fetching a third one.
(RFC 6749 §4.4, https://www.rfc-editor.org/rfc/rfc6749#section-4.4.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

TokenKey = tuple[str, str, str]  # (token_url, client_id, scope)
# The fetch: () -> (access token, lifetime in seconds; <= 0 means "do not cache")
Fetch = Callable[[], tuple[str, float]]


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    token: str | None = None
    expires_at: float = 0.0
    waiting: int = 0  # threads blocked behind a fetch in flight (observable by tests)


class ClientCredentialsTokens:
    """The process's token cache; ``token`` fetches at most once at a time per key."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._guard = threading.Lock()
        self._slots: dict[TokenKey, _Slot] = {}

    def _slot(self, key: TokenKey) -> _Slot:
        with self._guard:
            return self._slots.setdefault(key, _Slot())

    def token(self, key: TokenKey, fetch: Fetch, *, refused: str | None = None) -> str:
        """A valid cached token for ``key``, else the one ``fetch`` obtains (run by one
        thread at a time per key). ``refused``: the token the target just answered 401 to,
        which is never returned again. ``fetch``'s exceptions reach only the thread that ran it."""
        slot = self._slot(key)
        if not slot.lock.acquire(blocking=False):
            with self._guard:
                slot.waiting += 1
            try:
                slot.lock.acquire()
            finally:
                with self._guard:
                    slot.waiting -= 1
        try:
            if slot.token and slot.token != refused and slot.expires_at > self._clock():
                return slot.token
            token, lifetime = fetch()
            slot.token, slot.expires_at = (token, self._clock() + lifetime) if lifetime > 0 else (None, 0.0)
            return token
        finally:
            slot.lock.release()

    def waiting(self, key: TokenKey) -> int:
        """How many threads wait for ``key``'s fetch in flight."""
        with self._guard:
            slot = self._slots.get(key)
            return slot.waiting if slot else 0

    def clear(self) -> None:
        """Forget every token (tests; a fetch in flight keeps its own slot)."""
        with self._guard:
            self._slots.clear()


TOKENS = ClientCredentialsTokens()
