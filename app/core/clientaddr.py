"""The client's address, for per-client limits, behind load balancers we trust and no one else.

`X-Forwarded-For` is believed only when the TCP peer is in `settings.trusted_proxies`
(CIDRs, env `TRUSTED_PROXIES`, e.g. `10.0.0.0/8,fd00::/8`): then the hops are read from
the right, skipping every trusted proxy, and the first address that is not one is the
client (a client can prepend anything it likes, but not what our own proxies append). With
no trusted proxies (the default) the header is ignored and the peer address is the client.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from litestar.connection import ASGIConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def trusted_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def resolve(peer: str, forwarded_for: list[str], trusted: tuple[str, ...]) -> str:
    """The client address from the TCP `peer` and the `X-Forwarded-For` header values
    (in arrival order)."""
    networks = trusted_networks(trusted)
    if not networks or not _is_trusted(peer, networks):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return client  # not an address: the last trusted hop is all we know
        client = hop
        if not _is_trusted(hop, networks):
            return hop
    return client


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """This request's client address (see the module doc); "unknown" without a peer."""
    peer = connection.client.host if connection.client else "unknown"
    trusted: tuple[str, ...] = connection.app.state.settings.trusted_proxies
    if not trusted:
        return peer
    values = [
        v.decode("latin-1") for k, v in connection.scope["headers"] if k == b"x-forwarded-for"
    ]
    return resolve(peer, values, trusted) if values else peer
