"""Secrets stay out of logs and stored rows: the access key, a generated password and the CRM
credentials are found in no captured log line and in no column of any table."""

from __future__ import annotations

import logging

import requests
from sqlalchemy import select

from bridge.extensions import db

from .conftest import FLUENT_SETTINGS
from .payloads import subscriber


def every_stored_text(app) -> str:
    with app.app_context():
        chunks = []
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(select(table)):
                chunks.append(repr(tuple(row)))
        return "\n".join(chunks)


def test_key_password_and_credentials_appear_in_no_log_and_no_table(app, live_server, make_connection, caplog):
    caplog.set_level(logging.DEBUG)
    key = make_connection(
        "fluent",
        "fluentcrm",
        return_password_field="wp_password",
        return_password_in_response=True,
        **FLUENT_SETTINGS,
    )
    url = live_server.url + "/"
    with requests.Session() as http:
        created = http.post(url, params={"wpf_action": "add", "access_key": key}, json=subscriber(), timeout=30)
        password = created.json()["password"]
        # The key in a header, in a form body, in a JSON body, and failing requests around it.
        http.post(url, params={"wpf_action": "update"}, headers={"X-Access-Key": key}, json=subscriber(), timeout=30)
        http.post(url, data={"wpf_action": "update_tags", "access_key": key, "contact[id]": "42"}, timeout=30)
        http.post(url, params={"wpf_action": "nope", "access_key": key}, json={"access_key": key}, timeout=30)
        http.get(url, params={"wpf_action": "test", "access_key": key + "x"}, timeout=30)
        http.post(url, params={"wpf_action": "add", "access_key": key, "async": "1"}, json=subscriber(7), timeout=30)
    assert created.status_code == 200 and len(password) >= 16

    logged = caplog.text
    stored = every_stored_text(app)
    for secret in (key, password, FLUENT_SETTINGS["app_password"]):
        assert secret not in logged
        assert secret not in stored
    # Werkzeug's request line was logged, scrubbed.
    assert "POST /?wpf_action=add&access_key=[redacted] HTTP/1.1" in logged
    assert stored.count("access_key=[redacted]") >= 3


def test_password_fields_in_payloads_are_masked_in_the_log(app, hook, fluent_key, api_token):
    hook("add", fluent_key, subscriber(user_pass="hunter2-hunter2", password="another-secret-1"))
    stored = every_stored_text(app)
    assert "hunter2-hunter2" not in stored and "another-secret-1" not in stored
    events = app.test_client().get("/api/webhook-events", headers={"Authorization": f"Bearer {api_token}"})
    payload = events.get_json()["items"][0]["payload"]
    assert '"user_pass": "********"' in payload and '"password": "********"' in payload
