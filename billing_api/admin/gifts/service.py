"""Finding gifts for staff and revoking one, audited in the same transaction."""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import locks
from billing_api.admin.audit import service as audit
from billing_api.admin.gifts.schemas import AdminGiftOut
from billing_api.gifts import codes, money, transitions
from billing_api.models import Gift
from shared import clock
from shared.errors import NotFound


class GiftNotFound(NotFound):
    default_detail = "no such gift"


def gift_out(gift: Gift) -> AdminGiftOut:
    return AdminGiftOut.model_validate(gift, from_attributes=True)


async def search(
    session: AsyncSession, *, search: str | None, limit: int, offset: int
) -> list[AdminGiftOut]:
    """Gifts newest first; ``search`` is a code (any case, dashes optional), an email part
    (buyer's or recipient's) or a gift, buyer or redeemer id."""
    query = sa.select(Gift)
    if search:
        text = search.strip()
        code = codes.normalise(text)
        conditions: list[sa.ColumnElement[bool]] = [
            Gift.recipient_email.ilike(f"%{text}%"),
            Gift.buyer_email.ilike(f"%{text}%"),
        ]
        if code is not None:
            conditions.append(Gift.code == code)
        try:
            as_id = UUID(text)
        except ValueError:
            pass
        else:
            conditions += [Gift.id == as_id, Gift.buyer_id == as_id, Gift.redeemed_by == as_id]
        query = query.where(sa.or_(*conditions))
    rows = await session.scalars(
        query.order_by(Gift.created_at.desc(), Gift.id.desc()).limit(limit).offset(offset)
    )
    return [gift_out(gift) for gift in rows]


async def get(session: AsyncSession, gift_id: UUID) -> AdminGiftOut:
    gift = await session.get(Gift, gift_id)
    if gift is None:
        raise GiftNotFound(f"gift {gift_id} not found")
    return gift_out(gift)


async def revoke(session: AsyncSession, actor: str, gift_id: UUID, reason: str) -> AdminGiftOut:
    """Void an unredeemed gift's code (no money moves: refund its payment separately if due);
    its deferred revenue is recognised. A redeemed gift is not revoked here: it is a
    subscription now (cancel or refund that)."""
    gift = await locks.lock_gift(session, gift_id)
    if gift is None:
        raise GiftNotFound(f"gift {gift_id} not found")
    before = audit.snapshot(gift)
    transitions.revoke(gift, now=clock.now())
    await money.recognise(session, gift, why="revoked by staff")
    await session.flush()
    await audit.record(
        session,
        actor,
        "gift.revoke",
        "gift",
        gift.id,
        before=before,
        after=audit.snapshot(gift),
        reason=reason,
    )
    return gift_out(gift)
