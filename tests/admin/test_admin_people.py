"""People and access from the console: a user's tags per connection (pushed to the CRM), a new
login link, a resync from the CRM; API tokens (shown once, unique names, revoked), administrators
and roles."""

from __future__ import annotations

import json

import responses
from sqlalchemy import select

from bridge.accounts import api_tokens
from bridge.accounts.user_tags import tag_names
from bridge.connections.service import get_connection
from bridge.delivery import outbox
from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db
from bridge.models import Delivery, Role, User
from tests.admin.conftest import APP_PASSWORD, csrf_from

FLUENT_API = "https://crm.example.com/wp-json/fluent-crm/v2"


def text(response) -> str:
    return response.get_data(as_text=True)


@responses.activate
def test_editing_a_users_tags_on_a_connection_pushes_the_change_to_the_crm(app, admin_client, site):
    page = text(admin_client.get(f"/admin/users/{site.user_id}"))
    assert "Edit tags" in page
    response = admin_client.post(
        f"/admin/users/{site.user_id}/tags",
        data={"csrf_token": csrf_from(page), "connection": "fluent", "tags": "vip, gold"},
        follow_redirects=True,
    )
    assert "Tags on fluent saved" in text(response)
    with app.app_context():
        user = db.session.get(User, site.user_id)
        assert tag_names(user, get_connection("fluent")) == ["vip", "gold"]
        pushed = db.session.scalars(select(Delivery).where(Delivery.kind == outbox.TAGS_APPLY)).one()
        assert pushed.payload == {"add": ["gold"], "remove": ["newsletter"]}
        # Only this push is due: the site's other rows are finished or parked.
        db.session.execute(db.update(Delivery).where(Delivery.id != pushed.id).values(status="succeeded"))
        db.session.commit()
        pushed_id = pushed.id

    # The worker applies both halves to the linked contact (42) through the adapter.
    tags = [{"id": 1, "slug": "vip", "title": "vip"}, {"id": 2, "slug": "gold", "title": "gold"}]
    tags.append({"id": 3, "slug": "newsletter", "title": "newsletter"})
    responses.get(f"{FLUENT_API}/tags", json={"tags": {"data": tags, "last_page": 1}})
    responses.post(f"{FLUENT_API}/subscribers/sync-segments", json={"message": "ok"})
    responses.put(f"{FLUENT_API}/subscribers/42", json={"message": "Subscriber successfully updated"})
    DeliveryWorker(app).run(once=True)
    with app.app_context():
        assert db.session.get(Delivery, pushed_id).status == "succeeded"
    attach = [c for c in responses.calls if c.request.url.endswith("/sync-segments")]
    detach = [c for c in responses.calls if c.request.method == "PUT"]
    assert attach and json.loads(attach[0].request.body)["subscribers"] == [42]
    assert detach and json.loads(detach[0].request.body) == {"detach_tags": [3]}


def test_local_tags_are_saved_without_a_push(app, admin_client, site):
    page = text(admin_client.get(f"/admin/users/{site.user_id}"))
    admin_client.post(
        f"/admin/users/{site.user_id}/tags", data={"csrf_token": csrf_from(page), "connection": "", "tags": "a,b"}
    )
    with app.app_context():
        assert tag_names(db.session.get(User, site.user_id), None) == ["a", "b"]
        assert db.session.scalar(select(Delivery).where(Delivery.kind == outbox.TAGS_APPLY)) is None


def test_a_new_login_link_is_mailed(app, admin_client, site):
    page = text(admin_client.get(f"/admin/users/{site.user_id}"))
    response = admin_client.post(
        f"/admin/users/{site.user_id}/login-link", data={"csrf_token": csrf_from(page)}, follow_redirects=True
    )
    assert "A new login link is on its way to ada@example.com" in text(response)
    with app.app_context():
        mail = db.session.scalars(select(Delivery).where(Delivery.kind == outbox.MAIL_WELCOME)).one()
        assert mail.user_id == site.user_id


