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

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
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
        compiled, cursor = self._run(params)
        found = cursor.fetchall()
        cursor.close()
        if any(compiled.results):
            processors = compiled.results
            return [tuple(p(v) if p else v for p, v in zip(processors, row, strict=True)) for row in found]
        return [tuple(row) for row in found]

    def execute(self, params: Mapping[str, Any]) -> int:
        """Run a write; the number of rows it touched."""
        cursor = self._run(params)[1]
        count = int(cursor.rowcount)
        cursor.close()
        return count

    def _run(self, params: Mapping[str, Any]) -> tuple[_Compiled, Any]:
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
        values = _bind(compiled, params)
        cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
        for listener in listeners:
            listener(connection, cursor, compiled.sql, values, None, False)
        try:
            cursor.execute(compiled.sql, values)
        except dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise _as_sqlalchemy_error(exc, compiled.sql, values, dialect, dbapi_connection, cursor) from exc
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


class RowsInsert:
    """Many rows inserted in one statement whose text does not grow with the rows (a batch
    page's users, links, tags and items).

    SQLAlchemy writes many rows as one multi-row ``VALUES`` with a parameter per value: 900 for
    a page of 100 users. On PostgreSQL such a statement is parsed by psycopg in Python (no cache
    past 4 kB of text) and parsed and planned by the server every time, which cost more than
    writing the rows; arrays (``unnest``) cost as much again in psycopg's Python array dumper.
    Here PostgreSQL gets ``INSERT … SELECT … FROM json_to_recordset(%(rows)s::json) AS
    page_rows(column type, …)``: the page as one JSON text (``json.dumps``, in C), the same short
    statement for every page, so psycopg converts it once and prepares it on the server after a
    few pages. SQLite, whose parser is cheap and local, gets the multi-row ``VALUES`` (its text
    cached per row count), values through the columns' own bind processors (JSON, dates) as
    SQLAlchemy's. Errors are raised as SQLAlchemy's (``IntegrityError``: ``run_unit`` reruns its
    unit after a concurrent insert).
    """

    def __init__(
        self,
        table: Any,
        columns: Sequence[str],
        *,
        returning: Sequence[str] = (),
        skip_conflicts_on: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.returning = tuple(returning)
        self.skip_conflicts_on = tuple(skip_conflicts_on)
        self._columns = [table.c[name] for name in self.columns]
        self._sqlite_sql: dict[int, str] = {}
        self._postgresql_sql = ""

    def run(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Insert ``rows`` (each with every column) in the session's transaction; the
        ``returning`` columns of the inserted rows (all of them, in no promised order)."""
        if not rows:
            return []
        session = db.session()
        if session.new or session.dirty or session.deleted:
            session.flush()  # as autoflush would before an ORM-enabled statement
        connection = session.connection()
        dialect = connection.dialect
        if dialect.name == "postgresql":
            page = json.dumps([{name: row[name] for name in self.columns} for row in rows], default=_json_default)
            results = [connection.exec_driver_sql(self._postgresql(dialect), {"rows": page})]
        else:
            binders = [column.type.dialect_impl(dialect).bind_processor(dialect) for column in self._columns]
            per_statement = max(1, dialect.insertmanyvalues_max_parameters // len(self.columns))
            results = []
            for start in range(0, len(rows), per_statement):
                chunk = rows[start : start + per_statement]
                values = tuple(
                    row[name] if bind is None else bind(row[name])
                    for row in chunk
                    for name, bind in zip(self.columns, binders, strict=True)
                )
                results.append(connection.exec_driver_sql(self._sqlite(len(chunk), dialect), values))
        if not self.returning:
            return []
        return self._processed([row for result in results for row in result.all()], dialect)

    def _processed(self, found: Sequence[Any], dialect: Dialect) -> list[tuple[Any, ...]]:
        processors = [
            self.table.c[name].type.dialect_impl(dialect).result_processor(dialect, None) for name in self.returning
        ]
        if not any(processors):
            return [tuple(row) for row in found]
        return [tuple(p(v) if p else v for p, v in zip(processors, row, strict=True)) for row in found]

    def _head(self, dialect: Dialect) -> tuple[str, list[str]]:
        """``INSERT INTO table (columns)`` and the quoted column names (the table's own)."""
        quote = dialect.identifier_preparer.quote
        columns = [quote(name) for name in self.columns]
        return f"INSERT INTO {quote(self.table.name)} ({', '.join(columns)})", columns

    def _tail(self, dialect: Dialect) -> str:
        quote = dialect.identifier_preparer.quote
        tail = ""
        if self.skip_conflicts_on:
            tail += f" ON CONFLICT ({', '.join(quote(name) for name in self.skip_conflicts_on)}) DO NOTHING"
        if self.returning:
            tail += f" RETURNING {', '.join(quote(name) for name in self.returning)}"
        return tail

    def _postgresql(self, dialect: Dialect) -> str:
        if not self._postgresql_sql:
            head, columns = self._head(dialect)
            record = ", ".join(
                f"{quoted} {column.type.compile(dialect=dialect)}"
                for quoted, column in zip(columns, self._columns, strict=True)
            )
            # Identifiers from the table's metadata, quoted; values only as the one parameter.
            select = f"SELECT {', '.join(columns)} FROM json_to_recordset(%(rows)s::json) AS page_rows({record})"  # noqa: S608
            self._postgresql_sql = f"{head} {select}{self._tail(dialect)}"
        return self._postgresql_sql

    def _sqlite(self, count: int, dialect: Dialect) -> str:
        found = self._sqlite_sql.get(count)
        if found is None:
            head, _columns = self._head(dialect)
            row = "(" + ", ".join("?" * len(self.columns)) + ")"
            found = f"{head} VALUES {', '.join([row] * count)}{self._tail(dialect)}"
            if len(self._sqlite_sql) < 16:  # a page's count, the last page's, a few more
                self._sqlite_sql[count] = found
        return found


def _json_default(value: Any) -> Any:
    """Dates as PostgreSQL reads them back from JSON text (the columns hold naive UTC)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
