"""Waking this process's idle delivery workers when rows they could claim were committed.

A worker polls every ``BRIDGE_WORKER_POLL_SECONDS``; a row committed in its own process (a
registration with the inline worker, a retry from the admin console) should not wait for the
next poll. A session hook wakes every registered worker after a commit that wrote or re-queued
delivery rows. On its own module so the outbox can call it without importing the worker.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session

from bridge.models import Delivery

# Set in ``session.info`` by code that writes or re-queues rows without ORM objects (bulk
# INSERT/UPDATE): the session hook wakes this process's idle workers when that transaction commits.
WAKE_FLAG = "bridge.wake_worker"


class Wakeable(Protocol):
    def rows_arrived(self) -> None: ...


_workers: weakref.WeakSet[Any] = weakref.WeakSet()
_hooks_installed = False


def register(worker: Wakeable) -> None:
    """Wake ``worker`` on commits from now on (held weakly: a dropped worker is forgotten)."""
    _workers.add(worker)


def wake_workers() -> None:
    """Wake every idle worker in this process (new or re-queued rows were committed)."""
    for worker in list(_workers):
        worker.rows_arrived()


def install_session_hooks() -> None:
    """After a commit that inserted or re-queued Delivery rows, wake this process's workers.

    ``after_flush`` still sees the pre-flush ``session.new``; code that re-queues rows with a
    bulk UPDATE (retry, replay) sets ``session.info[WAKE_FLAG]`` itself.
    """
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True

    @event.listens_for(Session, "after_flush")
    def note_new_deliveries(session: Session, _context: Any) -> None:
        if any(isinstance(obj, Delivery) for obj in session.new):
            session.info[WAKE_FLAG] = True

    @event.listens_for(Session, "after_commit")
    def wake_after_commit(session: Session) -> None:
        if session.info.pop(WAKE_FLAG, False):
            wake_workers()

    @event.listens_for(Session, "after_rollback")
    def forget_on_rollback(session: Session) -> None:
        session.info.pop(WAKE_FLAG, None)
