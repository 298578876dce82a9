"""Every console page renders for an admin, shows what it promises, and never a secret."""

from __future__ import annotations

import re
import sys
import types

import pytest
import responses
from sqlalchemy import select

from bridge.connections.service import find_by_access_key
from bridge.extensions import db
from bridge.models import User
from tests.admin.conftest import APP_PASSWORD, CRM_SECRET, MAIL_PASSWORD, csrf_from

FLUENT_TAGS_URL = "https://crm.example.com/wp-json/fluent-crm/v2/tags"


def pages(site) -> list[str]:
    return [
        "/admin/",
        "/admin/connections",
        "/admin/connections/fluent",
        "/admin/connections/campaign",
        "/admin/users",
        "/admin/users?email=ada",
        f"/admin/users/{site.user_id}",
        f"/admin/users/{site.other_user_id}",
        "/admin/webhooks",
        "/admin/webhooks?status=4xx&connection=fluent",
        f"/admin/webhooks/{site.event_ok_id}",
        f"/admin/webhooks/{site.event_refused_id}",
        "/admin/deliveries",
        "/admin/deliveries?status=dead",
        *(f"/admin/deliveries/{delivery_id}" for delivery_id in site.delivery_ids.values()),
        "/admin/settings",
        "/admin/connections/new",
        "/admin/connections/new?type=fluentcrm",
        "/admin/connections/fluent/edit",
        "/admin/connections/fluent/dry-run",
        "/admin/connections/fluent/rotate-key",
        "/admin/connections/fluent/remove",
        "/admin/tokens",
        "/admin/admins",
        "/admin/roles",
    ]


def text(response) -> str:
    return response.get_data(as_text=True)


def test_every_page_renders_for_an_admin_and_never_shows_a_secret(app, admin_client, site):
    for path in pages(site):
        response = admin_client.get(path)
        assert response.status_code == 200, path
        body = text(response)
        for secret in (APP_PASSWORD, CRM_SECRET, MAIL_PASSWORD, app.config["SECRET_KEY"], site.access_key):
            assert secret not in body, f"{path} shows a secret"
        assert "hunter2-plain" not in body, f"{path} shows a stored password"


def test_unknown_things_are_404(admin_client, site):
    for path in ("/admin/connections/nope", "/admin/users/9999", "/admin/webhooks/9999", "/admin/deliveries/9999"):
        assert admin_client.get(path).status_code == 404, path


def test_dashboard_counts_queue_and_recent_activity(admin_client, site):
    body = text(admin_client.get("/admin/"))

    assert "Queue depth" in body
    # 5 deliveries, one per status: pending + in_flight + failed are queued; 1 of 2 finished succeeded.
    assert '<span class="stat-value">3</span>' in body
    assert "50.0 %" in body
    assert 'role="progressbar"' in body
    assert "invalid_access_key" in body  # the refused inbound request
    assert "fluentcrm answered HTTP 503" in body  # a recent failure


def test_connections_list_shows_type_state_missing_settings_and_key_hint(admin_client, site):
    body = text(admin_client.get("/admin/connections"))

    assert "activecampaign" in body
    assert "api_key" in body and "base_url" in body  # campaign's missing settings
    assert f"cbk_…{site.access_key[-4:]}" in body
    assert "badge-enabled" in body


def test_connection_page_masks_secrets_and_shows_urls_with_a_placeholder(admin_client, site):
    body = text(admin_client.get("/admin/connections/fluent"))

    assert "••••" + APP_PASSWORD[-4:] in body
    assert "https://bridge.example.com/?wpf_action=update_tags&amp;access_key=YOUR_ACCESS_KEY" in body
    assert "https://crm.example.com" in body
    assert "ada@example.com" in body  # its recent deliveries name the user


def test_test_button_on_a_webhook_without_test_url_says_nothing_was_sent(admin_client, make_connection):
    make_connection("hook", "custom_webhook", url="http://169.254.169.254/latest/meta-data/")
    page = text(admin_client.get("/admin/connections/hook"))
    response = admin_client.post(
        "/admin/connections/hook/test", data={"csrf_token": csrf_from(page)}, follow_redirects=True
    )
    assert "accepted our credentials" not in text(response)
    assert "nothing was sent" in text(response)


@responses.activate
def test_test_connection_button_calls_the_crm_and_reports_success(admin_client, site):
    responses.get(FLUENT_TAGS_URL, json={"tags": {"data": []}})
    page = text(admin_client.get("/admin/connections/fluent"))

    response = admin_client.post(
        "/admin/connections/fluent/test", data={"csrf_token": csrf_from(page)}, follow_redirects=True
    )

    assert response.status_code == 200
    assert "accepted our credentials" in text(response)
    assert len(responses.calls) == 1
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")


