"""Job handlers: what the worker runs for each kind of outbox row.

A module registers a handler with ``@job_handler(kind)``; the worker looks it up with
``handler_for``. A handler gets a :class:`JobContext`, does its work (adapter calls through
``ctx.http``, database writes in the worker's session), and either returns a small JSON-able
result or raises a typed error (``crm_adapters.errors``). It never decides to retry: the worker
does, from the error's ``retryable`` and ``retry_after``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.connections import service as connections
from bridge.extensions import db
from bridge.models import Connection, Delivery, User
from bridge.outbound.client import OutboundClient
from crm_adapters.base import Adapter

log = logging.getLogger(__name__)

# Modules whose import registers handlers (kept here so the worker needs no list of its own).
HANDLER_MODULES = (
    "bridge.accounts.crm_push",
    "bridge.inbound.service",
    "bridge.accounts.welcome_mail",
    "bridge.accounts.tag_push",
    "bridge.delivery.batch_pages",
    "bridge.inbound.batch_import",
    "bridge.accounts.batch_push",
    "bridge.accounts.batch_undo",
)


@dataclass
class JobContext:
    delivery: Delivery
    connection: Connection | None
    user: User | None
    http: OutboundClient
    worker_id: str = ""
    # The user's local tags, read when the row was claimed (registration pushes only; None:
    # not read, the handler reads them itself).
    local_tags: tuple[str, ...] | None = None
    # Database writes a handler wants made only if its attempt succeeds, in the transaction
    # that records the attempt (the worker records many attempts in one transaction). A
    # handler that writes in its own session instead is recorded on its own, as before.
    after_success: list[Callable[[], Any]] = field(default_factory=list)
    # The adapters a handler used, by connection id: the worker stores what they changed
    # (``Adapter.settings_to_store``) once the attempt is over, whether or not it succeeded.
    adapters: list[tuple[int, Adapter]] = field(default_factory=list)


JobHandler = Callable[[JobContext], "dict[str, Any] | None"]
_HANDLERS: dict[str, JobHandler] = {}


class UnknownJobKind(LookupError):
    pass


def job_handler(kind: str) -> Callable[[JobHandler], JobHandler]:
    def register(function: JobHandler) -> JobHandler:
        _HANDLERS[kind] = function
        return function

    return register


def load_handlers() -> None:
    for module in HANDLER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a handler module not written yet
            if exc.name != module:
                raise


def handler_for(kind: str) -> JobHandler:
    if kind not in _HANDLERS:
        load_handlers()
    try:
        return _HANDLERS[kind]
    except KeyError:
        raise UnknownJobKind(f"no handler for job kind {kind!r}") from None


def store_changed_settings(ctx: JobContext, *, joined: bool) -> None:
    """Store what the CRM changed during an attempt (a refreshed token), succeeded or not: in
    the handler's open transaction when it has one (``joined``), else in a short one of its own."""
    for connection_id, adapter in ctx.adapters:
        try:
            connections.store_changed_settings(connection_id, adapter, commit=not joined)
        except Exception:  # never lose the attempt's record over it
            if not joined:
                db.session.rollback()
            log.exception("connection %s: could not store the settings its CRM changed", connection_id)
