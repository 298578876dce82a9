"""Redaction of what is logged and stored (``bridge.redaction``), including the fast paths taken
when a string or URL has nothing a rule looks for: each case here takes one of them and must
still come out clean."""

from __future__ import annotations

import json

import pytest

from bridge.redaction import MASKED, REDACTED, is_password_key, redact_body, redact_url, scrub_text

SECRET = "s3cr3t-value-1234"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("access_key=abc&x=1", f"access_key={REDACTED}&x=1"),
        ("GET /?ACCESS_KEY%3dabc HTTP/1.1", f"GET /?ACCESS_KEY%3d{REDACTED} HTTP/1.1"),  # encoded, lower-case hex
        ("api_key%3Dabc", f"api_key%3D{REDACTED}"),
        (f"plain text with {SECRET} in it", f"plain text with {REDACTED} in it"),  # no '=': only the secret
        ("nothing to hide", "nothing to hide"),
    ],
)
def test_scrub_text(text: str, expected: str) -> None:
    assert scrub_text(text, [SECRET]) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://crm.example.com/api?token=abc&page=2", f"https://crm.example.com/api?token={REDACTED}&page=2"),
        ("https://user:pw@crm.example.com/api", f"https://{REDACTED}@crm.example.com/api"),
        (f"https://crm.example.com/hooks/{SECRET}", f"https://crm.example.com/hooks/{REDACTED}"),  # no query
        ("https://crm.example.com/p/access_key=abc", f"https://crm.example.com/p/access_key={REDACTED}"),
        ("https://crm.example.com/contacts/7", "https://crm.example.com/contacts/7"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url, [SECRET]) == expected


def test_password_keys_are_masked_at_any_depth_and_answers_stay_right_when_cached() -> None:
    body = json.dumps({"contact": {"email": "a@example.com", "user_pass": "pw", "Password": "x", "note": SECRET}})
    for _ in range(2):  # the second time every key's verdict comes from the cache
        redacted = json.loads(redact_body(body, "application/json", [SECRET]))
        assert redacted["contact"] == {
            "email": "a@example.com",
            "user_pass": MASKED,
            "Password": MASKED,
            "note": REDACTED,
        }
    assert is_password_key("client_secret") and not is_password_key("email")
