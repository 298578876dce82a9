"""The queries that run once per claim or per queued webhook must use the partial indexes on
unfinished rows. A bound ``status IN (?, ?, ?)`` hides the index predicate from the planner
(SQLite always, PostgreSQL in a generic plan): the claim then scanned the whole table once per
due row, 600 ms per claim with 2,000 rows queued. The plans are read as the statements are
really executed, with their parameters bound."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Select, select, text

from bridge.delivery import deliveries, outbox
from bridge.extensions import db
from bridge.models import Delivery, utcnow


def plan(statement: Select[Any]) -> str:
    """The plan the database uses for ``statement`` with bound parameters (a generic plan on
    PostgreSQL, sequential scans priced out so only a usable index can avoid one)."""
    compiled = statement.compile(dialect=db.engine.dialect, compile_kwargs={"render_postcompile": True})
    connection = db.session.connection()
    if db.engine.dialect.name == "sqlite":
        params = [compiled.params[name] for name in compiled.positiontup or []]
        cursor = connection.connection.cursor()
        rows = cursor.execute("EXPLAIN QUERY PLAN " + str(compiled), params).fetchall()
        return "\n".join(str(row[-1]) for row in rows)
    connection.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
    connection.execute(text("SET LOCAL enable_seqscan = off"))
    cursor = connection.connection.cursor()
    cursor.execute("PREPARE planned AS " + _numbered(compiled), prepare=False)
    values = ", ".join(_literal(compiled.params[name]) for name in _order(compiled))
    rows = cursor.execute(f"EXPLAIN EXECUTE planned({values})").fetchall()
    cursor.execute("DEALLOCATE planned")
    return "\n".join(str(row[0]) for row in rows)


def _order(compiled: Any) -> list[str]:
    return list(dict.fromkeys(re.findall(r"%\((\w+)\)s", str(compiled))))


def _numbered(compiled: Any) -> str:
    sql = str(compiled)
    for number, name in enumerate(_order(compiled), start=1):
        sql = sql.replace(f"%({name})s", f"${number}")
    return sql


def _literal(value: Any) -> str:
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def test_the_claims_lane_check_uses_the_index_of_unfinished_rows(ctx):
    outbox.enqueue("test.job", ordering="1:1")
    db.session.flush()
    assert "ix_delivery_open_lane" in plan(deliveries.claimable_ids_query(utcnow(), 8))


def test_the_queued_webhook_lookup_uses_the_dedupe_index(ctx):
    statement = select(Delivery.id).where(Delivery.dedupe_key == "k", outbox.is_open(Delivery.status))
    assert "uq_delivery_queued_dedupe" in plan(statement)


def test_a_bound_status_list_would_not_use_it(ctx):
    """The guard above is real: the same lookup with the statuses bound misses the index."""
    statement = select(Delivery.id).where(Delivery.dedupe_key == "k", Delivery.status.in_(outbox.OPEN_STATUSES))
    assert "uq_delivery_queued_dedupe" not in plan(statement)
