"""OAuth 2 refresh grants redeemed once per process (single-flight).

A worker runs many deliveries at once on one connection. When its access token expires, every
one of them gets a 401 at about the same moment, and each would trade the same refresh token for
a new one. Providers that rotate refresh tokens accept only the first; with the reuse detection
that refresh token rotation recommends (RFC 9700, the OAuth 2.0 security BCP; OAuth 2.1) the
second use even revokes the tokens the first one obtained, which breaks the connection until
someone authorises it again. So callers presenting the same refresh token share one
redemption: those that arrive while it is in flight wait for its result, and those that arrive
within ``REMEMBER_SECONDS`` after it get the same result (their 401 was answered a little later
than the others'). A failed redemption is shared as a failure (None):
retrying it at once with the same refresh token is what this module exists to prevent.

Across processes the host coordinates: an adapter's ``refresh_guard`` (a :data:`RefreshGuard`)
wraps the grant; crm-bridge's (``bridge.connections.token_refresh``) takes a database lock and uses the
tokens another process stored instead of redeeming the same refresh token again.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

REMEMBER_SECONDS = 60.0

Tokens = dict[str, str]
# (the refresh token the adapter would present, the grant that redeems it) -> the tokens to use
RefreshGuard = Callable[[str, Callable[[], "Tokens | None"]], "Tokens | None"]


@dataclass
class _Redemption:
    done: threading.Event = field(default_factory=threading.Event)
    tokens: Tokens | None = None
    finished_at: float | None = None


class RefreshGrants:
    """``redeem`` runs a refresh grant unless the same refresh token is already being, or was
    just, redeemed in this process; then it returns that redemption's tokens."""

    def __init__(self, remember_seconds: float = REMEMBER_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.remember_seconds = remember_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._redemptions: dict[str, _Redemption] = {}

    def redeem(
        self, *, token_url: str, client_id: str, refresh_token: str, grant: Callable[[], Tokens | None]
    ) -> Tokens | None:
        """The tokens ``grant`` obtained (here or in the redemption this call joined), or None
        when the grant failed or obtained no access token. ``grant``'s exceptions reach only
        the caller that ran it."""
        key = hashlib.sha256(f"{token_url}\0{client_id}\0{refresh_token}".encode()).hexdigest()
        with self._lock:
            self._forget_old()
            redemption = self._redemptions.get(key)
            leader = redemption is None
            if redemption is None:
                redemption = self._redemptions[key] = _Redemption()
        if not leader:
            redemption.done.wait()
            return dict(redemption.tokens) if redemption.tokens else None
        try:
            tokens = grant()
            redemption.tokens = dict(tokens) if tokens and tokens.get("access_token") else None
        finally:
            redemption.finished_at = self._clock()
            redemption.done.set()
        return dict(redemption.tokens) if redemption.tokens else None

    def _forget_old(self) -> None:
        now = self._clock()
        expired = [
            key
            for key, redemption in self._redemptions.items()
            if redemption.finished_at is not None and now - redemption.finished_at >= self.remember_seconds
        ]
        for key in expired:
            del self._redemptions[key]

    def clear(self) -> None:
        """Forget every finished redemption (tests)."""
        with self._lock:
            self._redemptions = {k: r for k, r in self._redemptions.items() if r.finished_at is None}


REFRESH_GRANTS = RefreshGrants()
