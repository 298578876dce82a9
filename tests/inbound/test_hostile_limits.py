"""Issue 18, items 9 and 11: each kind of failure counted apart, the client address read through
trusted proxies only, ``/register`` and the activity webhook limited, and the bad-day answers
(database down, cookie over https, private SQLite files)."""

from __future__ import annotations

import os
import re
import stat
from typing import Any

import pytest
from sqlalchemy import select

from bridge import create_app
from bridge.extensions import db
from bridge.models import WebhookEvent

from .payloads import subscriber

WRONG_KEY = "wrong-key-0000000000000000"
SECRET = "activity-secret-for-limit-tests"
ADMIN_EMAIL, ADMIN_PASSWORD = "owner@example.com", "the owner's long password"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "CRM_WEBHOOK_SECRET": SECRET, "BRIDGE_FAILED_KEY_CACHE_SECONDS": 0}


@pytest.fixture
def admin(app) -> None:
    from werkzeug.security import generate_password_hash

    from bridge.accounts.users import ADMIN_ROLE, create_user

    with app.app_context():
        create_user(
            email=ADMIN_EMAIL,
            password_hash=generate_password_hash(ADMIN_PASSWORD, "pbkdf2:sha256:1"),
            role=ADMIN_ROLE,
        )
        db.session.commit()


def admin_login(client, password: str, **environ: Any):
    page = client.get("/admin/login", environ_base=environ).get_data(as_text=True)
    token = _CSRF.search(page).group(1)
    return client.post(
        "/admin/login",
        data={"email": ADMIN_EMAIL, "password": password, "csrf_token": token},
        environ_base=environ,
    )


# -- item 9: one kind of failure never locks out another --------------------------------------


def test_wrong_admin_passwords_do_not_lock_out_webhooks(client, admin, fluent_key, hook):
    for _ in range(21):
        assert admin_login(client, "wrong password").status_code == 401
    assert admin_login(client, "wrong password").status_code == 429  # the console's own limit
    assert hook("test", fluent_key).status_code == 200


def test_wrong_webhook_keys_do_not_lock_out_the_console(client, admin, fluent_key, hook):
    for _ in range(21):
        assert hook("test", WRONG_KEY).status_code == 403
    assert hook("test", fluent_key).status_code == 429
    assert admin_login(client, ADMIN_PASSWORD).status_code == 302


def test_wrong_activity_secrets_are_limited_and_counted_apart(client, fluent_key, hook):
    def post(secret: str):
        return client.post("/webhooks/crm/lead", json={"crm_lead_id": "1"}, headers={"X-API-Key": secret})

    for _ in range(21):
        assert post("wrong-secret").status_code == 401
    refused = post(SECRET)  # the right secret, too late: no guessing 60 and then the right one
    assert refused.status_code == 429 and refused.get_json()["error"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert hook("test", fluent_key).status_code == 200


def test_behind_a_trusted_proxy_each_client_is_counted_by_its_own_address(app_config, app, fluent_key):
    proxied = create_app({**app_config, "BRIDGE_TRUSTED_PROXIES": 1})
    client = proxied.test_client()

    def hook(key: str, forwarded: str):
        return client.post(f"/?wpf_action=test&access_key={key}", headers={"X-Forwarded-For": forwarded})

    for _ in range(21):
        assert hook(WRONG_KEY, "203.0.113.7").status_code == 403
    assert hook(fluent_key, "203.0.113.7").status_code == 429
    assert hook(fluent_key, "198.51.100.8").status_code == 200  # another CRM behind the same proxy
    with proxied.app_context():
        addresses = set(db.session.scalars(select(WebhookEvent.source_ip)))
        db.session.remove()
        db.engine.dispose()
    assert addresses == {"203.0.113.7", "198.51.100.8"}


def test_without_trusted_proxies_a_forwarded_header_is_ignored(app, client, fluent_key):
    for _ in range(21):
        client.post(f"/?wpf_action=test&access_key={WRONG_KEY}", headers={"X-Forwarded-For": "203.0.113.7"})
    response = client.post(f"/?wpf_action=test&access_key={fluent_key}", headers={"X-Forwarded-For": "198.51.100.8"})
    assert response.status_code == 429  # both came from 127.0.0.1, whatever the header says
    with app.app_context():
        assert set(db.session.scalars(select(WebhookEvent.source_ip))) == {"127.0.0.1"}


# -- item 11 -----------------------------------------------------------------------------------


def test_register_is_limited_to_ten_attempts_a_minute(app, client):
    app.config["WTF_CSRF_ENABLED"] = False
    statuses = [
        client.post(
            "/register",
            data={"email": f"u{n}@example.com", "password": "pw-0123456789", "password_confirm": "pw-0123456789"},
        ).status_code
        for n in range(11)
    ]
    assert statuses == [201] * 10 + [429]


def test_session_cookie_is_secure_when_the_base_url_is_https(app_config, tmp_path, monkeypatch):
    monkeypatch.setenv("BRIDGE_INSTANCE_PATH", str(tmp_path / "secure"))
    assert create_app({**app_config, "BRIDGE_BASE_URL": "https://bridge.example.com"}).config["SESSION_COOKIE_SECURE"]
    assert not create_app({**app_config, "BRIDGE_BASE_URL": "http://localhost:5000"}).config["SESSION_COOKIE_SECURE"]


def test_sqlite_files_are_private(app, backend, fluent_key, hook):
    if backend != "sqlite":
        pytest.skip("SQLite files only")
    assert hook("add", fluent_key, subscriber()).status_code == 200
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    files = [path + suffix for suffix in ("", "-wal", "-shm") if os.path.exists(path + suffix)]
    assert path in files
    assert {name: stat.S_IMODE(os.stat(name).st_mode) for name in files} == dict.fromkeys(files, 0o600)


def test_a_database_outage_is_503_with_retry_after(app_config, backend, tmp_path, monkeypatch):
    import socket

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'no-such-folder' / 'bridge.sqlite3'}"
    else:
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/nothing"
    monkeypatch.setenv("BRIDGE_INSTANCE_PATH", str(tmp_path / "outage"))
    down = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url})
    client = down.test_client()
    for response in (
        client.post("/?wpf_action=add&access_key=whatever", json=subscriber()),
        client.get("/api/users", headers={"Authorization": "Bearer token"}),
    ):
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.get_json()["error"] == "database_unavailable"
        assert int(response.headers["Retry-After"]) > 0
