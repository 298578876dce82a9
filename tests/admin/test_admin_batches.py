"""``/admin/batches``: start, cancel and undo batches from the console, with a live progress
bar fed by ``/admin/batches.json`` (no external assets)."""

from __future__ import annotations

import re

from sqlalchemy import select

from bridge.extensions import db
from bridge.models import Batch
from tests.admin.conftest import APP_PASSWORD, csrf_from


def test_the_owner_starts_follows_and_cancels_a_batch(app, admin_client, site):
    page = admin_client.get("/admin/batches").get_data(as_text=True)
    assert "No batches yet." in page
    assert "data-poll" not in page  # nothing runs: no polling without a running batch

    answer = admin_client.post(
        "/admin/batches",
        data={"operation": "import", "connection": "fluent", "tag": "vip", "csrf_token": csrf_from(page)},
    )
    assert answer.status_code == 302
    with app.app_context():
        batch = db.session.scalar(select(Batch))
        assert (batch.operation, batch.status, batch.params) == ("import", "queued", {"tag": "vip"})

    page = admin_client.get("/admin/batches").get_data(as_text=True)
    assert f'data-batch="{batch.id}"' in page and 'role="progressbar"' in page
    assert "/admin/batches.json" in page  # the live bar polls while the batch runs
    assert not re.search(r'(src|href)="https?://', page)  # no external assets
    assert APP_PASSWORD not in page
    polled = admin_client.get("/admin/batches.json").get_json()
    assert polled["items"][0]["id"] == batch.id and polled["items"][0]["status"] == "queued"

    admin_client.post(f"/admin/batches/{batch.id}/cancel", data={"csrf_token": csrf_from(page)})
    page = admin_client.get("/admin/batches").get_data(as_text=True)
    assert "is cancelled" in page
    assert admin_client.get("/admin/batches.json").get_json()["items"][0]["status"] == "cancelled"


def test_refusals_are_shown_not_raised(app, admin_client, site):
    token = csrf_from(admin_client.get("/admin/batches").get_data(as_text=True))
    admin_client.post("/admin/batches", data={"operation": "push", "connection": "nope", "csrf_token": token})
    page = admin_client.get("/admin/batches").get_data(as_text=True)
    assert "The batch was not started: no connection named &#39;nope&#39;" in page

    admin_client.post("/admin/batches", data={"operation": "push", "connection": "fluent", "csrf_token": token})
    with app.app_context():
        push_id = db.session.scalar(select(Batch.id))
    admin_client.post(f"/admin/batches/{push_id}/undo", data={"csrf_token": token})
    assert "only an import can be undone" in admin_client.get("/admin/batches").get_data(as_text=True)


def test_batch_forms_need_the_csrf_token(admin_client, site):
    assert admin_client.post("/admin/batches", data={"operation": "push", "connection": "fluent"}).status_code == 400


def test_batches_need_an_admin(client):
    assert client.get("/admin/batches").status_code == 302
    assert client.get("/admin/batches.json").status_code == 302
