"""Operators' view: the deliveries API and CLI, /healthz, /metrics."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select, update

from bridge.delivery import outbox
from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db
from bridge.models import Delivery, WebhookEvent, WorkerHeartbeat, utcnow


def finish(app, behaviour, *, fail: bool) -> None:
    from crm_adapters.errors import CrmRejected

    def act(ctx):
        if fail:
            raise CrmRejected("echo answered HTTP 400: rejected", status=400)
        return {"ok": True}

    behaviour.action = act
    DeliveryWorker(app).run(once=True)


def test_deliveries_api_lists_shows_retries_and_replays(app, client, auth_headers, queue, behaviour):
    dead_id = queue(field="x", password="enc:v1:secret")
    finish(app, behaviour, fail=True)
    ok_id = queue()
    finish(app, behaviour, fail=False)

    listed = client.get("/api/deliveries?status=dead", headers=auth_headers).get_json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == dead_id and listed["page"] == 1
    assert client.get("/api/deliveries", headers=auth_headers).get_json()["total"] == 2
    assert client.get("/api/deliveries?status=bogus", headers=auth_headers).status_code == 400

    shown = client.get(f"/api/deliveries/{dead_id}", headers=auth_headers).get_json()
    assert shown["status"] == "dead" and shown["last_error"].startswith("crm_rejected")
    assert shown["attempt_log"][0]["error_class"] == "crm_rejected"
    assert "secret" not in json.dumps(shown)
    assert client.get("/api/deliveries/999", headers=auth_headers).status_code == 404

    not_retryable = client.post(f"/api/deliveries/{ok_id}/retry", headers=auth_headers)
    assert not_retryable.status_code == 409
    retried = client.post(f"/api/deliveries/{dead_id}/retry", headers=auth_headers).get_json()
    assert retried["delivery"]["status"] == "pending"
    finish(app, behaviour, fail=True)

    future = (utcnow() + timedelta(hours=1)).isoformat() + "Z"
    none = client.post("/api/deliveries/replay", json={"status": "dead", "since": future}, headers=auth_headers)
    assert none.get_json()["replayed"] == 0
    replayed = client.post("/api/deliveries/replay", json={}, headers=auth_headers).get_json()
    assert replayed == {"success": True, "status": "dead", "replayed": 1}
    bad = client.post("/api/deliveries/replay", json={"since": "yesterday"}, headers=auth_headers)
    assert bad.status_code == 400


def test_deliveries_cli(app, runner, queue, behaviour):
    dead_id = queue()
    finish(app, behaviour, fail=True)
    listed = json.loads(runner.invoke(args=["bridge", "deliveries", "list", "--status", "dead", "--json"]).output)
    assert [d["id"] for d in listed["items"]] == [dead_id]
    text = runner.invoke(args=["bridge", "deliveries", "list"]).output
    assert "dead" in text and "crm_rejected" in text

    retried = runner.invoke(args=["bridge", "deliveries", "retry", str(dead_id), "--json"])
    assert json.loads(retried.output)["delivery"]["status"] == "pending"
    missing = runner.invoke(args=["bridge", "deliveries", "retry", "999", "--json"])
    assert missing.exit_code == 1 and json.loads(missing.output)["error"] == "not_found"

    finish(app, behaviour, fail=True)
    replay = runner.invoke(args=["bridge", "deliveries", "replay", "--since", "2000-01-01T00:00:00Z", "--json"])
    assert json.loads(replay.output)["replayed"] == 1

    behaviour.action = lambda ctx: {"ok": True}
    worked = runner.invoke(args=["bridge", "worker", "--once", "--concurrency", "2", "--json"])
    assert worked.exit_code == 0 and json.loads(worked.output)["processed"] == 1
    with app.app_context():
        assert db.session.get(Delivery, dead_id).status == "succeeded"


def test_healthz_reports_database_worker_and_queue(app, client, queue):
    assert client.get("/healthz").get_json() == {
        "status": "degraded",  # no worker beat in 60 s (none ever ran)
        "reasons": ["no_worker"],
        "database": "ok",
        "worker": {"last_heartbeat_s": None, "alive": 0},
        "queue": {"pending": 0, "dead": 0, "died_last_hour": 0, "oldest_due_wait_s": None},
    }
    queue()
    waiting = client.get("/healthz").get_json()
    assert waiting["status"] == "degraded" and waiting["queue"]["pending"] == 1  # work, no worker
    with app.app_context():
        db.session.add(WorkerHeartbeat(worker_id="w1", last_seen=utcnow() - timedelta(seconds=3)))
        db.session.commit()
    alive = client.get("/healthz").get_json()
    assert alive["status"] == "ok" and 2 <= alive["worker"]["last_heartbeat_s"] < 30
    assert alive["worker"]["alive"] == 1
    with app.app_context():
        db.session.add(WorkerHeartbeat(worker_id="w2", last_seen=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert client.get("/healthz").get_json()["worker"]["alive"] == 2  # e.g. a worker command's two processes
    with app.app_context():
        db.session.execute(update(WorkerHeartbeat).values(last_seen=utcnow() - timedelta(minutes=5)))
        db.session.commit()
    gone = client.get("/healthz").get_json()
    assert gone["status"] == "degraded" and gone["worker"]["alive"] == 0


def test_a_starting_worker_forgets_workers_gone_for_a_day(app, client):
    with app.app_context():
        db.session.add(WorkerHeartbeat(worker_id="old", last_seen=utcnow() - timedelta(days=2)))
        db.session.add(WorkerHeartbeat(worker_id="recent", last_seen=utcnow() - timedelta(hours=2)))
        db.session.commit()
    worker = DeliveryWorker(app)
    worker.run(once=True)
    with app.app_context():
        assert set(db.session.scalars(select(WorkerHeartbeat.worker_id))) == {"recent", worker.worker_id}


def test_a_worker_run_leaves_a_heartbeat(app, client, queue, behaviour):
    queue()
    DeliveryWorker(app).run(once=True)
    assert client.get("/healthz").get_json()["worker"]["last_heartbeat_s"] < 5


def test_metrics_read_the_database(app, client, queue, behaviour):
    with app.app_context():
        for action, status in (("add", 200), ("add", 200), ("update", 403)):
            db.session.add(WebhookEvent(action=action, status_code=status, method="POST", outcome="x"))
        db.session.commit()
    queue()
    finish(app, behaviour, fail=False)
    queue(kind=outbox.CONTACT_UPSERT)
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    assert 'crm_bridge_inbound_requests_total{action="add",status="200"} 2.0' in text
    assert 'crm_bridge_inbound_requests_total{action="update",status="403"} 1.0' in text
    assert 'crm_bridge_deliveries{kind="test.job",status="succeeded"} 1.0' in text
    assert 'crm_bridge_deliveries{kind="contact.upsert",status="pending"} 1.0' in text
    assert "crm_bridge_queue_depth 1.0" in text
    assert 'crm_bridge_delivery_latency_seconds_bucket{le="+Inf"} 1.0' in text
    assert "crm_bridge_delivery_latency_seconds_count 1.0" in text
    assert "crm_bridge_workers_alive 1.0" in text  # the worker that ran in finish()
