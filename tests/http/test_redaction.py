"""Redaction of what is logged and stored (``bridge.outbound.redaction``), including the fast paths taken
when a string or URL has nothing a rule looks for: each case here takes one of them and must
still come out clean."""

from __future__ import annotations

import json

import pytest

from bridge.outbound.redaction import MASKED, REDACTED, is_password_key, redact_body, redact_url, scrub_text

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


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # as sent, masked in place: names any case, empty values, brackets, other pairs kept
        ("/?wpf_action=update&access_key=k-123456", f"/?wpf_action=update&access_key={REDACTED}"),
        ("/?ACCESS_KEY=k-123456&Token=t-123456&x=", f"/?ACCESS_KEY={REDACTED}&Token={REDACTED}&x="),
        ("/?t[]=a&t[]=b&key=k-123456&=v", f"/?t[]=a&t[]=b&key={REDACTED}&=v"),
        ("/?monkey=banana&access_keys=v-1", "/?monkey=banana&access_keys=v-1"),  # not a secret name
        # decoded and written again: encoded names, "+", "=" in a value, a pair without "="
        ("/?access%5Fkey=k-123456&a=b%20c", f"/?access_key={REDACTED}&a=b+c"),
        ("/?%41PI%5Fkey=k-123456", f"/?API_key={REDACTED}"),
        ("/?api+key=k-1&apikey=k-123456&x=1+2", f"/?api+key=k-1&apikey={REDACTED}&x=1+2"),
        ("/?key=a=b&flag&&n=%5B1%5D", f"/?key={REDACTED}&flag=&n=[1]"),
        ("/?token=k-123456&x=%C3%A9", f"/?token={REDACTED}&x=%C3%A9"),
    ],
)
def test_redact_url_masks_secret_parameters_however_written(path: str, expected: str) -> None:
    redacted = redact_url(path)
    assert redacted == expected
    assert "k-123456" not in redacted


def test_a_query_as_written_is_masked_without_decoding_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inbound log's path (``wpf_action=update&access_key=…``) decodes to itself: masking
    its pairs in place gives what decoding and encoding again would, at a fraction of the cost."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr("bridge.outbound.redaction.parse_qsl", refuse)
    path = "/?wpf_action=update&access_key=k-123456&contact_id=7"
    assert redact_url(path, ["k-123456"]) == f"/?wpf_action=update&access_key={REDACTED}&contact_id=7"


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


def test_json_with_nothing_password_like_is_kept_as_written_with_secrets_scrubbed() -> None:
    """The fast path: no password-like word and no escapes, so the text is scrubbed as it is
    (spacing and key order kept) rather than decoded, walked and encoded again."""
    body = '{"contact":  {"email": "a@example.com", "note": "' + SECRET + '", "url": "https://x/?access_key=k1"}}'
    redacted = redact_body(body, "application/json", [SECRET])
    assert redacted == body.replace(SECRET, REDACTED).replace("access_key=k1", f"access_key={REDACTED}")
    assert json.loads(redacted)["contact"]["note"] == REDACTED


@pytest.mark.parametrize(
    ("body", "secret", "leak"),
    [
        # an escaped key the text search cannot see: decoded, it is a password key
        ('{"p\\u0061ssword": "hunter2-x"}', SECRET, "hunter2-x"),
        # PHP writes every "/" as "\/": a secret holding a "/" is not in the text as it decodes
        ('{"url": "https:\\/\\/crm.example\\/h\\/ab\\/cd-xyz789"}', "ab/cd-xyz789", "cd-xyz789"),
        # a quote inside a string is escaped, and so is the secret holding one
        ('{"note": "say \\"q\\"uoted-xyz789"}', '"q"uoted-xyz789', "uoted-xyz789"),
    ],
)
def test_json_whose_text_differs_from_its_values_is_decoded_before_redaction(body: str, secret: str, leak: str) -> None:
    redacted = redact_body(body, "application/json", [secret])
    assert leak not in redacted
    assert MASKED in redacted or REDACTED in redacted


@pytest.mark.parametrize(
    ("body", "masked"),
    [
        ('{"PassWord": "hunter22"}', True),
        ('{"user": {"api_TOKEN": "hunter22"}}', True),
        ('{"user_pa\u017fs": "hunter22", "name": "Jörg"}', True),  # the long s is an "s" to the pattern
        ('{"name": "Jörg", "note": "hunter22"}', False),
        ('{"first_name": "Ann", "note": "hunter22"}', False),
    ],
)
def test_json_password_keys_are_found_in_any_case_and_script(body: str, masked: bool) -> None:
    assert ("hunter22" not in redact_body(body, "application/json")) is masked


def test_ascii_json_without_a_password_word_is_not_searched_with_the_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    """Substring searches answer for ASCII text (a webhook's body): the pattern tried its
    alternation at every character of the body."""

    class Refusing:
        def search(self, text: str) -> None:
            raise AssertionError("searched with the pattern")

    monkeypatch.setattr("bridge.outbound.redaction._PASSWORD_KEY", Refusing())
    body = '{"id": 7, "email": "a@example.com", "tags": [{"slug": "vip"}]}'
    assert redact_body(body, "application/json", [SECRET]) == body


def test_json_written_by_php_is_scrubbed_as_written_when_no_secret_holds_a_slash() -> None:
    body = '{"photo": "http:\\/\\/crm.example\\/a.png", "note": "' + SECRET + '"}'
    assert redact_body(body, "application/json", [SECRET]) == body.replace(SECRET, REDACTED)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("email=a%40b.c&password=hunter22&t[]=x", f"email=a%40b.c&password={MASKED}&t[]=x"),
        ("user_pass=hunter22", f"user_pass={MASKED}"),
        ("pass%77ord=hunter22&name=J%C3%B6rg", f"pass%77ord={MASKED}&name=J%C3%B6rg"),  # name encoded
        ("user+pass=hunter22", f"user+pass={MASKED}"),  # "+" decodes to a space
        ("access%5Fkey=k-123456&monkey=banana", "access%5Fkey=[redacted]&monkey=banana"),
        ("KEY=abc123&api_key=def456", f"KEY={MASKED}&api_key={MASKED}"),
        ("t[]=1&t[]=2&first_name=Ann", "t[]=1&t[]=2&first_name=Ann"),  # nothing sensitive: as sent
    ],
)
def test_form_bodies_mask_sensitive_pairs_and_keep_the_others_as_sent(body: str, expected: str) -> None:
    redacted = redact_body(body, "application/x-www-form-urlencoded")
    assert redacted.replace(REDACTED, MASKED) == expected.replace(REDACTED, MASKED)
    assert "hunter22" not in redacted and "k-123456" not in redacted