@responses.activate
def test_test_connection_button_reports_a_refusal_without_the_secret(admin_client, site):
    responses.get(FLUENT_TAGS_URL, status=401, json={"code": "rest_forbidden", "echo": APP_PASSWORD})
    page = text(admin_client.get("/admin/connections/fluent"))

    body = text(
        admin_client.post("/admin/connections/fluent/test", data={"csrf_token": csrf_from(page)}, follow_redirects=True)
    )

    assert "Connection test failed" in body
    assert "credentials refused" in body
    assert APP_PASSWORD not in body


def test_rotating_a_key_shows_the_new_key_once_and_keeps_the_old_one_for_the_grace(app, admin_client, site):
    page = text(admin_client.get("/admin/connections/fluent"))

    response = admin_client.post(
        "/admin/connections/fluent/rotate-key", data={"csrf_token": csrf_from(page), "grace_hours": "2"}
    )

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = text(response)
    new_key = re.search(r'id="access-key">([^<]+)<', body).group(1)
    assert f"?wpf_action=add&amp;access_key={new_key}" in body  # complete URLs, this once
    assert new_key.startswith("cbk_") and new_key != site.access_key
    with app.app_context():
        assert find_by_access_key(new_key).name == "fluent"
        assert find_by_access_key(site.access_key).name == "fluent"  # still inside its grace period
    assert new_key not in text(admin_client.get("/admin/connections/fluent"))
    assert "keeps working until" in text(admin_client.get("/admin/connections/fluent"))


def test_rotating_with_a_nonsense_grace_is_refused(app, admin_client, site):
    page = text(admin_client.get("/admin/connections/fluent"))

    response = admin_client.post(
        "/admin/connections/fluent/rotate-key", data={"csrf_token": csrf_from(page), "grace_hours": "-3"}
    )

    assert response.status_code == 400
    with app.app_context():
        assert find_by_access_key(site.access_key) is not None


def test_user_search_and_paging(app, admin_client, site):
    from bridge.accounts.users import create_user

    with app.app_context():
        for number in range(30):
            create_user(email=f"member{number:02d}@example.com")
        db.session.commit()

    found = text(admin_client.get("/admin/users?email=ADA"))
    assert "ada@example.com" in found and "bob@example.com" not in found

    first = text(admin_client.get("/admin/users?email=member"))
    second = text(admin_client.get("/admin/users?email=member&page=2"))
    assert "page 1 of 2 · 30 in all" in first
    assert "member29@example.com" in first and "member29@example.com" not in second
    assert "member00@example.com" in second


def test_user_page_merges_crm_activity_inbound_events_and_deliveries_newest_first(admin_client, site):
    body = text(admin_client.get(f"/admin/users/{site.user_id}"))

    timeline = body.split('<ol class="timeline">', 1)[1].split("</ol>", 1)[0]
    labels = [part.split("</span>", 1)[0] for part in timeline.split('class="tl-label tl-label-')[1:]]
    # deliveries at -1, -3, -10 min, inbound at -20, CRM at -30, deliveries at -40, -50
    assert [label.split(">", 1)[1] for label in labels] == [
        "Delivery",
        "Delivery",
        "Delivery",
        "Inbound",
        "CRM",
        "Delivery",
        "Delivery",
    ]
    assert "email_opened" in timeline
    assert "vip" in body and "newsletter" in body and "local-tag" in body
    assert "<code>41</code>" in body and "<code>42</code>" in body  # current and earlier links


def test_inbound_log_filters_and_detail_shows_the_redacted_payload(admin_client, site):
    refused_only = text(admin_client.get("/admin/webhooks?status=4xx"))
    assert "invalid_access_key" in refused_only and "updated" not in refused_only.split("<tbody>", 1)[1]

    fluent_only = text(admin_client.get("/admin/webhooks?connection=fluent"))
    assert "invalid_access_key" not in fluent_only.split("<tbody>", 1)[1]

    detail = text(admin_client.get(f"/admin/webhooks/{site.event_ok_id}"))
    assert "ada@example.com" in detail
    assert "&#34;user_pass&#34;: &#34;********&#34;" in detail


def test_deliveries_filter_by_status(admin_client, site):
    dead = text(admin_client.get("/admin/deliveries?status=dead")).split("<tbody>", 1)[1]

    assert f"#{site.delivery_ids['dead']}<" in dead
    assert f"#{site.delivery_ids['succeeded']}<" not in dead


