"""Refresh grants redeemed once per process (crm_adapters.oauth): concurrent 401s on one
connection must not each spend the same refresh token (a rotating provider refuses the second
use, and OAuth 2.1 reuse detection revokes the whole token family)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import responses

from bridge.outbound.client import OutboundClient, OutboundPolicy
from crm_adapters import oauth
from crm_adapters.oauth import RefreshGrants
from crm_adapters.pulsetech import PulseTechAdapter

API = "https://app.pulse.example/api/v1/"
TOKEN_URL = "https://portal.thepulsespot.com/oauth/token"  # the portal, not the app
CONFIG = {
    "base_url": "https://app.pulse.example",
    "access_token": "old",
    "refresh_token": "r1",
    "client_id": "cid",
    "client_secret": "csecret",
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def redeem(grants: RefreshGrants, grant, refresh_token: str = "r1"):
    return grants.redeem(token_url=TOKEN_URL, client_id="cid", refresh_token=refresh_token, grant=grant)


def test_callers_arriving_while_a_grant_runs_share_its_tokens(monkeypatch) -> None:
    grants = RefreshGrants(remember_seconds=0)  # nothing remembered: only joining the one in flight helps
    callers = 8
    waiting = threading.Condition()
    blocked: list[int] = []

    class CountedEvent(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            with waiting:
                blocked.append(1)
                waiting.notify_all()
            return super().wait(timeout)

    @dataclass
    class CountedRedemption(oauth._Redemption):
        done: threading.Event = field(default_factory=CountedEvent)

    monkeypatch.setattr(oauth, "_Redemption", CountedRedemption)
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def grant() -> dict[str, str]:
        calls.append(1)
        started.set()
        release.wait(10)
        return {"access_token": "new", "refresh_token": "r2"}

    with ThreadPoolExecutor(callers) as pool:
        leader = pool.submit(redeem, grants, grant)
        assert started.wait(10)
        waiters = [pool.submit(redeem, grants, grant) for _ in range(callers - 1)]
        with waiting:
            assert waiting.wait_for(lambda: len(blocked) == callers - 1, 10)
        release.set()
        results = [leader.result(10), *(w.result(10) for w in waiters)]
    assert calls == [1]
    assert results == [{"access_token": "new", "refresh_token": "r2"}] * callers


def test_a_late_caller_gets_the_remembered_tokens_until_they_age_out() -> None:
    clock = Clock()
    grants = RefreshGrants(remember_seconds=60, clock=clock)
    calls: list[str] = []

    def grant() -> dict[str, str]:
        calls.append("grant")
        return {"access_token": f"new{len(calls)}"}

    assert redeem(grants, grant) == {"access_token": "new1"}
    clock.now = 59.0
    assert redeem(grants, grant) == {"access_token": "new1"} and calls == ["grant"]
    assert redeem(grants, grant, refresh_token="other") == {"access_token": "new2"}  # another token: its own grant
    clock.now = 200.0
    assert redeem(grants, grant) == {"access_token": "new3"}


def test_a_failed_grant_is_shared_as_a_failure_not_retried_with_the_same_token() -> None:
    grants = RefreshGrants()
    calls: list[str] = []

    def refused() -> None:
        calls.append("grant")
        raise RuntimeError("invalid_grant")

    try:
        redeem(grants, refused)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the caller that ran the grant sees its error")
    assert redeem(grants, refused) is None and calls == ["grant"]
    assert redeem(grants, lambda: {"refresh_token": "no access token"}, refresh_token="r9") is None


def test_a_second_adapter_with_the_same_expired_token_reuses_the_first_refresh() -> None:
    """Two deliveries on one connection, each with its own adapter built from the same stored
    settings: the token endpoint is called once; the second adapter retries with the new token."""
    first = PulseTechAdapter(CONFIG, OutboundClient(policy=OutboundPolicy(allow_private=True)))
    second = PulseTechAdapter(CONFIG, OutboundClient(policy=OutboundPolicy(allow_private=True)))
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        old = rsps.get(
            API + "tags", status=401, match=[responses.matchers.header_matcher({"Authorization": "Bearer old"})]
        )
        token = rsps.post(TOKEN_URL, json={"access_token": "new", "refresh_token": "r2"})
        new = rsps.get(
            API + "tags",
            json={"data": [], "meta": {"last_page": 1}},
            match=[responses.matchers.header_matcher({"Authorization": "Bearer new"})],
        )
        first.check()
        second.check()
    assert (old.call_count, token.call_count, new.call_count) == (2, 1, 2)
    assert second.settings_to_store() == {"access_token": "new", "refresh_token": "r2"}
