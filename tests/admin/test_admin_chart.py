"""The deliveries chart: counts per hour and status over the last 24 hours, drawn as inline SVG;
and the page after a password is set says where to sign in."""

from __future__ import annotations

import re
from datetime import timedelta

from bridge.accounts.login_links import make_login_token
from bridge.accounts.users import create_user
from bridge.admin import chart
from bridge.delivery import outbox
from bridge.extensions import db
from bridge.models import utcnow


def test_deliveries_are_counted_per_hour_by_status(ctx):
    now = utcnow().replace(minute=30, second=0, microsecond=0)
    user = create_user(email="c@example.com")
    for hours_ago, status in ((0, "succeeded"), (0, "dead"), (0, "dead"), (3, "pending"), (30, "dead")):
        row = outbox.enqueue(outbox.MAIL_WELCOME, user=user)
        row.status, row.created_at = status, now - timedelta(hours=hours_ago)
    db.session.commit()

    buckets = chart.deliveries_per_hour(now)
    assert len(buckets) == 24
    assert buckets[-1][0] == now.replace(minute=0)
    assert buckets[-1][1]["dead"] == 2 and buckets[-1][1]["succeeded"] == 1
    assert buckets[-4][1]["pending"] == 1
    assert sum(sum(counts.values()) for _, counts in buckets) == 4  # 30 hours ago is out

    svg = str(chart.hourly_svg(buckets, outbox.STATUSES))
    assert svg.startswith("<svg") and 'viewBox="0 0 720 220"' in svg
    assert "4 in all" in svg and "2 dead" in svg
    assert svg.count('fill="#ef4444"') == 1  # one dead segment: the hour with two


def test_the_deliveries_page_draws_the_chart(admin_client, site):
    body = admin_client.get("/admin/deliveries").get_data(as_text=True)
    assert '<svg class="chart"' in body and "Deliveries per hour by status" in body


def test_the_password_set_page_says_where_to_sign_in(app, client):
    with app.app_context():
        user = create_user(email="s@example.com")
        db.session.commit()
        token = make_login_token(user)
    page = client.get(f"/login/{token}").get_data(as_text=True)
    csrf = re.search(r'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    app.config["BRIDGE_SIGNIN_URL"] = "https://shop.example.com/my-account"
    done = client.post(
        f"/login/{token}",
        data={"csrf_token": csrf, "password": "a-long-new-password", "password_confirm": "a-long-new-password"},
    ).get_data(as_text=True)
    assert 'href="https://shop.example.com/my-account"' in done
    assert "as <strong>s@example.com</strong>" in done
