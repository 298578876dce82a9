"""``crm-bridge role|admin|token|user …``: roles, administrators, API tokens, local registration."""

from __future__ import annotations

import json

from sqlalchemy import select

from bridge.accounts import passwords, users
from bridge.extensions import db
from bridge.models import Delivery, Role, User


def user_by_email(app, email: str) -> User | None:
    with app.app_context():
        user = users.find_by_email(email)
        if user is not None:
            db.session.expunge(user)
        return user


def deliveries(app) -> list[tuple[str, str | None]]:
    with app.app_context():
        return [
            (d.kind, d.connection.name if d.connection else None)
            for d in db.session.scalars(select(Delivery).order_by(Delivery.id))
        ]


# -- roles ------------------------------------------------------------------------------------


def test_role_add_and_list(app, cli, cli_json):
    result = cli("role", "add", "member", "--title", "Paying member")
    assert result.exit_code == 0 and "member" in result.stdout
    assert cli_json("role", "add", "vip") == (0, {"slug": "vip", "title": "Vip"})
    code, data = cli_json("role", "list")
    assert code == 0
    assert [(i["slug"], i["title"]) for i in data["items"]] == [
        ("administrator", "Administrator"),
        ("member", "Paying member"),
        ("subscriber", "Subscriber"),
        ("vip", "Vip"),
    ]
    text = cli("role", "list").stdout
    assert "Paying member" in text and "subscriber" in text
    with app.app_context():
        assert users.role_exists("member")


def test_role_add_refuses_duplicates_and_bad_slugs(app, cli, cli_json):
    code, data = cli_json("role", "add", "subscriber")
    assert (code, data["error"]) == (1, "role_exists")
    result = cli("role", "add", "Big Spender")
    assert result.exit_code == 1 and "lower-case slug" in result.stderr
    with app.app_context():
        assert db.session.scalar(select(db.func.count(Role.id))) == 2


def test_role_list_counts_users(app, cli_json):
    assert cli_json("user", "create", "--email", "a@example.com")[0] == 0
    _, data = cli_json("role", "list")
    assert {i["slug"]: i["users"] for i in data["items"]} == {"administrator": 0, "subscriber": 1}


# -- admin create -----------------------------------------------------------------------------


def test_admin_create_generates_a_password_shown_once(app, cli, cli_json, dump_database):
    result = cli("admin", "create", "Boss@Example.com")
    assert result.exit_code == 0
    password = next(line for line in result.stdout.splitlines() if line.startswith("Password")).rsplit(" ", 1)[1]
    admin = user_by_email(app, "boss@example.com")
    assert admin.role == users.ADMIN_ROLE
    assert passwords.check_password(admin, password)
    assert password not in dump_database()
    code, data = cli_json("admin", "create", "second@example.com")
    assert code == 0 and data["created"] is True and len(data["password"]) >= 12
    assert passwords.check_password(user_by_email(app, "second@example.com"), data["password"])


def test_admin_create_reads_the_password_from_stdin_and_promotes_an_existing_user(app, cli, cli_json):
    assert cli_json("user", "create", "--email", "owner@example.com")[0] == 0
    result = cli("admin", "create", "owner@example.com", "--password-stdin", input="correct horse battery\n")
    assert result.exit_code == 0
    assert "Promoted" in result.stdout and "correct horse" not in result.output
    owner = user_by_email(app, "owner@example.com")
    assert owner.role == users.ADMIN_ROLE
    assert passwords.check_password(owner, "correct horse battery")
    code, data = cli_json("admin", "create", "owner@example.com", "--password-stdin", input="short\n")
    assert (code, data["error"]) == (1, "weak_password")
    assert passwords.check_password(user_by_email(app, "owner@example.com"), "correct horse battery")


# -- tokens -----------------------------------------------------------------------------------


