"""The transactional outbox: pushes are rows written in the caller's transaction.

``enqueue`` only adds a row to the current session; it never commits, so the push exists if and
only if the change that caused it is committed. Claiming, retry scheduling and delivery live in
the worker (``bridge.delivery.worker``), which is the only place that decides to retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Insert, Select, Table, bindparam, insert, literal_column, select, text
from sqlalchemy.dialects import postgresql, sqlite

from bridge.delivery.wakeup import WAKE_FLAG, wake_workers
from bridge.extensions import db
from bridge.models import OPEN_DEDUPE_PREDICATE, Connection, Delivery, User, utcnow

# Delivery kinds (DESIGN.md).
CONTACT_UPSERT = "contact.upsert"
CONTACT_UPDATE = "contact.update"
TAGS_APPLY = "tags.apply"
PASSWORD_RETURN = "password.return"  # noqa: S105 (a job kind, not a password)
WEBHOOK_INBOUND = "webhook.inbound"
MAIL_WELCOME = "mail.welcome"

STATUSES = ("pending", "in_flight", "succeeded", "failed", "dead")
OPEN_STATUSES = ("pending", "in_flight", "failed")


def is_open(status_column: Any) -> ColumnElement[bool]:
    """``status IN ('pending', 'in_flight', 'failed')`` with the values written into the SQL.

    The partial indexes on unfinished rows (``ix_delivery_open_lane``,
    ``uq_delivery_queued_dedupe``) carry exactly this predicate. With bound parameters the
    planner cannot prove a query implies it (SQLite never; PostgreSQL not in a generic plan),
    so it skipped the index: the claim's lane check scanned the table once per due row, and a
    claim with 2,000 queued rows took 600 ms instead of 3 ms.
    """
    return status_column.in_([literal_column(f"'{status}'") for status in OPEN_STATUSES])


def ordering_key(connection: Connection | None, user: User | None) -> str | None:
    """Per user and connection, deliveries go out in the order they were made."""
    if connection is None or user is None:
        return None
    return f"{connection.id}:{user.id}"


def enqueue(
    kind: str,
    *,
    connection: Connection | None = None,
    user: User | None = None,
    payload: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
    ordering: str | None = None,
) -> Delivery:
    """Add an outbound job to the current transaction (flushes to get its id; never commits)."""
    if user is not None and user.id is None:
        db.session.flush()
    delivery = Delivery(
        kind=kind,
        connection_id=connection.id if connection is not None else None,
        user_id=user.id if user is not None else None,
        payload=payload or {},
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
        ordering_key=ordering or ordering_key(connection, user),
        dedupe_key=dedupe_key,
    )
    db.session.add(delivery)
    db.session.flush()
    return delivery


def new_row(
    kind: str, *, connection_id: int | None, user_id: int | None, payload: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The columns of a new pending outbox row, for the Core inserts below."""
    return {
        "kind": kind,
        "connection_id": connection_id,
        "user_id": user_id,
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "ordering_key": None,
        "dedupe_key": None,
        "created_at": now,
        "updated_at": now,
    }


_TABLE = Delivery.__table__
_OPEN_DEDUPE = text(OPEN_DEDUPE_PREDICATE)
_INSERT_ONCE: dict[str, Insert] = {}


def _insert_once(dialect: str) -> Insert:
    """``INSERT … ON CONFLICT (dedupe_key) WHERE <open> DO NOTHING RETURNING id``, built once
    per dialect: a new job costs one statement, not a look-up and then an insert."""
    statement = _INSERT_ONCE.get(dialect)
    if statement is None:
        dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (
            dialect_insert(_TABLE)
            .on_conflict_do_nothing(index_elements=[_TABLE.c.dedupe_key], index_where=_OPEN_DEDUPE)
            .returning(_TABLE.c.id)
        )
        _INSERT_ONCE[dialect] = statement
    return statement


def enqueue_job(
    kind: str,
    *,
    connection_id: int | None,
    payload: dict[str, Any],
    dedupe_key: str,
    ordering: str | None = None,
) -> int | None:
    """A job that belongs to no user (a queued webhook), added to the current transaction with
    one Core ``INSERT … RETURNING id`` (no ORM object, no connection row loaded: the async
    accept path is the one callers hit thousands of times a minute). Returns the new id, or
    None when an unfinished job already holds ``dedupe_key`` (the caller looks that one up).
    Never commits. Wakes this process's idle workers on commit."""
    row = _job_row(kind, connection_id, payload, dedupe_key, ordering)
    connection = db.session.connection()
    job_id = connection.execute(_insert_once(connection.dialect.name), row).scalar()
    if job_id is None:
        return None
    db.session.info[WAKE_FLAG] = True
    return int(job_id)


