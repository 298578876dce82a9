"""Prebuilt Core statements run straight on the session's DBAPI connection (the hot path).

An inbound ``update`` runs four or five small statements. Through ``Session.execute`` each cost
about 150 µs of CPU on SQLite and through ``Connection.execute`` about 55 µs, against 7 µs for
the same statement on the ``sqlite3`` cursor (measured in-process; docs/perf.md, issue 21).
:class:`RawStatement` keeps what SQLAlchemy would do per call but does it once: the statement
is compiled once per dialect, with the dialect's own bind and result processors (JSON, dates),
and then runs on the DBAPI cursor of the session's current connection. Nothing else changes:
the session still begins the transaction (on SQLite ``BEGIN IMMEDIATE`` and the writer lock,
``bridge.database``), commits or rolls it back, and pending ORM objects are flushed first.
Listeners of ``before_cursor_execute`` still see each statement.

Only plain statements qualify: no expanding ``IN`` parameters, no ORM entities to load, and an
INSERT compiled for the fixed set of columns given as ``column_keys``.

:func:`raw_transaction` goes one step further for a unit of work made of such statements only
(an inbound ``update`` of a linked user): it takes a pooled DBAPI connection, begins (on SQLite
the writer lock and ``BEGIN IMMEDIATE``, as ``bridge.database`` does for the session) and
commits by hand, without the ORM session. Beginning, committing and closing through the session
cost about as much CPU as the statements themselves. Inside it, every :class:`RawStatement`
runs on that connection (``before_cursor_execute`` listeners get ``None`` for the SQLAlchemy
connection, and see no BEGIN or COMMIT), and any use of the session raises
:class:`SessionNeeded` before the session touches the database (on SQLite a second connection
would wait for the writer lock this one holds): the caller rolls back and runs the unit again
through the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql import ClauseElement

from bridge.database import begin_immediate
from bridge.extensions import db


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # bind names in order (positional paramstyles) or by name
    positional: bool
    processors: dict[str, Callable[[Any], Any]]
    results: tuple[Callable[[Any], Any] | None, ...]


class RawStatement:
    """One Core statement, compiled once per dialect, run on the DBAPI cursor."""

    def __init__(self, statement: ClauseElement, column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: dict[str, _Compiled] = {}

    def rows(self, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run a SELECT; its rows as tuples, values processed as SQLAlchemy would."""
        compiled, cursor = self._run(params, many=False)
        found = cursor.fetchall()
        cursor.close()
        if any(compiled.results):
            processors = compiled.results
            return [tuple(p(v) if p else v for p, v in zip(processors, row, strict=True)) for row in found]
        return [tuple(row) for row in found]

    def execute(self, params: Mapping[str, Any]) -> int:
        """Run a write; the number of rows it touched."""
        cursor = self._run(params, many=False)[1]
        count = int(cursor.rowcount)
        cursor.close()
        return count

    def execute_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self._run(rows, many=True)[1].close()

    def _run(self, params: Any, *, many: bool) -> tuple[_Compiled, Any]:
        raw = _CURRENT.get()
        if raw is not None:
            connection, dialect, dbapi_connection = None, raw.dialect, raw.dbapi_connection
            listeners = raw.engine.dispatch.before_cursor_execute
        else:
            session = db.session()
            if session.new or session.dirty or session.deleted:
                session.flush()  # as autoflush would before an ORM-enabled statement
            connection = session.connection()
            dialect, dbapi_connection = connection.dialect, connection.connection.dbapi_connection
            listeners = connection.dispatch.before_cursor_execute
        compiled = self._for(dialect)
        values = [_bind(compiled, row) for row in params] if many else _bind(compiled, params)
        cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
        for listener in listeners:
            listener(connection, cursor, compiled.sql, values, None, many)
        try:
            if many:
                cursor.executemany(compiled.sql, values)
            else:
                cursor.execute(compiled.sql, values)
        except dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise _as_sqlalchemy_error(exc, compiled.sql, values, dialect, dbapi_connection, cursor, many) from exc
        return compiled, cursor

    def _for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _compile(self.statement, dialect, self.column_keys)
        return found


def _compile(statement: ClauseElement, dialect: Dialect, column_keys: list[str] | None) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)
    positional = bool(compiled.positional)
    names = tuple(compiled.positiontup or ()) if positional else tuple(compiled.binds)
    processors = {}
    for name in names:
        processor = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors[name] = processor
    columns = getattr(statement, "selected_columns", ())
    results = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns)
    return _Compiled(compiled.string, names, positional, processors, results)


