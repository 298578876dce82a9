"""Shared fixtures: a fresh app per test (Flask tutorial style), on SQLite always and on
PostgreSQL too when ``BRIDGE_TEST_DATABASE_URL`` is set (every app-using test runs on both)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from support import FIXTURES, LiveServer, QuietServer, Receiver, load_fixture, receiver_handler  # noqa: F401

from bridge import create_app
from bridge.extensions import db
from crm_adapters.oauth import REFRESH_GRANTS
from crm_adapters.tag_catalogue import CATALOGUE

PG_URL = os.environ.get("BRIDGE_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
ENV_TO_CLEAR = (
    "DATABASE_URL",
    "SECRET_KEY",
    "BRIDGE_WORKER",
    "BRIDGE_ALLOW_PRIVATE_TARGETS",
    "BRIDGE_OUTBOUND_ALLOWLIST",
    "BRIDGE_MAIL_URL",
    "BRIDGE_MAX_BODY_BYTES",
    "BRIDGE_BASE_URL",
    "BRIDGE_RATELIMIT_STORAGE_URL",
    "CRM_WEBHOOK_SECRET",
    "CRM_CALLBACK_SECRET",
    "BRIDGE_PUBLIC_SIGNUP",
    "BRIDGE_FAILED_KEY_CACHE_SECONDS",
    "BRIDGE_ACCESS_KEY_CACHE_SECONDS",
)


_pg_schema_ready = False


def _reset_postgres(app) -> None:
    """Create the schema once per session, then empty every table between tests."""
    global _pg_schema_ready
    with app.app_context():
        if not _pg_schema_ready:
            db.drop_all()
            with db.engine.begin() as conn:
                conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
            db.create_all()
            _pg_schema_ready = True
        else:
            tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            with db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(autouse=True)
def _forget_refresh_grants() -> Iterator[None]:
    """Refresh tokens redeemed by one test are not shared with the next (crm_adapters.oauth)."""
    yield
    REFRESH_GRANTS.clear()


@pytest.fixture(autouse=True)
def _forget_crm_tags() -> Iterator[None]:
    """A CRM's tags listed in one test are not known to the next (crm_adapters.tag_catalogue)."""
    yield
    CATALOGUE.clear()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def app_config(backend: str, tmp_path: Path) -> dict[str, Any]:
    """Override to change settings for one test module (``app_config`` fixture)."""
    url = f"sqlite:///{tmp_path / 'test.sqlite3'}" if backend == "sqlite" else PG_URL
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": url,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "BRIDGE_ALLOW_PRIVATE_TARGETS": False,
        "WTF_CSRF_ENABLED": True,
        "BRIDGE_WORKER_NICE": 0,  # `bridge worker` run in-process must not lower pytest's priority
    }


@pytest.fixture
def app(app_config: dict[str, Any], backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BRIDGE_INSTANCE_PATH", str(tmp_path / "instance"))
    application = create_app(app_config)
    if backend == "postgresql":
        _reset_postgres(application)
    with application.app_context():
        if backend == "sqlite":
            db.create_all()
        from bridge.accounts.users import ensure_default_roles

        ensure_default_roles()
        db.session.commit()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def ctx(app) -> Iterator[None]:
    """An app context for tests that call services directly."""
    with app.app_context():
        yield


@pytest.fixture
def make_connection(app):
    """``make_connection(name, type, **settings) -> access key`` (committed)."""

    def factory(name: str = "fluent", type_slug: str = "fluentcrm", **settings: Any) -> str:
        from bridge.connections.service import create_connection

        with app.app_context():
            _, key = create_connection(name, type_slug, settings)
            db.session.commit()
            return key

    return factory


@pytest.fixture
def api_token(app) -> str:
    from bridge.api.auth import create_token

    with app.app_context():
        _, token = create_token("tests")
        db.session.commit()
        return token


@pytest.fixture
def auth_headers(api_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token}"}


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def dump_database(app) -> Callable[[], str]:
    """Every row of every table as text: to prove a secret is nowhere in storage."""

    def dump() -> str:
        with app.app_context():
            parts = []
            for table in db.metadata.sorted_tables:
                parts += [repr(tuple(row)) for row in db.session.execute(select(table))]
            return "\n".join(parts)

    return dump


@pytest.fixture
def crm_fixture() -> Callable[[str], Any]:
    """A shared CRM fixture file by relative path (``fluentcrm/api/list_tags.json``)."""
    return load_fixture


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    server = QuietServer(("127.0.0.1", 0), receiver_handler(state))
    state.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def start_worker(app):
    """``start_worker(concurrency=1)``: a delivery worker thread, stopped after the test."""
    from bridge.delivery.worker import DeliveryWorker

    started: list[DeliveryWorker] = []

    def start(**options: Any) -> DeliveryWorker:
        worker = DeliveryWorker(app, **options)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=30)
