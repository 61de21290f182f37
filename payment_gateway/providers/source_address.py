"""Who sent a request: the connection's address, or the client a trusted proxy names.

For a provider that does not sign its notifications (YooKassa), the sender's address is the
only proof of where a notification came from. Behind a reverse proxy the connection comes from
the proxy, which names the client in a header (``X-Forwarded-For: client, proxy1, proxy2``,
each hop appending the address it was reached from). Only the hops we run can be believed, so
the header is read from the right, skipping our trusted proxies; the first address that is not
one of them is the client. A header sent by anyone else (the connection is not from a trusted
proxy) is ignored: a sender could otherwise name any address it likes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from payment_gateway.config import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # A dual-stack listener sees an IPv4 peer as ::ffff:a.b.c.d; the lists name it as IPv4.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address


def _within(address: Address, networks: Iterable[Network]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(
    peer: str | None,
    headers: Mapping[str, str],
    *,
    trusted_proxies: Iterable[Network],
    header: str = "X-Forwarded-For",
) -> Address | None:
    """The sender's address; None when it cannot be told (no peer, an unreadable header)."""
    address = _address(peer)
    proxies = tuple(trusted_proxies)
    if address is None or not proxies or not _within(address, proxies):
        return address
    wanted = header.lower()
    values = [value for name, value in headers.items() if name.lower() == wanted]
    hops = [hop.strip() for value in values for hop in value.split(",")]
    for hop in reversed(hops):
        hop_address = _address(hop)
        if hop_address is None:
            return None  # garbled by someone: nothing beyond this hop can be believed
        if not _within(hop_address, proxies):
            return hop_address
    return None  # only our proxies: the client is unknown


def is_allowed(address: Address | None, allowed: Iterable[Network]) -> bool:
    return address is not None and _within(address, allowed)
