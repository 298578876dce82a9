"""The users API (CONTRACT.md §4): registration with its pushes, validation, listing, edits."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from support import statements

from bridge.extensions import db
from bridge.models import Delivery, User


@pytest.fixture
def connections(echo_connection):
    echo_connection("pushes")
    echo_connection("updates", push_on_register=False, push_updates=True)
    echo_connection("off", enabled=False)


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_registration_queues_a_push_per_enabled_connection_in_the_same_transaction(
    app, client, auth_headers, connections
):
    body = {
        "email": "Ada@Example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "password": "correct horse",
        "meta": {"tier": "gold"},
        "tags": ["beta"],
    }
    response = client.post("/api/users", json=body, headers=auth_headers)
    assert response.status_code == 201
    user = response.get_json()
    assert user["email"] == "ada@example.com" and user["role"] == "subscriber"
    assert user["tags"] == {"": ["beta"]} and user["meta"] == {"tier": "gold"}
    assert "password" not in user and "password_hash" not in user
    with app.app_context():
        rows = db.session.scalars(select(Delivery).where(Delivery.user_id == user["id"])).all()
        assert [(r.kind, r.connection.name, r.status) for r in rows] == [("contact.upsert", "pushes", "pending")]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "not-an-email"}, 422, "invalid_input"),
        ({"first_name": "No email"}, 422, "invalid_input"),
        ({"email": "a@example.com", "colour": "blue"}, 422, "invalid_input"),
        ({"email": "a@example.com", "password": "short"}, 422, "invalid_input"),
        ({"email": "a@example.com", "password": "eleven-char"}, 422, "invalid_input"),  # 12 everywhere
        ({"email": "a@example.com", "tags": "vip"}, 422, "invalid_input"),
        ({"email": "a@example.com", "role": "wizard"}, 400, "unknown_role"),
        ({"email": "a@example.com", "role": "administrator"}, 400, "forbidden_role"),
        (["a@example.com"], 422, "invalid_input"),
    ],
)
def test_invalid_registrations_are_refused_with_nothing_written(app, client, auth_headers, body, status, code):
    response = client.post("/api/users", json=body, headers=auth_headers)
    assert response.status_code == status
    data = response.get_json()
    assert data["success"] is False and data["error"] == code and data["message"]
    assert count(app, User) == 0 and count(app, Delivery) == 0


def test_a_validation_message_names_the_field(client, auth_headers):
    data = client.post("/api/users", json={"email": "nope"}, headers=auth_headers).get_json()
    assert data["message"].startswith("email:") and data["problems"][0]["field"] == "email"


def test_a_taken_email_is_409_and_not_json_is_400(app, client, auth_headers, connections):
    assert client.post("/api/users", json={"email": "x@example.com"}, headers=auth_headers).status_code == 201
    again = client.post("/api/users", json={"email": "X@example.com"}, headers=auth_headers)
    assert again.status_code == 409 and again.get_json()["error"] == "email_taken"
    assert count(app, Delivery) == 1
    garbage = client.post("/api/users", data="{", content_type="application/json", headers=auth_headers)
    assert garbage.status_code == 400 and garbage.get_json()["error"] == "invalid_payload"


def test_the_api_needs_a_token(client):
    for response in (client.get("/api/users"), client.post("/api/users", json={"email": "a@example.com"})):
        assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"
    wrong = client.get("/api/users", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_listing_filters_by_email_and_tag_and_pages(client, auth_headers):
    for n in range(55):
        tags = ["even"] if n % 2 == 0 else []
        client.post("/api/users", json={"email": f"u{n}@example.com", "tags": tags}, headers=auth_headers)
    first = client.get("/api/users", headers=auth_headers).get_json()
    assert (first["total"], first["page"], len(first["items"])) == (55, 1, 50)
    second = client.get("/api/users?page=2", headers=auth_headers).get_json()
    assert len(second["items"]) == 5 and second["items"][-1]["email"] == "u54@example.com"
    by_email = client.get("/api/users?email=U7@example.com", headers=auth_headers).get_json()
    assert [u["email"] for u in by_email["items"]] == ["u7@example.com"]
    by_tag = client.get("/api/users?tag=even", headers=auth_headers).get_json()
    assert by_tag["total"] == 28
    assert client.get("/api/users?page=0", headers=auth_headers).status_code == 400


def test_show_patch_and_tags(app, client, auth_headers, connections):
    user = client.post("/api/users", json={"email": "p@example.com", "meta": {"a": 1}}, headers=auth_headers).get_json()
    shown = client.get(f"/api/users/{user['id']}", headers=auth_headers).get_json()
    assert shown["crm_activity"] == [] and shown["crm_links"] == []
    assert client.get("/api/users/999", headers=auth_headers).status_code == 404

    patch = {"first_name": "Pat", "meta": {"a": None, "b": 2}, "password": "a new password"}
    changed = client.patch(f"/api/users/{user['id']}", json=patch, headers=auth_headers).get_json()
    assert changed["first_name"] == "Pat" and changed["meta"] == {"b": 2}
    assert sorted(changed["changed"]) == ["a", "b", "first_name", "password"]
    with app.app_context():
        updates = db.session.scalars(select(Delivery).where(Delivery.kind == "contact.update")).all()
        assert [(r.connection.name, r.payload["changed"]) for r in updates] == [("updates", ["a", "b", "first_name"])]

    # Only a password changed: nothing to push.
    client.patch(f"/api/users/{user['id']}", json={"password": "another password"}, headers=auth_headers)
    assert count(app, Delivery, Delivery.kind == "contact.update") == 1

    client.post("/api/users", json={"email": "taken@example.com"}, headers=auth_headers)
    clash = client.patch(f"/api/users/{user['id']}", json={"email": "taken@example.com"}, headers=auth_headers)
    assert clash.status_code == 409
    bad = client.patch(f"/api/users/{user['id']}", json={"id": 5}, headers=auth_headers)
    assert bad.status_code == 422

    tagged = client.post(
        f"/api/users/{user['id']}/tags", json={"add": ["vip", "beta"], "remove": []}, headers=auth_headers
    ).get_json()
    assert tagged["tags"] == {"": ["vip", "beta"]} and tagged["tags_added"] == ["vip", "beta"]
    untagged = client.post(f"/api/users/{user['id']}/tags", json={"remove": ["vip"]}, headers=auth_headers)
    assert untagged.get_json()["tags"] == {"": ["beta"]} and untagged.get_json()["tags_removed"] == ["vip"]


def test_a_registration_reads_its_role_email_and_username_in_one_statement(app, client, auth_headers, connections):
    """The role, email and username checks were three round trips on every registration."""
    with statements(app) as seen:
        assert client.post("/api/users", json={"email": "one@example.com"}, headers=auth_headers).status_code == 201
    before_insert = seen[: next(i for i, s in enumerate(seen) if s.startswith("INSERT INTO USER_ACCOUNT"))]
    checks = [s for s in before_insert if "FROM ROLE" in s or "FROM USER_ACCOUNT" in s]
    assert len(checks) == 1 and "FROM ROLE" in checks[0] and "FROM USER_ACCOUNT" in checks[0]


def test_a_taken_username_gets_the_next_free_suffix(app, client, auth_headers):
    with app.app_context():
        for n, taken in enumerate(("ann@example.com", "ann@example.com2")):
            db.session.add(User(email=f"other{n}@example.com", username=taken, role="subscriber"))
        db.session.commit()
    response = client.post("/api/users", json={"email": "ann@example.com"}, headers=auth_headers)
    assert response.status_code == 201 and response.get_json()["username"] == "ann@example.com3"
    chosen = client.post(
        "/api/users", json={"email": "bob@example.com", "username": "ann@example.com"}, headers=auth_headers
    )
    assert chosen.status_code == 201 and chosen.get_json()["username"] == "bob@example.com"


def test_a_taken_preferred_username_falls_back_to_the_format_with_the_names(app):
    from bridge.accounts import users

    with app.app_context():
        users.create_user(email="first@example.com", username="ada")
        made = users.create_user(
            email="second@example.com", username="ada", username_format="flname", first_name="Ada", last_name="Byron"
        )
        assert made.username == "adabyron"
