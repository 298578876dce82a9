"""Which addresses outbound requests may reach (CONTRACT §9), decided before a socket opens.

* only ``http``/``https`` URLs whose host passes ``BRIDGE_OUTBOUND_ALLOWLIST`` (hosts or
  ``*.suffix``; empty means any host);
* the host is resolved once; if *any* answer is not a globally routable unicast address
  (loopback, private, link-local, CGNAT, multicast, reserved, documentation, and IPv4 wrapped in
  IPv6: mapped, NAT64, 6to4) the request is refused with ``OutboundDenied``.
  ``BRIDGE_ALLOW_PRIVATE_TARGETS`` lifts only this address check.

No HTTP here: ``bridge.outbound.client`` connects to the address :func:`pick_address` returns (pinning).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crm_adapters.errors import OutboundDenied, TransportError

DEFAULT_MAX_RESPONSE_BYTES = 1_048_576

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges ``ipaddress`` does not already treat as non-global (or did not in older CPythons).
EXTRA_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "100.64.0.0/10",  # CGNAT (RFC 6598): provider-internal
        "192.0.0.0/24",  # IETF protocol assignments
        "192.88.99.0/24",  # 6to4 relay anycast
        "198.18.0.0/15",  # benchmarking
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
        "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, ...)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # segment routing SIDs
    )
)
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")


def parse_loose_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``host`` as IPv4 when it is one in any spelling ``inet_aton`` accepts, else None.

    ``inet_aton`` (and so ``getaddrinfo``) reads ``2130706433``, ``0177.0.0.1``, ``0x7f.1`` and
    ``127.1`` as 127.0.0.1; treating them as names would let them slip past a literal check.
    """
    parts = host.split(".")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]  # a trailing dot is still an address
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        lowered = part.lower()
        try:
            if lowered.startswith("0x"):
                number = int(lowered[2:] or "0", 16)
            elif len(lowered) > 1 and lowered.startswith("0"):
                number = int(lowered, 8)
            else:
                number = int(lowered, 10) if lowered.isdigit() else -1
        except ValueError:
            return None
        if number < 0:
            return None
        numbers.append(number)
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a URL host names without DNS (brackets and IPv6 zone ids allowed)."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    return parse_loose_ipv4(bare)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped ::ffff:, NAT64 64:ff9b::/96, 6to4)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def address_is_public(address: str | IPAddress) -> bool:
    """True only for globally routable unicast addresses; IPv4 inside IPv6 is judged as IPv4."""
    ip = address if not isinstance(address, str) else ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None and not address_is_public(inner):
            return False
        if ip.ipv4_mapped is not None or ip in NAT64_WELL_KNOWN:
            return True  # a translation of a public IPv4 address: judged by it alone
    if any(ip in network for network in EXTRA_BLOCKED_NETWORKS if network.version == ip.version):
        return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_private or ip.is_reserved or ip.is_loopback or ip.is_link_local or ip.is_unspecified
    )


Resolver = Callable[[str, int], list[IPAddress]]


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for ``host`` (one lookup)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TransportError(f"cannot resolve {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for family, *_rest, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if ip not in addresses:
                addresses.append(ip)
    if not addresses:
        raise TransportError(f"cannot resolve {host}: no IPv4 or IPv6 address")
    return addresses


@dataclass(frozen=True)
class OutboundPolicy:
    allow_private: bool = False
    allowlist: tuple[str, ...] = ()
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    default_timeout: float = 10.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OutboundPolicy:
        raw = config.get("BRIDGE_OUTBOUND_ALLOWLIST") or ""
        allowlist = tuple(p.strip().lower().rstrip(".") for p in raw.split(",") if p.strip())
        return cls(
            allow_private=bool(config.get("BRIDGE_ALLOW_PRIVATE_TARGETS")),
            allowlist=allowlist,
            max_response_bytes=int(config.get("BRIDGE_OUTBOUND_MAX_RESPONSE_BYTES") or DEFAULT_MAX_RESPONSE_BYTES),
        )

    def host_allowed(self, host: str) -> bool:
        """Exact host, or ``*.suffix`` for any subdomain of suffix (not suffix itself)."""
        if not self.allowlist:
            return True
        host = host.lower().rstrip(".")
        for pattern in self.allowlist:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False


def check_url(url: str, policy: OutboundPolicy) -> str:
    """The URL's host if its scheme and host pass the policy (no DNS); else ``OutboundDenied``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (validates the port)
    except ValueError as exc:
        raise OutboundDenied(f"invalid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise OutboundDenied(f"scheme {parts.scheme!r} is not allowed")
    host = parts.hostname
    if not host:
        raise OutboundDenied("URL has no host")
    if not policy.host_allowed(host):
        raise OutboundDenied(f"host {host} is not in BRIDGE_OUTBOUND_ALLOWLIST")
    return host


def pick_address(host: str, port: int, policy: OutboundPolicy, resolver: Resolver = resolve) -> IPAddress:
    """Resolve ``host`` once and return the address to connect to.

    Every answer must be public (unless private targets are allowed): a resolver answering a
    public address first and a private one second is refused, not raced.
    """
    literal = parse_ip_literal(host)
    addresses = [literal] if literal is not None else resolver(host, port)
    if not policy.allow_private:
        for address in addresses:
            if not address_is_public(address):
                raise OutboundDenied(f"host {host} resolves to a non-public address")
    return addresses[0]


def check_target(url: str, policy: OutboundPolicy, resolver: Resolver = resolve) -> IPAddress:
    """Raise ``OutboundDenied`` unless the URL may be requested; return the pinned address."""
    host = check_url(url, policy)
    parts = urlsplit(url)
    return pick_address(host, parts.port or (443 if parts.scheme == "https" else 80), policy, resolver)
