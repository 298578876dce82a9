"""The fast paths: one transaction records many attempts and claims more, deferred handler
writes, kept-alive HTTP clients reset per delivery, cached settings, and the registration
answer built without reading the user back."""

from __future__ import annotations

import json
from typing import Any

import responses
from sqlalchemy import func, select
from support import ECHO_CRM as CRM
from support import load_delivery, statements

from bridge.accounts import users
from bridge.accounts.crm_push import LinkContact, link_contacts
from bridge.accounts.users import create_user
from bridge.connections import settings_cache
from bridge.connections.service import get_connection
from bridge.connections.settings import apply_settings
from bridge.delivery import attempts, deliveries, outbox
from bridge.delivery.deliveries import AttemptRecord, Finished
from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db
from bridge.models import ContactLink, Delivery, DeliveryAttempt, utcnow
from bridge.outbound.kept_clients import OutboundClients
from bridge.outbound.policy import OutboundPolicy


def test_the_registration_answer_is_the_user_as_read_back(app, client, auth_headers, echo_connection):
    echo_connection()
    body = {"email": "Grace@Example.com", "first_name": "Grace", "meta": {"tier": "free"}, "tags": ["b", "a", "b"]}
    created = client.post("/api/users", json=body, headers=auth_headers)
    assert created.status_code == 201
    shown = client.get(f"/api/users/{created.get_json()['id']}", headers=auth_headers).get_json()
    assert created.get_json() == shown
    assert shown["tags"] == {"": ["b", "a"]}


def test_registration_writes_one_push_per_connection_and_wakes_workers(app, client, auth_headers, echo_connection):
    echo_connection("one")
    echo_connection("two")
    echo_connection("quiet", push_on_register=False)
    worker = DeliveryWorker(app)  # not started: its wake-up event is enough to observe
    worker.wake.clear()
    user = client.post("/api/users", json={"email": "two@example.com"}, headers=auth_headers).get_json()
    assert worker.wake.is_set()
    with app.app_context():
        rows = db.session.scalars(select(Delivery).where(Delivery.user_id == user["id"]).order_by(Delivery.id)).all()
        assert [(r.connection.name, r.kind, r.status) for r in rows] == [
            ("one", "contact.upsert", "pending"),
            ("two", "contact.upsert", "pending"),
        ]
        assert [r.ordering_key for r in rows] == [f"{r.connection_id}:{user['id']}" for r in rows]


def test_one_transaction_records_a_batch_and_claims_the_next_row_of_each_lane(ctx):
    first = outbox.enqueue("test.job", ordering="lane-a")
    follower = outbox.enqueue("test.job", ordering="lane-a")
    failing = outbox.enqueue("test.job", ordering="lane-b")
    db.session.commit()
    claimed = deliveries.claim_and_load("w", 10, 60)
    assert [c.delivery.id for c in claimed] == [first.id, failing.id]
    written: list[str] = []
    ok = Finished(claimed[0].delivery, AttemptRecord(utcnow(), 1, []), [lambda: written.append("ok")])
    failure = AttemptRecord(utcnow(), 1, [], error_class="crm_unavailable", error_message="503", retryable=True)
    bad = Finished(claimed[1].delivery, failure, [lambda: written.append("bad")])

    outcomes, more = deliveries.record_and_claim("w", [ok, bad], limit=10, lease_seconds=60)

    assert [o.status for o in outcomes] == ["succeeded", "failed"]
    assert written == ["ok"]  # a deferred write runs only for a success
    assert [c.delivery.id for c in more] == [follower.id]  # unblocked by the record, same transaction
    assert db.session.scalar(select(func.count(DeliveryAttempt.id))) == 2
    assert load_delivery_status(first.id) == "succeeded" and load_delivery_status(failing.id) == "failed"


def load_delivery_status(delivery_id: int) -> str:
    return db.session.scalar(select(Delivery.status).where(Delivery.id == delivery_id))


