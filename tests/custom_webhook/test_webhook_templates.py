"""Template checking and rendering, sandbox included."""

from __future__ import annotations

import pytest

from crm_adapters.webhook_templates import (
    TemplateRenderError,
    render_json,
    render_typed,
    single_expression,
    template_problems,
)

CONTEXT = {
    "contact": {"email": "a@example.com", "tags": ["x"], "meta": {"n": 3, "items": "meta-items"}, "fields": {}},
    "event": {"type": "user.registered", "id": "e1", "occurred_at": "2026-01-01T00:00:00+00:00"},
}


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("{{contact.tags}}", ["x"]),
        (" {{ contact.meta.n }} ", 3),
        ("{{contact.meta.n > 2}}", True),
        ("{{contact.meta.absent}}", None),
        ("{{contact.meta}}", {"n": 3, "items": "meta-items"}),
        ("{{contact.meta.items}}", "meta-items"),  # a key, not dict.items
        ("n={{contact.meta.n}}", "n=3"),
        ("{{contact.email}} / {{contact.meta.absent}}", "a@example.com / "),
        ("{{ contact.tags }}{{ contact.tags }}", "['x']['x']"),
        ("plain", "plain"),
    ],
)
def test_typed_rendering(source: str, value: object) -> None:
    assert render_typed(source, CONTEXT) == value


def test_nested_json_keeps_keys_and_non_strings() -> None:
    rendered = render_json({"{{k}}": [1, None, "{{event.id}}"], "b": False}, CONTEXT)
    assert rendered == {"{{k}}": [1, None, "e1"], "b": False}


def test_single_expression_detection() -> None:
    assert single_expression("{{ a }}") == " a "
    assert single_expression("{{ a }} {{ b }}") is None
    assert single_expression("{% if a %}{{ a }}{% endif %}") is None


@pytest.mark.parametrize(
    "source",
    [
        "{{ contact.email.__class__.__mro__ }}",
        "{{ 'a' * 100000 }}",
        "{{ contact.tags * 20000 }}",
        "{{ 2 ** 100000 }}",
        "{{ range(10**9)|list }}",
    ],
)
def test_sandbox_refuses_escapes_and_blowups(source: str) -> None:
    with pytest.raises(TemplateRenderError):
        render_typed(source, CONTEXT)


def test_problems_name_location_and_variable() -> None:
    problems = template_problems({"a": ["ok {{contact.email}}", "{{ contact.nope }}"]}, "body")
    assert len(problems) == 1 and problems[0].startswith("body.a[1]: unknown variable 'contact.nope'")
