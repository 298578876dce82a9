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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

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
        session = db.session()
        if session.new or session.dirty or session.deleted:
            session.flush()  # as autoflush would before an ORM-enabled statement
        connection = session.connection()
        compiled = self._for(connection.dialect)
        values = [_bind(compiled, row) for row in params] if many else _bind(compiled, params)
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        for listener in connection.dispatch.before_cursor_execute:
            listener(connection, cursor, compiled.sql, values, None, many)
        dialect = connection.dialect
        try:
            if many:
                cursor.executemany(compiled.sql, values)
            else:
                cursor.execute(compiled.sql, values)
        except dialect.loaded_dbapi.Error as exc:
            # Raised as SQLAlchemy would (``IntegrityError``, ``OperationalError``, …): callers
            # settle races on those (``run_unit`` reruns its unit after a unique violation of
            # a concurrent transaction); the DBAPI's own class would escape them as a 500.
            cursor.close()
            raise DBAPIError.instance(
                compiled.sql,
                values,
                exc,
                dialect.loaded_dbapi.Error,
                dialect=dialect,
                connection_invalidated=dialect.is_disconnect(exc, connection.connection.dbapi_connection, cursor),
                ismulti=many,
            ) from exc
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