def commit_job(
    kind: str,
    *,
    connection_id: int | None,
    payload: dict[str, Any],
    dedupe_key: str,
    ordering: str | None = None,
    along: tuple[Table, dict[str, Any]],
) -> int | None:
    """``enqueue_job`` and one more row (``along``: a table and its values, the inbound log's
    row, every column given: a row written from a CTE gets no Python-side defaults) written
    and committed as one atomic write. Returns the job id, or None when an
    unfinished job already holds ``dedupe_key`` (the other row is written all the same).

    On PostgreSQL this is a single statement in autocommit (``WITH along AS (INSERT …), job
    AS (INSERT …) SELECT id FROM job``): one round trip where a transaction took four (BEGIN,
    two INSERTs, COMMIT), each a wake-up of the database and of this process's thread. On
    SQLite, where a statement costs no round trip, it is the same two inserts and a commit in
    the session.
    """
    table, values = along
    if db.engine.dialect.name != "postgresql":
        job_id = enqueue_job(
            kind, connection_id=connection_id, payload=payload, dedupe_key=dedupe_key, ordering=ordering
        )
        db.session.connection().execute(insert(table), values)
        db.session.commit()
        return job_id
    row = _job_row(kind, connection_id, payload, dedupe_key, ordering)
    statement = _job_along_statement(tuple(row), table, tuple(values))
    params = {**{f"job_{name}": value for name, value in row.items()}, **{f"row_{n}": v for n, v in values.items()}}
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        job_id = connection.execute(statement, params).scalar()
    if job_id is None:
        return None
    wake_workers()
    return int(job_id)


def _job_row(
    kind: str, connection_id: int | None, payload: dict[str, Any], dedupe_key: str, ordering: str | None
) -> dict[str, Any]:
    row = new_row(kind, connection_id=connection_id, user_id=None, payload=payload, now=utcnow())
    return {**row, "ordering_key": ordering, "dedupe_key": dedupe_key}


_JOB_ALONG: dict[tuple[tuple[str, ...], str, tuple[str, ...]], Select[Any]] = {}


def _job_along_statement(job_columns: tuple[str, ...], table: Table, columns: tuple[str, ...]) -> Select[Any]:
    """The PostgreSQL statement of ``commit_job``, built once per table and column set. A
    data-modifying CTE always runs to completion, whether or not the outer query reads it."""
    key = (job_columns, table.name, columns)
    statement = _JOB_ALONG.get(key)
    if statement is None:
        job_values = {n: bindparam(f"job_{n}", type_=_TABLE.c[n].type) for n in job_columns}
        job = _insert_once("postgresql").values(job_values).cte("job")
        other = insert(table).values({n: bindparam(f"row_{n}", type_=table.c[n].type) for n in columns}).cte("along")
        statement = select(job.c.id).add_cte(other)
        _JOB_ALONG[key] = statement
    return statement


def insert_rows(rows: Sequence[dict[str, Any]]) -> None:
    """Add prepared rows (``new_row``'s columns) to the current transaction in one multi-row
    insert; never commits. Wakes this process's idle workers on commit."""
    if rows:
        db.session.connection().execute(_TABLE.insert(), list(rows))
        db.session.info[WAKE_FLAG] = True


def enqueue_many(
    kind: str, *, connections: Sequence[Connection], user: User, payload: dict[str, Any] | None = None
) -> int:
    """One job of ``kind`` per connection for ``user``, added to the current transaction with
    a single bulk insert (no ORM objects, no per-row flush): the registration path. Returns how
    many rows were written; never commits. Wakes this process's idle workers on commit."""
    if not connections:
        return 0
    if user.id is None:
        db.session.flush()
    now = utcnow()
    rows = [
        {
            **new_row(kind, connection_id=connection.id, user_id=user.id, payload=dict(payload or {}), now=now),
            "ordering_key": ordering_key(connection, user),
        }
        for connection in connections
    ]
    db.session.connection().execute(_TABLE.insert(), rows)  # Core: the ORM's bulk path cost more
    db.session.info[WAKE_FLAG] = True
    return len(rows)
