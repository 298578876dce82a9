"""Fixtures for the admin console: an administrator, a signed-in client, and a site with some
of everything (a connection with a known secret, users, links, activity, inbound events and
deliveries in every status) so every page has something to render."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from werkzeug.security import generate_password_hash

from bridge.extensions import db

ADMIN_EMAIL = "boss@example.com"
ADMIN_PASSWORD = "correct horse battery staple"
APP_PASSWORD = "fluentAppPassw0rdXYZ987654"  # the CRM secret no page may show
CRM_SECRET = "crm-webhook-secret-4242"
MAIL_PASSWORD = "mailpass-777"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def quick_hash(password: str) -> str:
    """A cheap hash for tests: ``check_password`` reads any werkzeug method, and the default
    (scrypt) costs ~0.2 s per hash and check, which adds up over a suite that signs in a lot."""
    return generate_password_hash(password, method="pbkdf2:sha256:1000")


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "page has no csrf_token field"
    return match.group(1)


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {
        **app_config,
        "BRIDGE_ALLOW_PRIVATE_TARGETS": True,  # `responses` mocks the CRM; no DNS here
        "CRM_WEBHOOK_SECRET": CRM_SECRET,
        "BRIDGE_MAIL_URL": f"smtps://mailer:{MAIL_PASSWORD}@smtp.example.com:465",
        "BRIDGE_BASE_URL": "https://bridge.example.com",
    }


@pytest.fixture
def admin_user(app) -> int:
    from bridge.accounts.users import ADMIN_ROLE, create_user

    with app.app_context():
        user = create_user(
            email=ADMIN_EMAIL, password_hash=quick_hash(ADMIN_PASSWORD), role=ADMIN_ROLE, first_name="Bo"
        )
        db.session.commit()
        return user.id


def login(client, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD, **extra: str):
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    return client.post("/admin/login", data={"email": email, "password": password, "csrf_token": token, **extra})


@pytest.fixture
def admin_client(client, admin_user):
    response = login(client)
    assert response.status_code == 302
    return client


@dataclass
class Site:
    access_key: str
    user_id: int
    other_user_id: int
    delivery_ids: dict[str, int]
    event_ok_id: int
    event_refused_id: int


@pytest.fixture
def site(app, make_connection) -> Site:
    """Some of everything, committed. Times are spread so "newest first" is checkable."""
    from bridge.accounts.users import create_user, link_contact, replace_tags
    from bridge.connections.service import get_connection
    from bridge.delivery import outbox
    from bridge.models import CrmActivity, DeliveryAttempt, WebhookEvent, WorkerHeartbeat, utcnow

    access_key = make_connection(
        "fluent", "fluentcrm", base_url="https://crm.example.com", username="api", app_password=APP_PASSWORD
    )
    make_connection("campaign", "activecampaign")  # incomplete: its required settings are missing
    with app.app_context():
        now = utcnow()
        fluent = get_connection("fluent")
        user = create_user(email="ada@example.com", first_name="Ada", last_name="Lovelace", meta={"tier": "gold"})
        other = create_user(email="bob@example.com")
        link_contact(user, fluent, "41")
        link_contact(user, fluent, "42")  # 41 becomes an earlier link
        replace_tags(user, fluent, ["vip", "newsletter"])
        replace_tags(user, None, ["local-tag"])
        db.session.add(
            CrmActivity(
                user_id=user.id,
                contact_id="42",
                event_type="email_opened",
                payload={"crm_lead_id": "42", "event_type": "email_opened"},
                received_at=now - timedelta(minutes=30),
            )
        )
        ok = WebhookEvent(
            connection_id=fluent.id,
            connection_name="fluent",
            action="update",
            contact_id="42",
            user_id=user.id,
            method="POST",
            path="/?wpf_action=update&access_key=[redacted]",
            status_code=200,
            outcome="updated",
            duration_ms=12.5,
            source_ip="127.0.0.1",
            payload='{"id": "42", "email": "ada@example.com", "user_pass": "hunter2-plain"}',
            received_at=now - timedelta(minutes=20),
        )
        refused = WebhookEvent(
            connection_name=None,
            action="add",
            method="POST",
            path="/?wpf_action=add",
            status_code=403,
            outcome="invalid_access_key",
            received_at=now - timedelta(minutes=5),
        )
        db.session.add_all([ok, refused])
        delivery_ids: dict[str, int] = {}
        for minutes, status in zip((50, 40, 10, 3, 1), outbox.STATUSES, strict=True):
            delivery = outbox.enqueue(
                outbox.CONTACT_UPSERT,
                connection=fluent,
                user=user,
                payload={"email": user.email, "note": f"carries {APP_PASSWORD} by mistake"},
            )
            delivery.status = status
            delivery.created_at = now - timedelta(minutes=minutes)
            delivery.attempts = 1 if status != "pending" else 0
            if status in ("failed", "dead"):
                delivery.last_error = "fluentcrm answered HTTP 503: unavailable"
                delivery.attempt_log.append(
                    DeliveryAttempt(
                        number=1,
                        method="POST",
                        url="https://crm.example.com/wp-json/fluent-crm/v2/subscribers",
                        status_code=503,
                        error_class="crm_unavailable",
                        exchanges=[{"request": {"headers": {"Authorization": f"Basic {APP_PASSWORD}"}}}],
                    )
                )
            delivery_ids[status] = delivery.id
        db.session.add(WorkerHeartbeat(worker_id="w1", last_seen=now))
        db.session.commit()
        return Site(access_key, user.id, other.id, delivery_ids, ok.id, refused.id)
