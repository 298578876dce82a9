"""Concurrent identical requests against a real threaded server: exactly one user (or one job)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import select

from bridge.extensions import db
from bridge.models import ContactLink, Delivery, User

from .payloads import fluent_tags, subscriber

THREADS = 20


def post_all(url: str, params: dict, body: dict, count: int) -> list[requests.Response]:
    """``count`` identical POSTs released together by a barrier, one session per thread."""
    barrier = threading.Barrier(count)

    def send(_: int) -> requests.Response:
        with requests.Session() as session:
            barrier.wait(timeout=30)
            return session.post(url + "/", params=params, json=body, timeout=60)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(send, range(count)))


def test_twenty_concurrent_adds_make_exactly_one_user(app, live_server, fluent_key):
    body = subscriber(contact_id=4242, email="race@example.com", tags=fluent_tags("vip"))
    responses = post_all(live_server.url, {"wpf_action": "add", "access_key": fluent_key}, body, THREADS)
    assert [r.status_code for r in responses] == [200] * THREADS, [r.text for r in responses if r.status_code != 200]
    bodies = [r.json() for r in responses]
    assert len({b["user_id"] for b in bodies}) == 1
    assert sum(b["created"] for b in bodies) == 1
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(User)) == 1
        links = db.session.scalars(select(ContactLink).where(ContactLink.unlinked_at.is_(None))).all()
        assert [(link.contact_id, link.user_id) for link in links] == [("4242", bodies[0]["user_id"])]


def test_concurrent_identical_async_requests_share_one_job(app, live_server, fluent_key):
    params = {"wpf_action": "add", "access_key": fluent_key, "async": "true"}
    responses = post_all(live_server.url, params, subscriber(contact_id=7), 10)
    assert [r.status_code for r in responses] == [202] * 10
    assert len({r.json()["job_id"] for r in responses}) == 1
    with app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Delivery)) == 1


def test_an_update_racing_another_for_the_same_tag_is_run_again(app, hook, fluent_key, monkeypatch):
    """Two updates of one user read its tags before either commits (PostgreSQL, READ
    COMMITTED): the second one's tag INSERT then hits the unique index. Simulated without
    timing: the first read of the unit returns the tags as they were before the other commit.
    The unit runs again and answers 200 (it was a 500: the DBAPI's own error escaped)."""
    from bridge.inbound import changes

    assert hook("add", fluent_key, subscriber(tags=fluent_tags("vip"))).status_code == 200
    assert hook("update", fluent_key, subscriber(tags=fluent_tags("vip", "gold"))).status_code == 200
    real = changes.linked_user_row
    calls = []

    def stale_once(runtime, contact):
        row = real(runtime, contact)
        calls.append(row)
        if len(calls) == 1 and row is not None:
            row.tags.remove("gold")  # as read before the other update committed "gold"
        return row

    monkeypatch.setattr(changes, "linked_user_row", stale_once)
    response = hook("update", fluent_key, subscriber(tags=fluent_tags("vip", "gold", "silver")))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(calls) == 2 and response.get_json()["tags_added"] == ["silver"]
