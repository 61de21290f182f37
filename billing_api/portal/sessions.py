"""Portal links and the session they start.

A link is single use and short lived: the token in it is ``secrets.token_urlsafe(32)``, of which
only the SHA-256 is stored. Opening the link consumes it in one statement (``UPDATE … WHERE
used_at IS NULL AND expires_at > now RETURNING``), so two browsers racing for one link get one
session between them. The session then lives in a cookie signed with ``BILLING_PORTAL_SECRET``
(itsdangerous), scoped to ``/portal``, ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` when
configured; its age is checked against the suite's clock, not only the browser's ``Max-Age``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from itsdangerous import BadData, URLSafeSerializer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api.config import BillingSettings
from billing_api.customers import Customer
from billing_api.models import Payment, PortalLink
from shared import clock
from shared.auth import Principal

COOKIE = "portal_session"
COOKIE_PATH = "/portal"
_SALT = "billing.portal.session"


@dataclass(frozen=True)
class NewLink:
    url: str
    expires_at: datetime


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_link(
    session: AsyncSession,
    settings: BillingSettings,
    *,
    user_id: UUID,
    email: str | None,
    locale: str | None,
    return_url: str | None,
) -> NewLink:
    """A new single-use link into the portal for ``user_id``."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    link = PortalLink(
        user_id=user_id,
        email=email,
        locale=locale,
        return_url=return_url,
        token_hash=hash_token(token),
        expires_at=now + timedelta(seconds=settings.portal_link_seconds),
        created_at=now,
    )
    session.add(link)
    await session.flush()
    return NewLink(f"{settings.public_url.rstrip('/')}/portal/enter/{token}", link.expires_at)


async def delete_spent_links(
    sessions: async_sessionmaker[AsyncSession], settings: BillingSettings, now: datetime
) -> int:
    """Delete the links no session can still come from (past their expiry by more than a
    session lasts), with the forms their sessions sent, in one transaction of its own."""
    horizon = now - timedelta(minutes=settings.portal_session_minutes)
    async with sessions() as session, session.begin():
        result = await session.execute(sa.delete(PortalLink).where(PortalLink.expires_at < horizon))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def known_email(session: AsyncSession, user_id: UUID) -> str | None:
    """The address billing last had for ``user_id`` (a link asked for by a service carries
    none): receipts of what is paid in the portal go there."""
    email: str | None = await session.scalar(
        sa.select(Payment.email)
        .where(Payment.user_id == user_id, Payment.email.is_not(None))
        .order_by(Payment.created_at.desc())
        .limit(1)
    )
    return email


@dataclass(frozen=True)
class SpentLink:
    """A link that exists but cannot open a session any more (used, or expired)."""

    used: bool
    return_url: str | None
    locale: str | None


async def open_link(session: AsyncSession, token: str) -> PortalLink | SpentLink | None:
    """Consume the link: the link when this call opened it, :class:`SpentLink` when it was used
    or has expired, ``None`` when no such link was ever made."""
    digest = hash_token(token)
    now = clock.now()
    opened = await session.scalar(
        sa.update(PortalLink)
        .where(
            PortalLink.token_hash == digest,
            PortalLink.used_at.is_(None),
            PortalLink.expires_at > now,
        )
        .values(used_at=now)
        .returning(PortalLink)
        .execution_options(synchronize_session=False)
    )
    if opened is not None:
        return opened
    link = await session.scalar(sa.select(PortalLink).where(PortalLink.token_hash == digest))
    if link is None:
        return None
    return SpentLink(used=link.used_at is not None, return_url=link.return_url, locale=link.locale)


@dataclass(frozen=True)
class PortalSession:
    """Who a portal request acts for: read from the signed cookie."""

    link_id: UUID
    user_id: UUID
    email: str | None
    locale: str | None
    issued_at: datetime

    def customer(self) -> Customer:
        """The same caller the API's services see for this user's own token."""
        principal = Principal(str(self.user_id), self.user_id, self.email, frozenset())
        return Customer(principal, self.user_id)


def _serializer(settings: BillingSettings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.portal_secret.get_secret_value(), salt=_SALT)


def session_cookie(settings: BillingSettings, link: PortalLink) -> dict[str, Any]:
    """The arguments of ``Response.set_cookie`` that start a session for an opened ``link``."""
    payload = {
        "l": str(link.id),
        "u": str(link.user_id),
        "e": link.email,
        "loc": link.locale,
        "iat": int(clock.now().timestamp()),
    }
    return {
        "key": COOKIE,
        "value": _serializer(settings).dumps(payload),
        "max_age": settings.portal_session_minutes * 60,
        "path": COOKIE_PATH,
        "httponly": True,
        "samesite": "lax",
        "secure": settings.portal_secure_cookie,
    }


def read_session(settings: BillingSettings, cookie: str | None) -> PortalSession | None:
    """The session in ``cookie`` if its signature holds and it has not outlived its minutes."""
    if not cookie:
        return None
    try:
        payload = _serializer(settings).loads(cookie)
        issued_at = datetime.fromtimestamp(int(payload["iat"]), tz=UTC)
        found = PortalSession(
            link_id=UUID(payload["l"]),
            user_id=UUID(payload["u"]),
            email=payload.get("e"),
            locale=payload.get("loc"),
            issued_at=issued_at,
        )
    except (BadData, KeyError, TypeError, ValueError):
        return None
    if clock.now() >= issued_at + timedelta(minutes=settings.portal_session_minutes):
        return None
    return found
