"""Claiming with leases, ordering lanes, outcomes, and the operator actions (bridge.delivery.deliveries)."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select, update

from bridge.delivery import deliveries, outbox
from bridge.delivery.deliveries import AttemptRecord
from bridge.extensions import db
from bridge.models import Delivery, DeliveryAttempt, utcnow


def add(kind: str = "test.job", ordering: str | None = None, **payload) -> Delivery:
    row = outbox.enqueue(kind, payload=payload, ordering=ordering)
    db.session.commit()
    return row


def status_of(delivery_id: int) -> str:
    return db.session.scalar(select(Delivery.status).where(Delivery.id == delivery_id))


def claimed_row(delivery_id: int) -> Delivery:
    row = db.session.get(Delivery, delivery_id)
    db.session.refresh(row)
    return row


def test_a_lane_is_delivered_in_order(ctx):
    first, second = add(ordering="1:7"), add(ordering="1:7")
    other = add(ordering="1:8")
    assert sorted(deliveries.claim_due("w", 10, 60)) == [first.id, other.id]  # second waits for first
    deliveries.record_outcome(claimed_row(first.id), "w", AttemptRecord(utcnow(), 1, []))
    assert deliveries.claim_due("w", 10, 60) == [second.id]


def test_a_failed_row_holds_its_lane_but_a_dead_one_does_not(ctx):
    first, second = add(ordering="k"), add(ordering="k")
    deliveries.claim_due("w", 10, 60)
    failure = AttemptRecord(utcnow(), 1, [], error_class="crm_unavailable", error_message="503", retryable=True)
    assert deliveries.record_outcome(claimed_row(first.id), "w", failure).status == "failed"
    assert deliveries.claim_due("w", 10, 60) == []  # the retry is not due and blocks the lane
    db.session.execute(update(Delivery).where(Delivery.id == first.id).values(next_attempt_at=utcnow()))
    db.session.commit()
    assert deliveries.claim_due("w", 10, 60) == [first.id]
    final = AttemptRecord(utcnow(), 1, [], error_class="crm_rejected", error_message="400")
    assert deliveries.record_outcome(claimed_row(first.id), "w", final).status == "dead"
    assert deliveries.claim_due("w", 10, 60) == [second.id]


def test_an_expired_lease_makes_the_row_claimable_again(ctx):
    row = add()
    assert deliveries.claim_due("dead-worker", 10, 60) == [row.id]
    assert deliveries.claim_due("other", 10, 60) == []  # leased
    db.session.execute(
        update(Delivery).where(Delivery.id == row.id).values(lease_until=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    assert deliveries.claim_due("other", 10, 60) == [row.id]
    again = claimed_row(row.id)
    assert (again.lease_owner, again.attempts, again.status) == ("other", 2, "in_flight")
    # The first worker's late result is recorded but does not move the row.
    late = deliveries.record_outcome(claimed_row(row.id), "dead-worker", AttemptRecord(utcnow(), 1, []))
    assert late.status == "lease_lost" and status_of(row.id) == "in_flight"
    assert deliveries.record_outcome(claimed_row(row.id), "other", AttemptRecord(utcnow(), 1, [])).status == (
        "succeeded"
    )
    assert db.session.scalar(select(db.func.count(DeliveryAttempt.id))) == 2


def test_extend_leases_keeps_a_slow_delivery_ours(ctx):
    row = add()
    deliveries.claim_due("w", 1, 1)
    assert deliveries.extend_leases("w", [row.id], 60) == 1
    assert claimed_row(row.id).lease_until > utcnow() + timedelta(seconds=50)
    assert deliveries.extend_leases("someone-else", [row.id], 60) == 0


def test_retryable_errors_are_rescheduled_with_backoff_or_retry_after(ctx):
    row = add()
    deliveries.claim_due("w", 1, 60)
    error = AttemptRecord(utcnow(), 1, [], error_class="rate_limited", error_message="429", retryable=True)
    error.retry_after = 7200  # capped at an hour
    outcome = deliveries.record_outcome(claimed_row(row.id), "w", error, rng=random.Random(1))
    assert outcome.status == "failed"
    assert timedelta(minutes=59) < outcome.next_attempt_at - utcnow() <= timedelta(hours=1)
    stored = claimed_row(row.id)
    assert stored.last_error == "rate_limited: 429" and stored.lease_owner is None


def test_a_retryable_error_past_three_days_is_dead(ctx):
    row = add()
    db.session.execute(update(Delivery).where(Delivery.id == row.id).values(created_at=utcnow() - timedelta(days=3)))
    db.session.commit()
    deliveries.claim_due("w", 1, 60)
    error = AttemptRecord(utcnow(), 1, [], error_class="timeout", error_message="timed out", retryable=True)
    assert deliveries.record_outcome(claimed_row(row.id), "w", error).status == "dead"


def test_a_password_waiting_in_a_payload_is_wiped_when_the_row_finishes(ctx):
    delivered, given_up = add(field="pw", password="enc:v1:x"), add(field="pw", password="enc:v1:y")
    deliveries.claim_due("w", 10, 60)
    deliveries.record_outcome(claimed_row(delivered.id), "w", AttemptRecord(utcnow(), 1, []))
    dead = AttemptRecord(utcnow(), 1, [], error_class="crm_rejected", error_message="400")
    deliveries.record_outcome(claimed_row(given_up.id), "w", dead)
    assert claimed_row(delivered.id).payload == {"field": "pw"}
    assert claimed_row(given_up.id).payload == {"field": "pw"}


def test_retry_and_replay_requeue_only_finished_failures(ctx):
    old, new, fine = add(), add(), add()
    deliveries.claim_due("w", 10, 60)
    dead = AttemptRecord(utcnow(), 1, [], error_class="crm_rejected", error_message="400")
    for row in (old, new):
        deliveries.record_outcome(claimed_row(row.id), "w", dead)
    deliveries.record_outcome(claimed_row(fine.id), "w", AttemptRecord(utcnow(), 1, []))
    db.session.execute(update(Delivery).where(Delivery.id == old.id).values(created_at=utcnow() - timedelta(days=2)))
    db.session.commit()

    assert deliveries.replay("dead", since=utcnow() - timedelta(days=1)) == 1
    db.session.commit()
    assert (status_of(old.id), status_of(new.id)) == ("dead", "pending")
    assert deliveries.retry_delivery(old.id).status == "pending"
    db.session.commit()
    try:
        deliveries.retry_delivery(fine.id)
    except deliveries.DeliveryNotRetryable:
        pass
    else:
        raise AssertionError("a succeeded delivery was retried")
    assert status_of(fine.id) == "succeeded"
