"""Engine tuning per backend.

SQLite: WAL so readers never wait for the writer, foreign keys on, and every transaction
started with ``BEGIN IMMEDIATE``. Python's sqlite3 otherwise opens deferred transactions, and a
deferred transaction that read before writing fails at once with "database is locked" when
another writer got in first (busy_timeout cannot help there); taking the write lock up front
makes concurrent webhooks queue for it instead. This is SQLAlchemy's documented recipe for
controlling SQLite transactions ("Serializable isolation / Savepoints / Transactional DDL").
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from bridge.extensions import db


def is_sqlite(engine: Engine | None = None) -> bool:
    return (engine or db.engine).dialect.name == "sqlite"


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def init_app(app: Flask) -> None:
    from bridge import models  # noqa: F401  (registers the tables on the metadata)

    db.init_app(app)
    with app.app_context():
        engine = db.engine
        if is_sqlite(engine):
            _tune_sqlite(engine)


def upgrade_schema() -> None:
    """Bring the schema to the newest Alembic revision (creates it on an empty database)."""
    from flask_migrate import upgrade

    upgrade()
