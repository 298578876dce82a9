"""Worker heartbeats: every delivery worker (a ``crm-bridge worker`` process, an inline thread)
writes its row every few seconds; ``/healthz`` and ``/metrics`` read them to tell whether the
queue has live workers, and how many. Rows live in the shared database, so any web process
answers for the whole deployment.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import case, delete, func, select

from bridge.extensions import db
from bridge.models import WorkerHeartbeat, utcnow

# A worker that has not beaten for this long is considered gone.
WORKER_STALE_SECONDS = 60

# Every worker start is a new worker id: rows not seen for this long are deleted.
FORGET_AFTER = timedelta(days=1)


def beat(worker_id: str, *, inline: bool) -> None:
    """Record that ``worker_id`` is alive (in the current transaction; the caller commits). A
    worker's first beat also forgets the workers gone for a day."""
    row = db.session.get(WorkerHeartbeat, worker_id)
    if row is None:
        db.session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen < utcnow() - FORGET_AFTER))
        db.session.add(WorkerHeartbeat(worker_id=worker_id, last_seen=utcnow(), inline=inline))
    else:
        row.last_seen = utcnow()


def liveness() -> tuple[float | None, int]:
    """(seconds since any worker last beat, or None when no worker ever ran; how many workers
    beat within ``WORKER_STALE_SECONDS``). One ``crm-bridge worker`` command runs a worker per
    core, so the count tells whether all of them are beating; the newest beat alone cannot."""
    now = utcnow()
    recent = WorkerHeartbeat.last_seen >= now - timedelta(seconds=WORKER_STALE_SECONDS)
    newest, alive = db.session.execute(select(func.max(WorkerHeartbeat.last_seen), func.count(case((recent, 1))))).one()
    if newest is None:
        return None, 0
    return round(max(0.0, (now - newest).total_seconds()), 3), int(alive)
