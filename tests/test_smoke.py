"""The app factory, configuration layers and the schema."""

from __future__ import annotations

import os
import stat

from bridge import create_app
from bridge.config import normalise_database_url


def test_root_page_is_not_an_error(client):
    response = client.get("/")
    assert response.status_code == 200


def test_secret_key_is_generated_once_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("BRIDGE_INSTANCE_PATH", str(tmp_path / "inst"))
    first = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/a.db"})
    second = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/a.db"})
    key_file = tmp_path / "inst" / "secret_key"
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] == key_file.read_text()
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_postgres_urls_use_psycopg3():
    assert normalise_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("sqlite:///x") == "sqlite:///x"


def test_cache_times_documented_in_the_readme_are_read_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BRIDGE_INSTANCE_PATH", str(tmp_path / "inst"))
    monkeypatch.setenv("BRIDGE_ACCESS_KEY_CACHE_SECONDS", "0")
    monkeypatch.setenv("BRIDGE_FAILED_KEY_CACHE_SECONDS", "2.5")
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/a.db", "SECRET_KEY": "k"})
    assert app.config["BRIDGE_ACCESS_KEY_CACHE_SECONDS"] == 0.0
    assert app.config["BRIDGE_FAILED_KEY_CACHE_SECONDS"] == 2.5


def test_the_app_is_ready_for_requests_when_created_without_touching_the_database(tmp_path, monkeypatch):
    """A fresh process's first webhook no longer imports the adapters or builds the URL matcher
    (issue 21), and nothing is connected yet, so ``gunicorn --preload`` can fork safely."""
    from bridge.connections.adapter_registry import adapter_types
    from bridge.extensions import db

    monkeypatch.setenv("BRIDGE_INSTANCE_PATH", str(tmp_path / "inst"))
    adapter_types.cache_clear()
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/a.db", "SECRET_KEY": "x" * 32})
    assert adapter_types.cache_info().currsize == 1 and "fluentcrm" in adapter_types()
    assert not app.url_map._remap  # the matcher is built
    with app.app_context():
        pool = db.engine.pool
        assert pool.checkedin() == 0 and pool.checkedout() == 0
