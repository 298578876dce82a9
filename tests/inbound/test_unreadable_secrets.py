"""Webhooks to a connection whose secret was encrypted with another SECRET_KEY: 503
``secret_unreadable`` naming the setting, nothing written but the log row, no CRM call, and a
signature check never skipped for want of its secret. A job queued before the change fails
its attempt with the same clear, retryable error."""

from __future__ import annotations

import pytest
import responses
from sqlalchemy import select
from support import encrypt_with_other_key, load_delivery

from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db
from bridge.models import WebhookEvent

from .payloads import subscriber

MESSAGE = (
    "connection 'fluent': app_password cannot be decrypted (encrypted with another SECRET_KEY: restore that key, "
    "or set it again with `crm-bridge connection set fluent KEY=VALUE`)"
)


@pytest.fixture
def unreadable_key(app, fluent_key) -> str:
    encrypt_with_other_key(app, "fluent", "app_password")
    return fluent_key


def changed_rows(table_counts, send) -> dict[str, int]:
    before = table_counts()
    send()
    after = table_counts()
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


@pytest.mark.parametrize(
    ("action", "params"),
    [("add", {}), ("update", {}), ("update_tags", {}), ("add", {"async": "1"}), ("test", {})],
    ids=["add", "update", "update_tags", "async", "test"],
)
def test_every_action_is_a_503_that_writes_only_its_log_row(app, hook, unreadable_key, table_counts, action, params):
    responses_seen = []

    def send() -> None:
        with responses.RequestsMock():  # no request may reach the CRM
            responses_seen.append(hook(action, unreadable_key, subscriber(tags=None), **params))

    assert changed_rows(table_counts, send) == {"webhook_event": 1}
    [response] = responses_seen
    assert response.status_code == 503
    assert response.get_json() == {"success": False, "error": "secret_unreadable", "message": MESSAGE}
    with app.app_context():
        event = db.session.scalar(select(WebhookEvent))
        assert (event.connection_name, event.status_code, event.outcome) == ("fluent", 503, "secret_unreadable")
        assert "enc:v1:" not in (event.message or "") and unreadable_key not in (event.payload or "")


def test_requests_refused_before_the_key_still_are(hook, unreadable_key):
    assert hook("add", "cbk_wrong").status_code == 403
    assert hook(None, unreadable_key).status_code == 400  # missing_action comes first


def test_a_signature_is_never_skipped_for_want_of_its_secret(app, hook, make_connection, table_counts):
    key = make_connection(
        "mautic", "mautic", base_url="https://mautic.example.com", username="u", webhook_secret="mautic-hook-secret"
    )
    encrypt_with_other_key(app, "mautic", "webhook_secret")
    body = {"mautic.lead_post_save_new": [{"contact": {"id": 5, "fields": {"core": {}}}}]}
    responses_seen = []
    assert changed_rows(table_counts, lambda: responses_seen.append(hook("add", key, body))) == {"webhook_event": 1}
    assert responses_seen[0].status_code == 503
    assert responses_seen[0].get_json()["error"] == "secret_unreadable"
    assert "webhook_secret" in responses_seen[0].get_json()["message"]


def test_a_job_queued_before_the_change_fails_its_attempt_clearly_and_stays_retryable(app, hook, fluent_key):
    queued = hook("add", fluent_key, subscriber(), **{"async": "1"})
    assert queued.status_code == 202
    encrypt_with_other_key(app, "fluent", "app_password")
    with responses.RequestsMock():
        assert DeliveryWorker(app).run(once=True) == 1
    delivery = load_delivery(app, queued.get_json()["job_id"])
    assert delivery.status == "failed"
    assert delivery.last_error == f"secret_unreadable: {MESSAGE}"
