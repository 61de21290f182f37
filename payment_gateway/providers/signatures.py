"""Stripe's webhook signature scheme, for providers that use it with their own secret.

Header ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``; several ``v1`` values
may be present (secret rotation). A signature older than the tolerance is refused, so a captured
webhook cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac


class BadSignature(Exception):
    pass


def sign(body: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(body: bytes, header: str | None, secret: str, *, now: int, tolerance: int = 300) -> None:
    if not header:
        raise BadSignature("missing signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise BadSignature("malformed signature header")
    if abs(now - timestamp) > tolerance:
        raise BadSignature("signature timestamp outside the tolerance")
    expected = sign(body, secret, timestamp).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise BadSignature("signature does not match")
