"""The client's address, read through the proxies an operator trusts.

Behind a load balancer every request arrives from the balancer's address, so
per-address limits would put every client in one bucket. The forwarding
header names the real client, but anyone can send one: it is read only when
the peer (REMOTE_ADDR) is in VERITTA_TRUSTED_PROXIES, and then only as far
back as VERITTA_TRUSTED_PROXY_HOPS proxies, walking from the right (the entry
the nearest proxy appended) and stopping at the first address no trusted
proxy vouches for (nginx's `real_ip_recursive on`).

An entry that cannot be read ("unknown", an obfuscated name, garbage) stops
the walk at the proxy that sent it: the request then counts against that
proxy's address, which throttles more, never less.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

HEADERS = {"X-Forwarded-For": "HTTP_X_FORWARDED_FOR", "Forwarded": "HTTP_FORWARDED"}
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def trusted_networks(networks: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """Parsed once per distinct setting value (tests change it at run time)."""
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks if n.strip())


def _address(text: str) -> IPAddress | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # "[2001:db8::1]:4711" (Forwarded quotes IPv6 with brackets)
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # "192.0.2.60:4711"
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_for(value: str) -> list[str]:
    """The `for=` of each element of an RFC 7239 Forwarded header, in order."""
    found = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, token = pair.strip().partition("=")
            if name.lower() == "for":
                found.append(token)
                break
        else:
            found.append("")  # an element with no for=: unreadable
    return found


def forwarded_chain(request: HttpRequest) -> list[str]:
    """The forwarding header's entries, nearest proxy's last."""
    value = request.META.get(HEADERS[settings.VERITTA_TRUSTED_PROXY_HEADER], "")
    if not value:
        return []
    if settings.VERITTA_TRUSTED_PROXY_HEADER == "Forwarded":
        return _forwarded_for(value)
    return value.split(",")


def _trusted(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def client_address(request: HttpRequest) -> str | None:
    """The address of the client as far as trusted proxies vouch for it."""
    peer = request.META.get("REMOTE_ADDR") or None
    networks = trusted_networks(tuple(settings.VERITTA_TRUSTED_PROXIES))
    current = _address(peer) if peer else None
    if current is None or not networks:
        return peer
    entries = forwarded_chain(request)
    for _ in range(settings.VERITTA_TRUSTED_PROXY_HOPS):
        if not entries or not _trusted(current, networks):
            break
        previous = _address(entries.pop())
        if previous is None:
            break  # unreadable: the proxy that sent it is the client we know
        current = previous
    return str(current)
