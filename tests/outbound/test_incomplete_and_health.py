"""Issue 18 item 10, over HTTP against a real server: an incomplete connection (``make serve``'s
``default`` before its credentials are set) receives no pushes, and ``/healthz`` is degraded by
each rule of CONTRACT §10, naming which."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import requests
from sqlalchemy import update

from bridge.extensions import db
from bridge.models import Delivery, WorkerHeartbeat, utcnow

FLUENT = {"base_url": "https://crm.example.com", "username": "api", "app_password": "app-pass-123456"}


def deliveries_to(server: Any, headers: dict[str, str], connection: str) -> int:
    answer = requests.get(f"{server.url}/api/deliveries?connection={connection}", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total"])


def register(server: Any, headers: dict[str, str], email: str) -> None:
    answer = requests.post(f"{server.url}/api/users", json={"email": email}, headers=headers, timeout=30)
    assert answer.status_code == 201, answer.text


def test_an_incomplete_connection_receives_no_pushes(
    live_server: Any, auth_headers: dict[str, str], make_connection
) -> None:
    make_connection("default", "fluentcrm")  # what `make serve` creates: no credentials
    make_connection("fluent", "fluentcrm", **FLUENT)
    shown = requests.get(f"{live_server.url}/api/connections/default", headers=auth_headers, timeout=30).json()
    assert shown["missing_settings"]

    for number in range(3):
        register(live_server, auth_headers, f"user{number}@example.com")
    assert deliveries_to(live_server, auth_headers, "default") == 0
    assert deliveries_to(live_server, auth_headers, "fluent") == 3

    completed = requests.patch(
        f"{live_server.url}/api/connections/default", json={"settings": FLUENT}, headers=auth_headers, timeout=30
    )
    assert completed.status_code == 200, completed.text
    register(live_server, auth_headers, "later@example.com")
    assert deliveries_to(live_server, auth_headers, "default") == 1  # once complete, it gets pushes


def health(server: Any) -> dict[str, Any]:
    answer = requests.get(f"{server.url}/healthz", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_healthz_is_degraded_by_each_rule_and_says_which(app, live_server: Any, queue) -> None:
    def change(statement: Any) -> None:
        with app.app_context():
            db.session.execute(statement)
            db.session.commit()

    with app.app_context():
        db.session.add(WorkerHeartbeat(worker_id="w1", last_seen=utcnow()))
        db.session.commit()
    assert health(live_server)["status"] == "ok"

    change(update(WorkerHeartbeat).values(last_seen=utcnow() - timedelta(seconds=90)))
    silent = health(live_server)
    assert (silent["status"], silent["reasons"]) == ("degraded", ["no_worker"])  # with nothing queued
    change(update(WorkerHeartbeat).values(last_seen=utcnow()))

    died = queue()
    change(
        update(Delivery).where(Delivery.id == died).values(status="dead", updated_at=utcnow() - timedelta(minutes=50))
    )
    dead = health(live_server)
    assert (dead["status"], dead["reasons"]) == ("degraded", ["delivery_died"])
    assert dead["queue"]["died_last_hour"] == 1
    change(update(Delivery).where(Delivery.id == died).values(updated_at=utcnow() - timedelta(minutes=70)))
    assert health(live_server)["status"] == "ok"  # died over an hour ago

    waiting = queue()
    change(update(Delivery).where(Delivery.id == waiting).values(next_attempt_at=utcnow() - timedelta(minutes=4)))
    assert health(live_server)["status"] == "ok"  # due, waited under five minutes
    change(update(Delivery).where(Delivery.id == waiting).values(next_attempt_at=utcnow() - timedelta(minutes=6)))
    delayed = health(live_server)
    assert (delayed["status"], delayed["reasons"]) == ("degraded", ["queue_delayed"])
    assert delayed["queue"]["oldest_due_wait_s"] > 300