def test_a_failing_deferred_write_fails_only_its_own_delivery(app, queue, behaviour):
    def act(ctx) -> dict[str, Any]:
        if ctx.delivery.payload.get("explode"):
            ctx.after_success.append(lambda: (_ for _ in ()).throw(RuntimeError("cannot store the link")))
        return {"ok": True}

    behaviour.action = act
    good, bad = queue(), queue(explode=True)
    assert DeliveryWorker(app, concurrency=4).run(once=True) == 2
    assert load_delivery(app, good).status == "succeeded"
    failed = load_delivery(app, bad)
    assert failed.status == "failed" and failed.last_error.startswith("internal_error: RuntimeError")


def test_a_thread_keeps_its_http_client_but_each_delivery_starts_clean(app, queue, behaviour):
    seen: list[tuple[int, int, tuple[str, ...], str]] = []

    def act(ctx) -> dict[str, Any]:
        seen.append(
            (
                id(ctx.http.session),
                len(ctx.http.exchanges),
                ctx.http.secrets,
                ctx.http.session.headers["Idempotency-Key"],
            )
        )
        ctx.http.exchanges.append({"method": "GET", "url": "http://crm.invalid/"})
        ctx.http.secrets = (*ctx.http.secrets, "one-delivery-only")
        ctx.http.session.cookies.set("crm_session", "x")
        return {"ok": True}

    behaviour.action = act
    ids = [queue(ordering="one-lane") for _ in range(3)]
    assert DeliveryWorker(app, concurrency=1).run(once=True) == 3
    assert len({session for session, *_ in seen}) == 1  # kept alive across deliveries
    assert [(exchanges, secrets) for _, exchanges, secrets, _ in seen] == [(0, ())] * 3
    assert [key for *_, key in seen] == [str(i) for i in ids]
    with app.app_context():
        attempts = db.session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)).all()
        assert [len(a.exchanges) for a in attempts] == [1, 1, 1]  # recorded per delivery


def test_cached_settings_follow_a_change(ctx, echo_connection):
    echo_connection("cached", assign_tags=["old"])
    connection = get_connection("cached")
    assert settings_cache.cached_settings(connection)["assign_tags"] == ["old"]
    mine = settings_cache.cached_settings(connection)
    mine["assign_tags"].append("mutated by a caller")
    assert settings_cache.cached_settings(connection)["assign_tags"] == ["old"]  # callers get copies
    apply_settings(connection, {"assign_tags": ["new"], "api_key": "a-rotated-secret-456"})
    db.session.commit()
    assert settings_cache.cached_settings(connection)["assign_tags"] == ["new"]
    assert "a-rotated-secret-456" in settings_cache.cached_secret_values(connection)


def current_links(connection_id: int) -> set[tuple[int, str]]:
    rows = db.session.scalars(
        select(ContactLink).where(ContactLink.connection_id == connection_id, ContactLink.unlinked_at.is_(None))
    )
    return {(row.user_id, row.contact_id) for row in rows}


def test_batched_links_follow_link_contacts_rules(ctx, echo_connection):
    echo_connection("links")
    connection = get_connection("links")
    ada, bob, cy, dee = (create_user(email=f"{name}@example.com") for name in ("ada", "bob", "cy", "dee"))
    users.link_contact(ada, connection, "1")  # stays as it is
    users.link_contact(bob, connection, "2")  # bob moves to contact 3
    users.link_contact(cy, connection, "4")  # contact 4 moves to dee
    db.session.commit()
    total_before = db.session.scalar(select(func.count(ContactLink.id)))

    link_contacts(
        [
            LinkContact(ada.id, connection.id, "1"),
            LinkContact(bob.id, connection.id, "3"),
            LinkContact(dee.id, connection.id, "4"),
            LinkContact(dee.id, connection.id, "5"),  # same user again in the batch: applied after, in order
        ]
    )
    db.session.commit()

    assert current_links(connection.id) == {(ada.id, "1"), (bob.id, "3"), (dee.id, "5")}
    assert db.session.scalar(select(func.count(ContactLink.id))) == total_before + 3  # closed links are kept
    assert users.user_for_any_contact("2").id == bob.id  # an old contact id still finds its user


