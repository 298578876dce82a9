"""API tokens: verified once per process for the key-cache TTL; unknown tokens never cached."""

from __future__ import annotations

from sqlalchemy import delete

from bridge.extensions import db
from bridge.models import ApiToken


def test_a_verified_token_is_not_looked_up_again_within_the_ttl(app, client, auth_headers):
    assert client.get("/api/users", headers=auth_headers).status_code == 200
    with app.app_context():
        db.session.execute(delete(ApiToken))
        db.session.commit()
    assert client.get("/api/users", headers=auth_headers).status_code == 200  # remembered
    app.config["BRIDGE_ACCESS_KEY_CACHE_SECONDS"] = 0
    assert client.get("/api/users", headers=auth_headers).status_code == 401  # looked up: gone


def test_a_refused_token_is_not_remembered(app, client):
    from bridge.api.auth import create_token

    headers = {"Authorization": "Bearer cbt_not-yet"}
    assert client.get("/api/users", headers=headers).status_code == 401
    with app.app_context():
        _, token = create_token("late")
        db.session.commit()
    assert client.get("/api/users", headers={"Authorization": f"Bearer {token}"}).status_code == 200
