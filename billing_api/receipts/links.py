"""Signed receipt links for emails: ``{public_url}/receipts/{token}``, opened without a login.

The token is ``(kind, id)`` signed with ``BILLING_PORTAL_SECRET`` (itsdangerous): whoever has
the link may read that one receipt, as whoever has the email could; nobody can make a link to
another. Links do not expire (a receipt is kept for years); changing the secret voids them all.

Business events that announce money taken or given back carry the link (``receipt_url``). The
notices are built deep inside the services, which have no settings: the session factory carries
a :class:`ReceiptLinks` instead (:func:`install`, at the edge that builds the factory), and
:func:`stamp` adds the link to the events a payment or refund publishes. A session without one
(a script, a test of a service alone) publishes events without the link.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from uuid import UUID

from itsdangerous import BadData, URLSafeSerializer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api.config import BillingSettings
from shared.events import EventPayload

Kind = Literal["payment", "refund"]
_SALT = "receipt-link"
_INFO_KEY = "receipts.links"

E = TypeVar("E", bound=EventPayload)


def _serializer(settings: BillingSettings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.portal_secret.get_secret_value(), salt=_SALT)


def token_for(settings: BillingSettings, kind: Kind, money_id: UUID) -> str:
    return _serializer(settings).dumps([kind, str(money_id)])


def receipt_url(settings: BillingSettings, kind: Kind, money_id: UUID) -> str:
    """Where the receipt of a payment or refund opens, for whoever has the link."""
    return f"{settings.public_url.rstrip('/')}/receipts/{token_for(settings, kind, money_id)}"


def read_token(settings: BillingSettings, token: str) -> tuple[Kind, UUID] | None:
    """The (kind, id) a token was signed for; None for a bad or foreign token."""
    try:
        kind, money_id = _serializer(settings).loads(token)
        if kind not in ("payment", "refund"):
            return None
        return ("payment" if kind == "payment" else "refund"), UUID(str(money_id))
    except (BadData, ValueError, TypeError):
        return None


@dataclass(frozen=True)
class ReceiptLinks:
    settings: BillingSettings

    def url(self, kind: Kind, money_id: UUID) -> str:
        return receipt_url(self.settings, kind, money_id)


def install(factory: async_sessionmaker[AsyncSession], settings: BillingSettings) -> None:
    """Sessions of ``factory`` can sign receipt links for the events they publish."""
    info: dict[str, Any] = dict(factory.kw.get("info") or {})
    info[_INFO_KEY] = ReceiptLinks(settings)
    factory.configure(info=info)


def url_in(session: AsyncSession, kind: Kind, money_id: UUID) -> str | None:
    links = session.info.get(_INFO_KEY)
    return links.url(kind, money_id) if isinstance(links, ReceiptLinks) else None


def settings_in(session: AsyncSession) -> BillingSettings | None:
    """The settings the session's factory was installed with (None: a bare session)."""
    links = session.info.get(_INFO_KEY)
    return links.settings if isinstance(links, ReceiptLinks) else None


def stamp(session: AsyncSession, changes: Sequence[E], kind: Kind, money_id: UUID) -> list[E]:
    """``changes`` with the receipt's link set on those that have a ``receipt_url`` field."""
    url = url_in(session, kind, money_id)
    if url is None:
        return list(changes)
    return [
        change.model_copy(update={"receipt_url": url})
        if "receipt_url" in type(change).model_fields
        else change
        for change in changes
    ]
