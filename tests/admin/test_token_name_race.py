"""Two creations of one API token name at once (issue: names were unique only by the service's
check): the database's unique constraint stops the second row, and the loser gets the same clear
error the check gives, from the admin console (422) and the CLI (``invalid_name``).

The race is made deterministic: the competing token is written after ``create_token``'s check
and before its insert (from ``crypto.new_token``, called in between). On PostgreSQL it comes from
another connection and is committed, as a concurrent request's would be; on SQLite every write
transaction holds the database's write lock from its start (``BEGIN IMMEDIATE``), so no other
connection can get in between: the row is written and committed by the same session, and the
insert runs in the next transaction."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import insert, select

from bridge.accounts import api_tokens
from bridge.extensions import db
from bridge.models import ApiToken, utcnow
from tests.admin.conftest import csrf_from


@pytest.fixture
def lose_the_race(app, backend, monkeypatch):
    """``lose_the_race(name)``: the next ``create_token`` finds ``name`` free, then taken."""

    def arm(name: str) -> None:
        real_new_token = api_tokens.crypto.new_token

        def competing_creation_then_new_token(prefix: str) -> str:
            row = {"name": name, "token_hash": "0" * 64, "created_at": utcnow()}
            if backend == "postgresql":
                with db.engine.begin() as other:
                    other.execute(insert(ApiToken).values(row))
            else:
                db.session.execute(insert(ApiToken).values(row))
                db.session.commit()
            monkeypatch.setattr(api_tokens.crypto, "new_token", real_new_token)
            return real_new_token(prefix)

        monkeypatch.setattr(api_tokens.crypto, "new_token", competing_creation_then_new_token)

    return arm


def token_names(app) -> list[str]:
    with app.app_context():
        db.session.rollback()
        return list(db.session.scalars(select(ApiToken.name)))


def test_the_console_answers_a_lost_race_as_a_taken_name(app, admin_client, lose_the_race) -> None:
    page = admin_client.get("/admin/tokens").get_data(as_text=True)
    lose_the_race("website")
    response = admin_client.post("/admin/tokens", data={"csrf_token": csrf_from(page), "name": "website"})
    assert response.status_code == 422
    assert "a token named &#39;website&#39; exists" in response.get_data(as_text=True)
    assert token_names(app) == ["website"]


def test_the_cli_answers_a_lost_race_as_a_taken_name(app, runner, lose_the_race) -> None:
    lose_the_race("ci")
    result = runner.invoke(args=["bridge", "token", "create", "ci", "--json"])
    assert result.exit_code == 1, result.output
    answer = json.loads(result.stdout)
    assert answer["error"] == "invalid_name"
    assert answer["message"] == "a token named 'ci' exists: revoke it first or choose another name"
    assert token_names(app) == ["ci"]
