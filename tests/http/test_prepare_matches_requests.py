"""``bridge.outbound.client.with_query`` encodes params itself (``requests``' own check is slow): the URL
it builds must be the one ``requests`` would have built."""

from __future__ import annotations

import pytest
import requests

from bridge.outbound.client import with_query


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("https://crm.example/api/subscribers/0", {"get_by_email": "first.last+tag@example.com"}),
        ("https://crm.example/p?page=2", {"tag": ["vip", "gold"], "skip": None, "per_page": 100}),
        ("https://crm.example/p#part", [("name", "Zoë & co/Ltd"), ("empty", "")]),
        ("https://crm.example/p", {"only": None}),
    ],
)
def test_the_query_is_the_one_requests_builds(url, params):
    assert with_query(url, params) == requests.Request("GET", url, params=params).prepare().url
