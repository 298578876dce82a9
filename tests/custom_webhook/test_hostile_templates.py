"""Issue 18 item 3: templates that would burn a worker's CPU or memory are refused when the
connection is saved (over HTTP, against a real server), and one stored before the rule never runs."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from sqlalchemy import select

from bridge.extensions import db
from bridge.models import Connection
from crm_adapters.webhook_templates import TemplateRenderError, render_text, render_typed, template_problems

URL = "https://hooks.example.com/in"
CONTEXT = {"contact": {"email": "a@example.com", "tags": ["x"], "meta": {"n": 3}}, "event": {"id": "e1"}}

LOOPS = "{% for a in 'x'*10000 %}{% for b in 'x'*10000 %}{% for c in 'x'*10000 %}.{% endfor %}{% endfor %}{% endfor %}"
HOSTILE = [
    (LOOPS, "loops"),
    ("{{ 'x'.ljust(10**9) }}", "calls are not allowed"),
    ("{{ lipsum(n=100000) }}", "calls are not allowed"),
    ("{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}", "macros are not allowed"),
    ("{{ range }}", "unknown variable 'range'"),
    ("{{ namespace }}", "unknown variable 'namespace'"),
    ("{{ cycler }}", "unknown variable 'cycler'"),
    ("{{ self }}", "unknown variable 'self'"),
    ("{{ '%0999999999d' % 1 }}", "string formatting"),
    ("{% set x = contact.email %}{{ x }}", "{% set %}"),
    ("{{ contact.email|center(999999999) }}", "center"),
    ("{{ contact.tags|map('center', 999999999)|list }}", "map"),
]  # fmt: skip


@pytest.mark.parametrize(("source", "reason"), HOSTILE)
def test_hostile_template_is_refused_at_save_over_http(
    live_server: Any, auth_headers: dict[str, str], source: str, reason: str
) -> None:
    body = {"name": "hook", "type": "custom_webhook", "settings": {"url": URL, "body": {"x": source}}}
    response = requests.post(f"{live_server.url}/api/connections", json=body, headers=auth_headers, timeout=30)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == "invalid_connection"
    assert "body.x" in answer["message"] and reason in answer["message"]
    assert requests.get(f"{live_server.url}/api/connections/hook", headers=auth_headers, timeout=30).status_code == 404


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("{{ contact.email|upper }}", "A@EXAMPLE.COM"),
        ("{{ contact.tags|join(',') }}", "x"),
        ("{% if contact.meta.n > 2 %}big{% else %}small{% endif %}", "big"),
        ("{{ 'vip' if 'x' in contact.tags else 'no' }}", "vip"),
        ("{{ contact.meta.n % 2 }}", "1"),
        ("{{ contact.email ~ '-' ~ event.id }}", "a@example.com-e1"),
    ],
)
def test_expressions_over_the_variables_still_work(source: str, value: str) -> None:
    assert template_problems(source, "url") == []
    assert render_text(source, CONTEXT) == value


@pytest.mark.parametrize(
    "source",
    [
        *(source for source, _ in HOSTILE[:4]),
        "{{ ('x'*10000)|list|join('y'*10000) }}",
        "{{ ('x'*10000)|replace('x', 'y'*10000) }}",
    ],
)
def test_hostile_template_stored_earlier_never_runs(source: str) -> None:
    with pytest.raises(TemplateRenderError):
        render_typed(source, CONTEXT)


def test_dry_run_of_a_macro_stored_before_the_rule_is_an_error_not_a_500(
    app, live_server: Any, auth_headers: dict[str, str], make_connection
) -> None:
    make_connection("hook", "custom_webhook", url=URL, body={"x": "{{contact.email}}"})
    with app.app_context():  # as a database from before the save-time check could hold it
        connection = db.session.scalar(select(Connection).where(Connection.name == "hook"))
        connection.settings = {**connection.settings, "body": {"x": HOSTILE[3][0]}}
        db.session.commit()
    response = requests.post(
        f"{live_server.url}/api/connections/hook/dry-run",
        json={"preset": "new_us_user"},
        headers=auth_headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    error = response.json()["error"]
    assert error["error_class"] == "invalid_config" and "macros are not allowed" in error["message"]