@pytest.fixture
def fake_deliveries(monkeypatch):
    """Stands in for ``bridge.delivery.deliveries`` (issue 5, written in parallel): records the calls."""
    calls: list[tuple] = []
    module = types.ModuleType("bridge.delivery.deliveries")
    module.retry_delivery = lambda delivery_id: calls.append(("retry", delivery_id))
    module.replay = lambda status="dead", since=None: calls.append(("replay", status, since)) or 4
    monkeypatch.setitem(sys.modules, "bridge.delivery.deliveries", module)
    return calls


def test_retry_button_retries_that_delivery(admin_client, site, fake_deliveries):
    dead_id = site.delivery_ids["dead"]
    page = text(admin_client.get("/admin/deliveries?status=dead"))

    response = admin_client.post(
        f"/admin/deliveries/{dead_id}/retry",
        data={"csrf_token": csrf_from(page), "next": "/admin/deliveries?status=dead"},
    )

    assert response.headers["Location"] == "/admin/deliveries?status=dead"
    assert fake_deliveries == [("retry", dead_id)]
    assert f"Delivery #{dead_id} is queued again" in text(admin_client.get("/admin/deliveries"))


def test_replay_button_replays_dead_deliveries(admin_client, site, fake_deliveries):
    page = text(admin_client.get("/admin/deliveries"))

    response = admin_client.post(
        "/admin/deliveries/replay", data={"csrf_token": csrf_from(page)}, follow_redirects=True
    )

    assert fake_deliveries == [("replay", "dead", None)]
    assert "4 dead deliveries queued again" in text(response)


def test_settings_page_shows_configuration_with_secrets_hidden(app, admin_client, site):
    body = text(admin_client.get("/admin/settings"))

    assert "BRIDGE_MAX_BODY_BYTES" in body and "1048576" in body
    assert "smtps://[hidden]@smtp.example.com:465" in body
    assert "mailer" not in body
    assert app.config["SECRET_KEY"] not in body and CRM_SECRET not in body
    assert "fluentcrm" in body  # registered connection types


def test_admin_pages_are_not_cached_or_framed(admin_client, site):
    response = admin_client.get(f"/admin/users/{site.user_id}")

    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_console_reads_users_without_changing_them(app, admin_client, site):
    with app.app_context():
        before = db.session.scalar(select(User.updated_at).where(User.id == site.user_id))
    admin_client.get(f"/admin/users/{site.user_id}")
    with app.app_context():
        assert db.session.scalar(select(User.updated_at).where(User.id == site.user_id)) == before


def test_a_retry_the_service_refuses_is_reported(admin_client, site, monkeypatch):
    def refuse(delivery_id: int) -> None:
        raise LookupError(f"delivery {delivery_id} is succeeded; only failed or dead deliveries are retried")

    module = types.ModuleType("bridge.delivery.deliveries")
    module.retry_delivery = refuse
    monkeypatch.setitem(sys.modules, "bridge.delivery.deliveries", module)
    page = text(admin_client.get("/admin/deliveries"))

    response = admin_client.post(
        f"/admin/deliveries/{site.delivery_ids['succeeded']}/retry",
        data={"csrf_token": csrf_from(page)},
        follow_redirects=True,
    )

    assert response.status_code == 200
    assert "was not retried: delivery" in text(response)


def test_test_connection_button_names_missing_settings_without_calling_the_crm(app, admin_client, site):
    with app.app_context():
        from bridge.connections.service import create_connection

        create_connection("bare", "fluentcrm", {})
        db.session.commit()
    page = text(admin_client.get("/admin/connections/bare"))
    body = text(
        admin_client.post("/admin/connections/bare/test", data={"csrf_token": csrf_from(page)}, follow_redirects=True)
    )
    assert "Not tested: missing required setting" in body


@responses.activate
def test_a_connection_test_stores_what_the_crm_changed(app, admin_client, site, monkeypatch):
    """A token refreshed during the test call is kept, like one refreshed during a delivery."""
    from bridge.connections.service import get_connection
    from bridge.connections.settings import effective_settings
    from crm_adapters.fluentcrm import FluentCrmAdapter

    monkeypatch.setattr(FluentCrmAdapter, "settings_to_store", lambda self: {"app_password": "rotated-pass-2468"})
    responses.get(FLUENT_TAGS_URL, json={"tags": {"data": []}})
    page = text(admin_client.get("/admin/connections/fluent"))
    admin_client.post("/admin/connections/fluent/test", data={"csrf_token": csrf_from(page)}, follow_redirects=True)
    with app.app_context():
        assert effective_settings(get_connection("fluent"))["app_password"] == "rotated-pass-2468"
