"""Outbound clients kept per thread and connection, so HTTP keep-alive works.

A new ``requests`` session per use meant a new TCP (and TLS) connection per CRM call: per
delivery in the worker, per webhook on the inbound path (an id-only ``update`` is one CRM read,
and its handshake was part of every one). Each use still gets a clean client: its exchanges,
the secrets to redact and the cookies are reset, so what is recorded belongs to that use.

A kept connection may have been closed by the CRM while it sat idle: what then happens to the
request that meets it (an idempotent one is sent again once on a new connection, a POST is
not) is ``bridge.outbound.stale_connections``'.
"""

from __future__ import annotations

import threading

from flask import current_app

from bridge.outbound.client import OutboundClient, OutboundPolicy

_MAKING = threading.Lock()


class OutboundClients:
    """One outbound client per (thread, connection); an ``OutboundClient`` is not shared
    between threads, and a connection's pool is its CRM's."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        self._local = threading.local()
        self._all: list[OutboundClient] = []
        self._lock = threading.Lock()

    def checkout(self, connection_id: int | None, secrets: tuple[str, ...]) -> OutboundClient:
        """This thread's client for the connection, reset for a new use with ``secrets``."""
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


def kept_clients(purpose: str) -> OutboundClients:
    """The running app's kept clients for ``purpose`` (e.g. ``"inbound"``), made on first use
    with its outbound policy: in a gunicorn worker, after the fork, so no pooled socket is
    shared with the master."""
    key = f"crm_bridge.kept_clients.{purpose}"
    clients = current_app.extensions.get(key)
    if clients is None:
        with _MAKING:
            clients = current_app.extensions.get(key)
            if clients is None:
                clients = current_app.extensions[key] = OutboundClients(OutboundPolicy.from_config(current_app.config))
    return clients