def test_finished_attempts_wait_briefly_to_be_recorded_together(app):
    """At a trickle of traffic each delivery used to cost its own write transaction (on SQLite
    its own turn at the lock registrations wait on): finished attempts are recorded once a
    quarter of the pool has finished or the oldest has waited RECORD_DELAY_SECONDS."""
    from bridge.delivery.worker import RECORD_DELAY_SECONDS

    worker = DeliveryWorker(app, concurrency=32)
    quarter = worker.capacity // 4
    start = 1000.0
    worker._finished = [(object(), "a"), (object(), "b")]  # type: ignore[list-item]
    worker._finished_since = start
    assert worker._take_finished(start + RECORD_DELAY_SECONDS / 2) == []
    assert len(worker._take_finished(start + 2 * RECORD_DELAY_SECONDS)) == 2
    worker._finished = [(object(), str(n)) for n in range(quarter)]  # type: ignore[misc]
    worker._finished_since = start
    assert len(worker._take_finished(start)) == quarter  # enough for a batch: at once
    worker._finished = [(object(), "c")]  # type: ignore[list-item]
    assert len(worker._take_finished(start, force=True)) == 1  # --once and stopping do not wait


def test_a_busy_worker_holds_three_rows_per_thread_so_a_batch_stays_queued_at_each_turn(app, queue):
    """A busy worker's turn (one write transaction; on SQLite a turn at the lock registrations
    wait on) comes when a quarter of the rows it holds is free. Holding two rows per thread, one
    connection's drain on 16 threads held 24: by the turn, every queued row had started, threads
    waited for the claim, and a turn carried about ten rows. Holding three, the first claim
    takes 36, and when 12 have finished the turn claims 12 while 8 still wait for a thread."""
    for _ in range(80):
        queue()
    worker = DeliveryWorker(app, concurrency=16)
    first = worker._record_and_claim([], limit=worker._claim_limit(0))
    assert len(first) == 36  # 48 held at most, less the quarter left to other connections
    started = worker._ready_to_start(first)
    with worker._lock:
        for item in started:  # they finish (recorded, in this test, by nobody: only counted)
            worker._fair.done(item)
            worker._active.discard(item.delivery.id)
        while worker._fair.next_to_start() is not None:  # the freed threads take queued rows
            pass
    assert len(started) == 12  # a connection's first rows keep the reserve free
    assert len(worker._fair.ready) == 8  # still queued when the turn comes
    second = worker._record_and_claim([], limit=worker._claim_limit(0))
    assert len(second) == 12


@responses.activate
def test_a_registration_push_reads_the_local_tags_in_the_claim_and_opens_no_transaction(
    app, client, auth_headers, echo_connection
):
    """On SQLite every transaction holds the write lock: a push that read the user's tags on
    its own serialised every push of every worker behind registrations and claims."""
    echo_connection(assign_tags=["from-connection"])
    body = {"email": "tagged@example.com", "tags": ["vip", "newsletter"]}
    assert client.post("/api/users", json=body, headers=auth_headers).status_code == 201
    responses.post(f"{CRM}/contacts", json={"id": 41})
    responses.post(f"{CRM}/contacts/41/tags", json={})
    clients = OutboundClients(OutboundPolicy.from_config(app.config))
    with app.app_context():
        (claimed,) = deliveries.claim_and_load("w", 10, 60)
        assert claimed.local_tags == ("vip", "newsletter")
        with statements(app) as seen:
            finished, in_session = attempts.run(claimed, clients, "w")
        db.session.remove()
    assert finished.attempt.succeeded and not in_session
    assert seen == []  # neither a read nor a BEGIN between the claim and the record
    assert json.loads(responses.calls[1].request.body) == {"tags": ["vip", "newsletter", "from-connection"]}
