"""A push to a self-hosted CRM that redirects http:// to https:// (issue 17): the attempt says
where the CRM redirects and which base_url to set; the redirect is not followed."""

from __future__ import annotations

import json
from pathlib import Path

import responses
from sqlalchemy import select

from bridge.accounts import registration
from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db
from bridge.models import Delivery

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures/mautic/http_to_https_301.json").read_text())


@responses.activate
def test_the_attempt_names_the_redirect_and_the_base_url_to_set(app, make_connection):
    make_connection("mautic", "mautic", base_url="http://crm.example.com", username="api", password="pw-123")
    location = "https://crm.example.com/api/contacts/new"
    responses.post(
        "http://crm.example.com/api/contacts/new",
        status=301,
        headers={**FIXTURE["headers"], "Location": location},
        body=FIXTURE["body"],
    )
    with app.app_context():
        registration.register_user(email="ana@example.com")
        db.session.commit()
    DeliveryWorker(app).run(once=True)
    assert len(responses.calls) == 1  # not followed
    with app.app_context():
        delivery = db.session.scalar(select(Delivery))
        [attempt] = delivery.attempt_log
        assert delivery.status == "dead" and attempt.error_class == "crm_rejected"
        assert f"redirects to {location}" in attempt.error_message
        assert attempt.error_message.endswith("set base_url to https://crm.example.com")