@responses.activate
def test_resync_loads_the_contact_from_the_crm_and_applies_it(app, admin_client, site):
    subscriber = {
        "id": 42,
        "email": "ada@example.com",
        "first_name": "Augusta",
        "last_name": "Lovelace",
        "tags": [{"id": 9, "slug": "from-crm", "title": "From CRM"}],
    }
    responses.get(f"{FLUENT_API}/subscribers/42", json={"subscriber": subscriber})
    page = text(admin_client.get(f"/admin/users/{site.user_id}"))
    response = admin_client.post(
        f"/admin/users/{site.user_id}/resync",
        data={"csrf_token": csrf_from(page), "connection": "fluent"},
        follow_redirects=True,
    )
    assert "Resynced from fluent" in text(response), text(response)
    with app.app_context():
        user = db.session.get(User, site.user_id)
        assert user.first_name == "Augusta"
        assert tag_names(user, get_connection("fluent")) == ["from-crm"]


@responses.activate
def test_a_failed_resync_says_why_without_the_secret(app, admin_client, site):
    responses.get(f"{FLUENT_API}/subscribers/42", status=503, json={"echo": APP_PASSWORD})
    page = text(admin_client.get(f"/admin/users/{site.user_id}"))
    body = text(
        admin_client.post(
            f"/admin/users/{site.user_id}/resync",
            data={"csrf_token": csrf_from(page), "connection": "fluent"},
            follow_redirects=True,
        )
    )
    assert "Not resynced from fluent" in body and APP_PASSWORD not in body


def test_tokens_are_shown_once_unique_by_name_and_revocable(app, admin_client, client):
    page = text(admin_client.get("/admin/tokens"))
    created = text(admin_client.post("/admin/tokens", data={"csrf_token": csrf_from(page), "name": "website"}))
    token = created.split('id="new-token">', 1)[1].split("<", 1)[0]
    assert token.startswith("cbt_")
    assert token not in text(admin_client.get("/admin/tokens"))
    assert client.get("/api/users", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    again = admin_client.post("/admin/tokens", data={"csrf_token": csrf_from(page), "name": "website"})
    assert again.status_code == 422 and "a token named &#39;website&#39; exists" in text(again)

    admin_client.post("/admin/tokens/revoke", data={"csrf_token": csrf_from(page), "name": "website"})
    assert client.get("/api/users", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    with app.app_context():
        assert api_tokens.list_tokens() == []


def test_an_administrator_is_added_with_a_password_shown_once(app, admin_client):
    page = text(admin_client.get("/admin/admins"))
    body = text(admin_client.post("/admin/admins", data={"csrf_token": csrf_from(page), "email": "new@example.com"}))
    password = body.split('id="new-password">', 1)[1].split("<", 1)[0]
    assert len(password) >= 20
    assert password not in text(admin_client.get("/admin/admins"))
    with app.app_context():
        assert db.session.scalar(select(User.role).where(User.email == "new@example.com")) == "administrator"
    short = admin_client.post(
        "/admin/admins", data={"csrf_token": csrf_from(page), "email": "x@example.com", "password": "short"}
    )
    assert short.status_code == 422 and "at least 12 characters" in text(short)


def test_roles_are_listed_and_added(app, admin_client):
    page = text(admin_client.get("/admin/roles"))
    assert "subscriber" in page and "administrator" in page
    admin_client.post("/admin/roles", data={"csrf_token": csrf_from(page), "slug": "customer", "title": ""})
    bad = admin_client.post("/admin/roles", data={"csrf_token": csrf_from(page), "slug": "Not OK"})
    assert bad.status_code == 422 and "lower-case slug" in text(bad)
    with app.app_context():
        assert db.session.scalar(select(Role.title).where(Role.slug == "customer")) == "Customer"


def test_administrator_rights_are_revoked_but_never_ones_own(app, admin_client, admin_user):
    from bridge.accounts.users import ADMIN_ROLE, create_user

    with app.app_context():
        other = create_user(email="second@example.com", role=ADMIN_ROLE)
        db.session.commit()
        other_id = other.id
    page = text(admin_client.get("/admin/admins"))
    own = admin_client.post(f"/admin/admins/{admin_user}/revoke", data={"csrf_token": csrf_from(page)})
    assert "cannot remove your own administrator rights" in text(admin_client.get(own.headers["Location"]))
    admin_client.post(f"/admin/admins/{other_id}/revoke", data={"csrf_token": csrf_from(page)})
    with app.app_context():
        assert db.session.get(User, other_id).role == "subscriber"
        assert db.session.get(User, admin_user).role == ADMIN_ROLE