def _bind(compiled: _Compiled, params: Mapping[str, Any]) -> Any:
    processors = compiled.processors
    if compiled.positional:
        return tuple(processors[n](params[n]) if n in processors else params[n] for n in compiled.names)
    return {n: processors[n](params[n]) if n in processors else params[n] for n in compiled.names}


def _as_sqlalchemy_error(
    exc: Exception,
    sql: str,
    values: Any,
    dialect: Dialect,
    dbapi_connection: Any,
    cursor: Any = None,
    many: bool = False,
) -> DBAPIError:
    """A DBAPI failure as SQLAlchemy raises it (``IntegrityError``, ``OperationalError``, …):
    callers settle races on those (``run_unit`` reruns its unit after a unique violation of a
    concurrent transaction); the DBAPI's own class would escape them as a 500."""
    return DBAPIError.instance(  # type: ignore[no-any-return]
        sql,
        values,
        exc,
        dialect.loaded_dbapi.Error,
        dialect=dialect,
        connection_invalidated=dialect.is_disconnect(exc, dbapi_connection, cursor),
        ismulti=many,
    )


# -- a transaction without the session --------------------------------------------------------


class SessionNeeded(Exception):
    """Code inside :func:`raw_transaction` reached for the ORM session: run the unit through
    the session instead (the raw transaction is rolled back first)."""


class RawTransaction:
    """One transaction on a pooled DBAPI connection, begun and ended by hand."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.pooled = engine.raw_connection()
        self.dbapi_connection = self.pooled.dbapi_connection
        try:
            if self.dialect.name == "sqlite":
                begin_immediate(self.dbapi_connection, self._execute)
            # PostgreSQL: psycopg begins the transaction with the first statement.
        except BaseException:
            self.pooled.close()
            raise

    def _execute(self, sql: str) -> None:
        cursor = self.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql)
        except self.dialect.loaded_dbapi.Error as exc:
            raise _as_sqlalchemy_error(exc, sql, (), self.dialect, self.dbapi_connection) from exc
        finally:
            cursor.close()

    def commit(self) -> None:
        """Commit (on SQLite this also releases the writer lock: ``bridge.database``)."""
        try:
            self.dbapi_connection.commit()  # type: ignore[union-attr]
        except self.dialect.loaded_dbapi.Error as exc:
            raise _as_sqlalchemy_error(exc, "COMMIT", (), self.dialect, self.dbapi_connection) from exc

    def end(self, *, failed: bool) -> None:
        """Roll back when ``failed`` and hand the connection back to the pool (a connection that
        cannot even roll back is dropped from it)."""
        try:
            if failed:
                self.dbapi_connection.rollback()  # type: ignore[union-attr]
        except Exception:
            self.pooled.invalidate()
        finally:
            self.pooled.close()


_CURRENT: ContextVar[RawTransaction | None] = ContextVar("bridge_raw_transaction", default=None)


def session_is_idle() -> bool:
    """True when the session holds no transaction (or does not exist yet), so a raw
    transaction may begin without waiting for, or seeing less than, the session's own."""
    return not (db.session.registry.has() and db.session().in_transaction())


@contextmanager
def raw_transaction() -> Iterator[RawTransaction]:
    """Run the block in one transaction without the ORM session (module docstring): committed
    when the block ends, rolled back if it raises (:class:`SessionNeeded` included). Only when
    :func:`session_is_idle` (else it would wait for, or not see, the session's transaction)."""
    if not session_is_idle():
        raise RuntimeError("a raw transaction cannot begin while the session holds one")
    transaction = RawTransaction(db.engine)
    token = _CURRENT.set(transaction)
    failed = True
    try:
        yield transaction
        _CURRENT.reset(token)
        token = None
        transaction.commit()
        failed = False
    finally:
        if token is not None:
            _CURRENT.reset(token)
        transaction.end(failed=failed)


@event.listens_for(Session, "after_transaction_create")
def _refuse_the_session(_session: Session, transaction: SessionTransaction) -> None:
    """Inside a raw transaction the session must not begin one of its own: it would use a
    second connection (on SQLite: wait for the writer lock the raw one holds)."""
    if transaction.parent is None and _CURRENT.get() is not None:
        raise SessionNeeded("the ORM session was used inside a raw transaction")