def test_token_create_gives_a_working_api_token_shown_once(app, client, cli, cli_json, dump_database):
    code, data = cli_json("token", "create", "zapier")
    assert code == 0
    assert set(data) == {"name", "token"} and data["name"] == "zapier"
    token = data["token"]
    assert token not in dump_database()
    ok = client.get("/api/connections", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.get_json()["items"] == []
    wrong = client.get("/api/connections", headers={"Authorization": f"Bearer {token[:-1]}x"})
    assert wrong.status_code == 401
    assert wrong.get_json()["success"] is False and wrong.get_json()["error"] == "unauthorized"
    result = cli("token", "create", "ci")
    assert result.exit_code == 0
    text_token = result.stdout.strip().splitlines()[-1]
    assert client.get("/api/connections", headers={"Authorization": f"Bearer {text_token}"}).status_code == 200


# -- user create ------------------------------------------------------------------------------


def test_user_create_queues_one_upsert_per_connection_that_pushes_on_register(app, cli, cli_json, make_connection):
    complete = {"base_url": "https://crm.example.com", "username": "api", "app_password": "app-pass-1234"}
    make_connection("fluent", **complete)
    make_connection("second", **complete)
    make_connection("quiet", push_on_register=False, **complete)
    make_connection("off", enabled=False, **complete)
    make_connection("incomplete")  # no credentials: no push (CONTRACT §2)
    code, data = cli_json("user", "create", "--email", "New@Example.com", "--first-name", "Ada", "--last-name", "L")
    assert code == 0
    assert (data["email"], data["first_name"], data["role"]) == ("new@example.com", "Ada", "subscriber")
    assert [(q["kind"], q["connection"]) for q in data["queued_deliveries"]] == [
        ("contact.upsert", "fluent"),
        ("contact.upsert", "second"),
    ]
    assert deliveries(app) == [("contact.upsert", "fluent"), ("contact.upsert", "second")]
    result = cli("user", "create", "--email", "text@example.com", "--password-stdin", input="s3cret-password\n")
    assert result.exit_code == 0 and "queued 2 push(es)" in result.stdout
    assert passwords.check_password(user_by_email(app, "text@example.com"), "s3cret-password")


def test_user_create_queues_nothing_without_pushing_connections(app, cli_json, make_connection):
    make_connection("quiet", push_on_register=False)
    make_connection("off", enabled=False)
    code, data = cli_json("user", "create", "--email", "a@example.com")
    assert code == 0 and data["queued_deliveries"] == []
    assert deliveries(app) == []


def test_user_create_refuses_administrator_unknown_roles_and_taken_emails(app, cli, cli_json, make_connection):
    make_connection("fluent", base_url="https://crm.example.com", username="api", app_password="app-pass-1234")
    code, data = cli_json("user", "create", "--email", "x@example.com", "--role", "administrator")
    assert (code, data["error"]) == (1, "forbidden_role")
    result = cli("user", "create", "--email", "x@example.com", "--role", "ghost")
    assert result.exit_code == 1 and "role 'ghost' does not exist" in result.stderr
    assert user_by_email(app, "x@example.com") is None
    assert cli_json("user", "create", "--email", "x@example.com", "--role", "subscriber")[0] == 0
    code, data = cli_json("user", "create", "--email", "X@example.com")
    assert (code, data["error"]) == (1, "email_taken")
    assert cli_json("user", "create", "--email", "not-an-address")[1]["error"] == "invalid_email"
    assert cli_json("admin", "create", "hunter2")[1]["error"] == "invalid_email"
    assert deliveries(app) == [("contact.upsert", "fluent")]  # the refused attempts queued nothing


def test_user_list_filters_by_email_and_pages(app, cli, cli_json):
    for email in ("a@example.com", "b@example.com"):
        assert cli_json("user", "create", "--email", email)[0] == 0
    code, data = cli_json("user", "list")
    assert code == 0
    assert (data["total"], data["page"]) == (2, 1)
    assert [i["email"] for i in data["items"]] == ["b@example.com", "a@example.com"]
    _, only = cli_json("user", "list", "--email", "A@Example.com")
    assert [i["email"] for i in only["items"]] == ["a@example.com"] and only["total"] == 1
    _, empty = cli_json("user", "list", "--page", "2")
    assert empty["items"] == [] and empty["total"] == 2
    text = cli("user", "list").stdout
    assert "a@example.com" in text and "2 user(s)" in text


def test_token_names_are_unique_and_tokens_are_listed_and_revoked(app, client, cli, cli_json, dump_database):
    code, data = cli_json("token", "create", "zapier")
    token = data["token"]
    code, refused = cli_json("token", "create", "zapier")
    assert code == 1 and refused["error"] == "invalid_name" and "exists" in refused["message"]
    code, listed = cli_json("token", "list")
    assert code == 0 and [i["name"] for i in listed["items"]] == ["zapier"]
    assert token not in json.dumps(listed)
    assert cli_json("token", "revoke", "zapier") == (0, {"success": True, "name": "zapier", "revoked": True})
    assert client.get("/api/connections", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    code, missing = cli_json("token", "revoke", "zapier")
    assert code == 1 and missing["error"] == "not_found"


def test_user_login_link_prints_a_working_link_or_queues_the_mail(app, client, cli_json):
    from bridge.delivery import outbox

    cli_json("user", "create", "--email", "ann@example.com")
    code, data = cli_json("user", "login-link", "ANN@example.com")
    assert code == 0 and data["link"].startswith("http://127.0.0.1:5000/login/")
    path = data["link"].removeprefix("http://127.0.0.1:5000")
    assert "Set your password" in client.get(path).get_data(as_text=True)
    code, queued = cli_json("user", "login-link", "ann@example.com", "--send")
    assert code == 0 and queued["queued"] is True
    with app.app_context():
        assert db.session.get(Delivery, queued["delivery_id"]).kind == outbox.MAIL_WELCOME
    code, missing = cli_json("user", "login-link", "nobody@example.com")
    assert code == 1 and missing["error"] == "not_found"
