"""The delivery worker's outbound HTTP clients, kept per pool thread and connection."""

from __future__ import annotations

import threading

from bridge.outbound.client import OutboundClient, OutboundPolicy


class OutboundClients:
    """One outbound client per (pool thread, connection), kept between deliveries so HTTP
    keep-alive works: a new ``requests`` session per delivery meant a new TCP (and TLS)
    connection per CRM call. Each delivery still gets a clean client: its exchanges, the
    secrets to redact and the cookies are reset, so attempts are recorded per delivery."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        self._local = threading.local()
        self._all: list[OutboundClient] = []
        self._lock = threading.Lock()

    def for_delivery(self, connection_id: int | None, secrets: tuple[str, ...]) -> OutboundClient:
        clients: dict[int | None, OutboundClient] | None = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        client = clients.get(connection_id)
        if client is None:
            client = OutboundClient(policy=self.policy)
            clients[connection_id] = client
            with self._lock:
                self._all.append(client)
        client.reset(secrets)
        return client

    def close_all(self) -> None:
        with self._lock:
            clients, self._all = self._all, []
        for client in clients:
            client.session.close()
