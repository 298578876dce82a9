"""``async=true``: validated first, queued once per identical request while open, and run by
the ``webhook.inbound`` job handler through the same rules."""

from __future__ import annotations

import pytest
import responses
from sqlalchemy import select, update

from bridge.delivery.jobs import JobContext, handler_for
from bridge.extensions import db
from bridge.inbound.service import InboundJobRejected, run_queued_webhook
from bridge.models import Connection, Delivery, User, WebhookEvent
from bridge.outbound.client import outbound_client
from crm_adapters.errors import CrmUnavailable

from .conftest import FLUENT_SETTINGS
from .payloads import FLUENT_API, fluent_tags, subscriber

ASYNC = {"async": "1"}


def queue(hook, key, body, **params) -> int:
    response = hook("add", key, body, **ASYNC, **params)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["job_id"]


def run_job(app, job_id: int) -> dict:
    with app.app_context():
        delivery = db.session.get(Delivery, job_id)
        context = JobContext(delivery=delivery, connection=delivery.connection, user=None, http=outbound_client())
        result = handler_for(delivery.kind)(context)
        db.session.commit()
        return result


def test_identical_requests_share_a_job_while_it_is_open(app, hook, fluent_key):
    first = queue(hook, fluent_key, subscriber())
    assert queue(hook, fluent_key, subscriber()) == first
    other = queue(hook, fluent_key, subscriber(first_name="Other"))
    assert other != first
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Delivery)) == 2
        db.session.get(Delivery, first).status = "succeeded"
        db.session.commit()
    assert queue(hook, fluent_key, subscriber()) not in (first, other)


def test_an_identical_job_finishing_between_insert_and_look_up_still_queues_this_one(
    app, hook, fluent_key, monkeypatch
):
    """The insert met an open identical job, which finished before the look-up found it: the
    webhook is queued again rather than answered with no job, and logged once."""
    from bridge.delivery import outbox

    first = queue(hook, fluent_key, subscriber())
    real_commit_job = outbox.commit_job
    conflicts = []

    def finish_the_first_after_the_conflict(*args, **kwargs):
        job_id = real_commit_job(*args, **kwargs)
        conflicts.append(job_id)
        with db.engine.begin() as connection:  # the worker finishes it meanwhile
            connection.execute(update(Delivery).where(Delivery.id == first).values(status="succeeded"))
        return job_id

    monkeypatch.setattr(outbox, "commit_job", finish_the_first_after_the_conflict)
    second = queue(hook, fluent_key, subscriber())
    assert conflicts == [None]
    assert second != first
    with app.app_context():
        assert db.session.get(Delivery, second).status == "pending"
        queued = db.session.scalars(select(WebhookEvent.outcome).where(WebhookEvent.outcome == "queued")).all()
        assert len(queued) == 2  # one log row per request


def test_the_job_keeps_what_the_worker_needs_but_never_the_key(app, hook, fluent_key):
    job_id = queue(hook, fluent_key, subscriber(), role="subscriber")
    with app.app_context():
        delivery = db.session.get(Delivery, job_id)
        payload = delivery.payload
        assert delivery.kind == "webhook.inbound" and delivery.dedupe_key
        assert payload["connection_id"] == db.session.scalar(select(Connection.id))
        assert payload["query"] == {"wpf_action": "add", "async": "1", "role": "subscriber"}
        assert payload["content_type"] == "application/json"
        assert '"jane.doe@example.com"' in payload["body"]
        assert fluent_key not in str(payload)
        assert db.session.scalar(select(db.func.count()).select_from(User)) == 0


def test_the_job_runs_the_same_rules(app, hook, fluent_key):
    job_id = queue(hook, fluent_key, subscriber(tags=fluent_tags("vip")))
    result = run_job(app, job_id)
    assert result["created"] is True and result["tags"] == ["vip"]
    with app.app_context():
        assert db.session.get(User, result["user_id"]).email == "jane.doe@example.com"
    assert run_job(app, job_id)["created"] is False  # at-least-once delivery stays idempotent


def test_the_job_result_never_holds_a_generated_password(app, hook, make_connection):
    key = make_connection("fluent", "fluentcrm", return_password_in_response=True, **FLUENT_SETTINGS)
    result = run_job(app, queue(hook, key, subscriber()))
    assert result["created"] is True and "password" not in result


@pytest.mark.parametrize(
    ("key_ok", "body", "status"),
    [(False, subscriber(), 403), (True, "{bad", 400), (True, {"email": "x@example.com"}, 400)],
)
def test_bad_requests_get_their_4xx_and_queue_nothing(app, hook, fluent_key, key_ok, body, status):
    response = hook("add", fluent_key if key_ok else "cbk_wrong", body, **ASYNC)
    assert response.status_code == status
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Delivery)) == 0


@responses.activate
def test_a_crm_failure_in_the_job_is_retryable_and_a_rule_failure_is_final(app, hook, fluent_key):
    responses.get(f"{FLUENT_API}/subscribers/42", status=503)
    crm_down = queue(hook, fluent_key, subscriber(email=None, tags=None))
    with pytest.raises(CrmUnavailable) as raised:
        run_job(app, crm_down)
    assert raised.value.retryable
    no_email = queue(hook, fluent_key, subscriber(contact_id=5, email=None), role="subscriber")
    responses.get(f"{FLUENT_API}/subscribers/5", json={"subscriber": {"id": 5, "email": None, "tags": []}})
    with pytest.raises(InboundJobRejected) as final:
        run_job(app, no_email)
    assert not final.value.retryable and "missing_email" in str(final.value)


def test_handler_is_registered_for_the_kind():
    assert handler_for("webhook.inbound") is run_queued_webhook


def test_queued_updates_of_one_contact_run_in_the_order_they_arrived(app, hook, fluent_key):
    """Two updates of one contact share a lane (the second waits for the first, so the last
    one wins as it would synchronously); another contact's update does not wait."""
    from bridge.delivery import deliveries

    first = queue(hook, fluent_key, subscriber(first_name="One"))
    second = queue(hook, fluent_key, subscriber(first_name="Two"))
    other = queue(hook, fluent_key, subscriber(id=99, email="other@example.com"))
    with app.app_context():
        claimed = deliveries.claim_due("w", 10, 60)
    assert sorted(claimed) == sorted([first, other])  # the second waits for the first
    assert second not in claimed


def test_accepting_a_queued_webhook_logs_it_in_the_same_commit(app, hook, fluent_key):
    from bridge.models import WebhookEvent

    job_id = queue(hook, fluent_key, subscriber())
    assert queue(hook, fluent_key, subscriber()) == job_id  # the duplicate is logged as well
    with app.app_context():
        events = db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)).all()
        assert [(e.status_code, e.outcome, e.contact_id) for e in events] == [(202, "queued", "42")] * 2
        assert all(fluent_key not in (e.path or "") for e in events)


def test_a_batch_webhooks_lane_fits_the_column():
    """A batch about many contacts gets one lane, hashed when the ids would not fit."""
    from bridge.inbound.service import webhook_lane
    from crm_adapters.base import Contact

    few = webhook_lane(3, [Contact(contact_id="9"), Contact(contact_id="10"), Contact(contact_id="9")])
    assert few == "webhook:3:10,9"
    many = [Contact(contact_id=str(n)) for n in range(100)]
    lane = webhook_lane(3, many)
    assert len(lane) <= 128 and lane.startswith("webhook:3:#")
    assert webhook_lane(3, list(reversed(many))) == lane  # the same contacts, the same lane
    assert webhook_lane(3, [Contact(contact_id=None, email="Ada@Example.com")]) == "webhook:3:ada@example.com"
