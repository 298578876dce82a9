"""A site owner's day in the console, in headless Chromium: sign in, create a FluentCRM
connection through the form, copy its webhook URL, send a webhook to it, find the user and the
inbound event, edit the field map with the CRM's own field names, run the dry-run pane, retry a
dead delivery, revoke an API token; then every page at 390 px and 1280 px (no sideways scroll,
screenshots saved), with no saved secret or full access key on any page but the one that
answers its creation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from browser_support import NARROW, WIDE, Tab
from fakecrm import APP_PASSWORD, USERNAME, FakeFluentCrm
from playwright.sync_api import expect
from sqlalchemy import select

from bridge.extensions import db
from bridge.models import Batch


@pytest.fixture
def crm() -> Iterator[FakeFluentCrm]:
    with FakeFluentCrm(tags=("vip", "newsletter", "gold-members")) as fake:
        yield fake


def create_connection_through_the_form(tab: Tab, crm: FakeFluentCrm) -> str:
    tab.go("/admin/connections")
    tab.page.click("text=New connection")
    tab.page.click(".type-card:has-text('FluentCRM')")
    tab.page.fill("input[name=name]", "fluent")
    tab.page.fill("input[name=base_url]", crm.url)
    tab.page.fill("input[name=username]", USERNAME)
    tab.page.fill("input[name=app_password]", APP_PASSWORD)
    tab.page.click("button:has-text('Create connection')")
    tab.page.wait_for_selector("#access-key")
    key = tab.page.inner_text("#access-key").strip()
    assert key.startswith("cbk_")
    return key


def copy_add_url(tab: Tab) -> str:
    tab.page.click("button[data-copy='url-add']")
    tab.page.wait_for_selector("button[data-copy='url-add'].copied")
    return str(tab.page.evaluate("navigator.clipboard.readText()"))


def test_a_site_owner_sets_up_and_runs_a_fluentcrm_connection(app, tab: Tab, crm: FakeFluentCrm) -> None:
    from bridge.accounts import api_tokens
    from bridge.connections.service import get_connection
    from bridge.connections.settings import effective_settings
    from bridge.delivery import outbox
    from bridge.models import Delivery, User

    tab.sign_in()
    key = create_connection_through_the_form(tab, crm)
    tab.shoot("connection-created")

    url = copy_add_url(tab)
    assert url == f"{tab.base}/?wpf_action=add&access_key={key}"

    # The CRM's automation calls the copied URL for a contact it has, as FluentCRM's outgoing
    # webhook sends it (shared/fixtures/fluentcrm/with_tags.json: tags as objects with slugs).
    contact = crm.seed_contact("ali@example.org", first_name="Ali", tag_slugs=["vip"])
    body = {
        "id": str(contact["id"]),
        "email": "ali@example.org",
        "first_name": "Ali",
        "tags": [{"id": 1, "slug": "vip"}],
    }
    answer = requests.post(url, json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    user_id = answer.json()["user_id"]

    tab.go("/admin/users")
    tab.page.click("text=ali@example.org")
    tab.page.wait_for_url(f"{tab.base}/admin/users/{user_id}")
    assert tab.page.locator(".tl-inbound").filter(has_text="add from fluent").count() == 1
    tab.go("/admin/webhooks")
    assert (
        tab.page.locator("table.table tbody tr").filter(has_text="add").filter(has_text=str(contact["id"])).count() == 1
    )

    # The field map, with the CRM's own field names offered after a refresh.
    tab.go("/admin/connections/fluent/edit")
    tab.page.click("text=Refresh CRM fields and tags")
    tab.page.wait_for_selector(".flash-success")
    assert tab.page.locator("#crm-fields option[value='membership_tier']").count() == 1
    assert tab.page.locator("#crm-tags option[value='gold-members']").count() == 1
    tab.page.click("text=Add a row")
    tab.page.locator("input[name=field_map_local]").last.fill("tier")
    tab.page.locator("input[name=field_map_crm]").last.fill("membership_tier")
    tab.page.fill("input[name=assign_tags]", "gold-members")
    tab.page.click("button:has-text('Save changes')")
    tab.page.wait_for_url(f"{tab.base}/admin/connections/fluent")
    with app.app_context():
        settings = effective_settings(get_connection("fluent"))
        assert settings["field_map"]["tier"] == "membership_tier"
        assert settings["field_map"]["email"] == "email"  # the other rows kept
        assert settings["assign_tags"] == ["gold-members"]
        assert settings["app_password"] == APP_PASSWORD  # left blank in the form: kept

    # The dry-run pane: what a registration would send, rendered, nothing sent.
    sent_before = len(crm.requests)
    tab.page.click("a:has-text('Dry run')")
    tab.page.click("button:has-text('Run')")
    result = tab.page.locator("#dry-run-result")
    result.wait_for()
    assert "/wp-json/fluent-crm/v2/subscribers" in result.inner_text()
    assert "preset-user@example.com" in result.inner_text()
    assert len(crm.requests) == sent_before
    tab.shoot("dry-run-result")

    # A dead delivery, retried from the deliveries page.
    with app.app_context():
        user = db.session.get(User, user_id)
        dead = outbox.enqueue(outbox.CONTACT_UPSERT, connection=get_connection("fluent"), user=user)
        dead.status, dead.last_error = "dead", "http_422: rejected"
        db.session.commit()
        dead_id = dead.id
    tab.go("/admin/deliveries?status=dead")
    tab.page.locator("tr").filter(has=tab.page.locator(f"a:text-is('#{dead_id}')")).locator("text=Retry").click()
    tab.page.wait_for_selector(f".flash-success:has-text('#{dead_id}')")
    with app.app_context():
        assert db.session.get(Delivery, dead_id).status == "pending"

    # An API token made and revoked in the console.
    tab.go("/admin/tokens")
    tab.page.fill("input[name=name]", "website")
    tab.page.click("button:has-text('Create token')")
    token = tab.page.inner_text("#new-token").strip()
    api = f"{tab.base}/api/users"
    assert requests.get(api, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    tab.go("/admin/tokens")
    assert token not in tab.page.content()
    tab.page.locator("tr").filter(has_text="website").locator("button:has-text('Revoke')").click()
    tab.page.wait_for_selector(".flash-success:has-text('revoked')")
    assert requests.get(api, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 401
    with app.app_context():
        assert [t.name for t in api_tokens.list_tokens()] == []


def seed_site(app: Any, crm: FakeFluentCrm) -> dict[str, Any]:
    """One of everything, for the page tour."""
    from bridge.accounts.login_links import make_login_token
    from bridge.accounts.users import create_user
    from bridge.connections.service import create_connection
    from bridge.delivery import outbox
    from bridge.models import WebhookEvent

    with app.app_context():
        connection, key = create_connection(
            "fluent", "fluentcrm", {"base_url": crm.url, "username": USERNAME, "app_password": APP_PASSWORD}
        )
        user = create_user(email="ada.lovelace.with.a.long.address@example.com", first_name="Ada", last_name="Lovelace")
        event = WebhookEvent(
            connection_id=connection.id,
            connection_name="fluent",
            action="update_tags",
            contact_id="4242",
            user_id=user.id,
            method="POST",
            path="/?wpf_action=update_tags&access_key=[redacted]",
            status_code=200,
            outcome="updated",
            duration_ms=12.0,
            payload='{"id": "4242", "email": "ada.lovelace.with.a.long.address@example.com"}',
        )
        db.session.add(event)
        ids = {}
        for status in ("pending", "failed", "dead", "succeeded"):
            delivery = outbox.enqueue(outbox.CONTACT_UPSERT, connection=connection, user=user)
            delivery.status = status
            if status in ("failed", "dead"):
                delivery.last_error = "crm_unavailable: HTTP 503 from the CRM, which said it was down for maintenance"
            ids[status] = delivery.id
        db.session.add(
            Batch(
                operation="import",
                connection_id=connection.id,
                connection_name="fluent",
                status="running",
                params={"tag": "vip"},
                total=280,
                done=112,
                created=100,
                updated=12,
            )
        )
        db.session.commit()
        return {
            "key": key,
            "user_id": user.id,
            "event_id": event.id,
            "delivery_id": ids["dead"],
            "login_token": make_login_token(user),
        }


def test_every_page_fits_a_phone_and_a_desktop_and_shows_no_secret(app, tab: Tab, crm: FakeFluentCrm) -> None:
    site = seed_site(app, crm)
    pages = {
        "dashboard": "/admin/",
        "connections": "/admin/connections",
        "connection-types": "/admin/connections/new",
        "connection-new": "/admin/connections/new?type=fluentcrm",
        "connection": "/admin/connections/fluent",
        "connection-edit": "/admin/connections/fluent/edit",
        "connection-dry-run": "/admin/connections/fluent/dry-run",
        "connection-rotate": "/admin/connections/fluent/rotate-key",
        "connection-remove": "/admin/connections/fluent/remove",
        "users": "/admin/users",
        "user": f"/admin/users/{site['user_id']}",
        "webhooks": "/admin/webhooks",
        "webhook": f"/admin/webhooks/{site['event_id']}",
        "deliveries": "/admin/deliveries",
        "delivery": f"/admin/deliveries/{site['delivery_id']}",
        "tokens": "/admin/tokens",
        "admins": "/admin/admins",
        "roles": "/admin/roles",
        "settings": "/admin/settings",
        "batches": "/admin/batches",
    }
    public = {"register": "/register", "set-password": f"/login/{site['login_token']}"}
    errors = {"not-found": ("/admin/no-such-page", 404), "bad-filter": ("/admin/deliveries?status=bogus", 400)}

    tab.go("/admin/login")
    for width in (NARROW, WIDE):
        tab.width(width)
        tab.shoot("login")
        assert tab.scroll_width() <= width, ("login", width)
    tab.sign_in()
    for width in (NARROW, WIDE):
        tab.width(width)
        for name, path in {**pages, **public}.items():
            tab.go(path)
            assert tab.scroll_width() <= width, (name, width, tab.scroll_width())
            assert tab.clipped() == [], (name, width)
            html = tab.page.content()
            assert APP_PASSWORD not in html and site["key"] not in html, name
            assert not re.search(r"\\u2022", html), name
            tab.shoot(name)
        for name, (path, status) in errors.items():
            tab.go(path, status=status)
            assert tab.scroll_width() <= width, (name, width)
            tab.shoot(name)
        # The menu collapses on a phone and opens on demand.
        tab.go("/admin/")
        menu = tab.page.locator(".nav-panel nav")
        if width == NARROW:
            assert not menu.is_visible()
            header = tab.page.evaluate("document.querySelector('.sidebar').getBoundingClientRect().height")
            assert header < 80, header  # a bar, not a first screen full of menu
            tab.page.click("label.nav-button")
            assert menu.is_visible()
            tab.shoot("menu-open")
        else:
            assert menu.is_visible()
        # The pages that answer a POST: a dry-run result and a rotated key.
        tab.go("/admin/connections/fluent/dry-run")
        tab.page.click("button:has-text('Run')")
        tab.page.locator("#dry-run-result").wait_for()
        assert tab.scroll_width() <= width, ("dry-run result", width)
        tab.go("/admin/connections/fluent/rotate-key")
        tab.page.fill("input[name=grace_hours]", "1")
        tab.page.click("button:has-text('Rotate key')")
        tab.page.wait_for_selector("#access-key")
        assert tab.scroll_width() <= width, ("key page", width)
        tab.shoot("connection-key")


def test_a_running_batch_shows_its_progress_live(app, tab: Tab, crm: FakeFluentCrm) -> None:
    """The batches page moves a running batch's bar as its counters move, without a reload,
    under the console's script-src 'self' policy (a blocked script fails the test's console
    check), and reloads into the finished state."""
    seed_site(app, crm)
    tab.sign_in()
    tab.go("/admin/batches")
    bar = tab.page.locator("tr[data-batch] [role=progressbar]").first
    assert bar.get_attribute("aria-valuenow") == "40"
    with app.app_context():
        batch = db.session.scalars(select(Batch)).one()
        batch.done, batch.created = 252, 240
        db.session.commit()
    expect(bar).to_have_attribute("aria-valuenow", "90", timeout=30_000)
    assert tab.page.locator("tr[data-batch] [data-field=count]").first.inner_text() == "252 / 280"
    with app.app_context():
        batch = db.session.scalars(select(Batch)).one()
        batch.done, batch.status = 280, "succeeded"
        db.session.commit()
    expect(tab.page.locator("table[data-poll]")).to_have_count(0, timeout=30_000)  # reloaded: nothing runs
    assert "succeeded" in tab.page.locator("tr[data-batch] [data-field=status]").first.inner_text()
