"""A pooled connection is checked before use only after it sat idle (``bridge.database``):
one used a moment ago goes straight to work, one that died while idle is replaced."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import DBAPIError

from bridge.database import IDLE_SINCE_KEY, ping_after_idle
from bridge.extensions import db


class StepClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(app_config):
    engine = create_engine(app_config["SQLALCHEMY_DATABASE_URI"], pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def connection_identity(connection, backend: str) -> object:
    if backend == "postgresql":
        return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    return id(connection.connection.dbapi_connection)


def use_then_kill(engine, backend: str) -> object:
    """Use the pool's connection, give it back, then kill it behind the pool's back."""
    with engine.connect() as connection:
        identity = connection_identity(connection, backend)
        dbapi_connection = connection.connection.dbapi_connection
    if backend == "postgresql":
        with create_engine(str(engine.url.render_as_string(hide_password=False))).connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": identity})
        other.engine.dispose()
    else:
        dbapi_connection.close()
    return identity


def test_a_connection_that_died_while_idle_is_replaced(engine, backend):
    clock = StepClock()
    ping_after_idle(engine, idle_seconds=1.0, clock=clock)
    dead = use_then_kill(engine, backend)
    clock.now += 1.5
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
        assert connection_identity(connection, backend) != dead


def test_a_connection_used_a_moment_ago_is_not_checked(engine, backend):
    """No round trip before the query: a connection killed within the second fails its query
    (and the pool then starts afresh), the price of not pinging on every checkout."""
    clock = StepClock()
    ping_after_idle(engine, idle_seconds=1.0, clock=clock)
    use_then_kill(engine, backend)
    clock.now += 0.5
    with pytest.raises(DBAPIError), engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1


def test_the_apps_postgresql_engine_replaces_a_connection_that_died_while_idle(app, backend):
    """On SQLite there is no server to lose and no check at all."""
    with app.app_context():
        engine = db.engine
        seen: list[dict] = []

        @event.listens_for(engine, "checkin")
        def long_ago(_dbapi_connection, record) -> None:  # runs after the app's own listener
            seen.append(dict(record.info))
            if IDLE_SINCE_KEY in record.info:
                record.info[IDLE_SINCE_KEY] -= 3600

        dead = use_then_kill(engine, backend)
        if backend == "sqlite":
            assert IDLE_SINCE_KEY not in seen[-1]
            return
        with engine.connect() as connection:
            assert connection_identity(connection, backend) != dead
