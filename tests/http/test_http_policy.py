"""Table tests of the outbound address policy (CONTRACT §9): no app, no sockets."""

from __future__ import annotations

import ipaddress

import pytest

from bridge.outbound.policy import (
    OutboundPolicy,
    address_is_public,
    check_target,
    parse_ip_literal,
)
from crm_adapters.errors import OutboundDenied, TransportError

STRICT = OutboundPolicy()


def no_dns(host: str, port: int) -> list:
    raise AssertionError(f"{host} is a literal address and must not be looked up")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),  # mapped public IPv4
        ("2002:808:808::", True),  # 6to4 of a public IPv4
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # CGNAT
        ("100.127.255.254", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),  # multicast
        ("239.255.255.250", False),
        ("240.0.0.1", False),  # reserved
        ("255.255.255.255", False),
        ("192.0.2.10", False),  # documentation
        ("198.51.100.7", False),
        ("203.0.113.9", False),
        ("198.18.0.1", False),  # benchmarking
        ("192.88.99.1", False),  # 6to4 relay
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("ff02::1", False),
        ("2001:db8::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:169.254.169.254", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b:1::1", False),  # local-use NAT64
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", False),  # 6to4 of 169.254.169.254
        ("::7f00:1", False),  # IPv4-compatible (deprecated) loopback
        ("2001::1", False),  # Teredo
    ],
)
def test_address_policy(address: str, public: bool) -> None:
    assert address_is_public(address) is public


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("2130706433", "127.0.0.1"),  # decimal
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("0x7f.0.0.1", "127.0.0.1"),  # hex
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),  # short form
        ("0x7f.1", "127.0.0.1"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("127.0.0.1.", "127.0.0.1"),  # trailing dot
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("example.com", None),
        ("256.1.1.1", None),
        ("08.1.1.1", None),  # not octal: a name
        ("1.2.3.4.5", None),
    ],
)
def test_odd_ipv4_spellings_are_addresses(spelling: str, address: str | None) -> None:
    parsed = parse_ip_literal(spelling)
    assert parsed == (ipaddress.ip_address(address) if address else None)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.0.0.1/",
        "http://127.1:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[2002:7f00:1::]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://[::1]:5000/",
        "https://10.0.0.5/",
        "http://[fe80::1%25eth0]/",
    ],
)
def test_literal_private_targets_are_refused_without_dns(url: str) -> None:
    with pytest.raises(OutboundDenied):
        check_target(url, STRICT, resolver=no_dns)


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "gopher://x/", "http:///nohost"])
def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(OutboundDenied):
        check_target(url, STRICT, resolver=no_dns)


def test_public_literal_is_allowed_and_pinned_to_itself() -> None:
    assert str(check_target("https://8.8.8.8/x", STRICT, resolver=no_dns)) == "8.8.8.8"


def test_any_private_answer_refuses_the_host() -> None:
    """A resolver answering public first and private second must not be raced: refused."""
    calls: list[str] = []

    def mixed(host: str, port: int) -> list:
        calls.append(host)
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("127.0.0.1")]

    with pytest.raises(OutboundDenied, match="non-public"):
        check_target("https://crm.example.com/api", STRICT, resolver=mixed)
    assert calls == ["crm.example.com"]


def test_all_public_answers_pin_the_first() -> None:
    answers = [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("2606:4700::1")]
    pinned = check_target("https://crm.example.com/", STRICT, resolver=lambda h, p: answers)
    assert pinned == answers[0]


def test_private_allowed_lifts_only_the_address_check() -> None:
    lenient = OutboundPolicy(allow_private=True, allowlist=("crm.example.com",))
    local = [ipaddress.ip_address("127.0.0.1")]
    assert str(check_target("http://crm.example.com/", lenient, resolver=lambda h, p: local)) == "127.0.0.1"
    with pytest.raises(OutboundDenied, match="ALLOWLIST"):
        check_target("http://127.0.0.1/", lenient, resolver=no_dns)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("api.hubapi.com", True),
        ("API.HubAPI.com.", True),
        ("eu1.crm.example.com", True),
        ("deep.eu1.crm.example.com", True),
        ("crm.example.com", False),  # *.suffix means subdomains only
        ("evilcrm.example.com", False),
        ("hubapi.com", False),
        ("api.hubapi.com.evil.net", False),
    ],
)
def test_allowlist_patterns(host: str, allowed: bool) -> None:
    policy = OutboundPolicy.from_config({"BRIDGE_OUTBOUND_ALLOWLIST": " api.hubapi.com , *.crm.example.com "})
    assert policy.host_allowed(host) is allowed


def test_empty_allowlist_allows_any_host() -> None:
    assert OutboundPolicy.from_config({"BRIDGE_OUTBOUND_ALLOWLIST": ""}).host_allowed("anything.example")


def test_unresolvable_host_is_a_transport_error() -> None:
    def failing(host: str, port: int) -> list:
        raise TransportError(f"cannot resolve {host}")

    with pytest.raises(TransportError):
        check_target("https://nowhere.invalid/", STRICT, resolver=failing)
