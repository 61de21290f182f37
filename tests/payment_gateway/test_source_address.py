"""Who sent a notification: the connection's address, or the client a trusted proxy names."""

from __future__ import annotations

import pytest

from payment_gateway.config import YOOKASSA_NOTIFICATION_NETWORKS, parse_networks
from payment_gateway.providers.source_address import client_address, is_allowed

YOOKASSA = parse_networks(YOOKASSA_NOTIFICATION_NETWORKS)
PROXIES = parse_networks("10.0.0.0/8, 127.0.0.1")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("185.71.76.5", None, "185.71.76.5"),  # no proxy: the connection's address
        ("203.0.113.9", "185.71.76.5", "203.0.113.9"),  # a stranger's header is ignored
        ("10.0.0.2", "185.71.76.5", "185.71.76.5"),
        ("10.0.0.2", "185.71.76.5, 10.1.1.1", "185.71.76.5"),  # our hops are skipped
        ("10.0.0.2", "185.71.76.5, 203.0.113.9", "203.0.113.9"),  # the nearest stranger counts
        ("10.0.0.2", "not-an-address", None),
        ("10.0.0.2", None, None),  # a trusted proxy that names nobody
        # A dual-stack listener sees IPv4 peers as IPv4-mapped IPv6 addresses.
        ("::ffff:10.0.0.2", "185.71.76.5", "185.71.76.5"),
        ("10.0.0.2", "::ffff:185.71.76.5", "185.71.76.5"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str | None) -> None:
    headers = {"x-forwarded-for": forwarded} if forwarded is not None else {}

    found = client_address(peer, headers, trusted_proxies=PROXIES)

    assert (str(found) if found is not None else None) == expected


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("185.71.76.31", True),
        ("185.71.76.32", False),  # just outside 185.71.76.0/27
        ("77.75.156.11", True),
        ("77.75.156.12", False),
        ("2a02:5180::1", True),
        ("2001:db8::1", False),
        ("::ffff:185.71.76.5", True),  # YooKassa's IPv4 address seen by a dual-stack listener
        ("::ffff:203.0.113.9", False),
    ],
)
def test_yookassas_published_addresses(address: str, allowed: bool) -> None:
    found = client_address(address, {}, trusted_proxies=())

    assert is_allowed(found, YOOKASSA) is allowed
