"""The redeem rate limit: wrong gift codes counted per user in a fixed window.

One row per user (``gift_code_failure``): when its window started and how many wrong codes it
holds. Past ``BILLING_GIFT_MAX_WRONG_CODES`` in ``BILLING_GIFT_WRONG_CODE_WINDOW_MINUTES`` every
redeem of that user answers 429 (``Retry-After``: the seconds until the window ends), right or
wrong code alike, so guessing codes costs an attacker the window. This module is the only seam:
a shared limiter may later take its place behind the same two functions.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.config import BillingSettings
from billing_api.models import GiftCodeFailure
from shared.errors import AppError


class TooManyWrongGiftCodes(AppError):
    status_code = 429
    default_detail = "too many wrong gift codes; try again later"


def _window(settings: BillingSettings) -> timedelta:
    return timedelta(minutes=settings.gift_wrong_code_window_minutes)


async def check_wrong_codes(
    session: AsyncSession, user_id: UUID, *, now: datetime, settings: BillingSettings
) -> None:
    """Raise 429 if the user has used up the window's wrong codes. The user's counter row is
    locked for the rest of the transaction, so one user's redeems run one at a time: a burst of
    guesses sent at once cannot all pass this check before the first is counted."""
    await session.execute(
        insert(GiftCodeFailure)
        .values(user_id=user_id, window_started_at=now, failures=0)
        .on_conflict_do_nothing(index_elements=[GiftCodeFailure.user_id])
    )
    row = await session.scalar(
        sa.select(GiftCodeFailure)
        .where(GiftCodeFailure.user_id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None
    if row.failures < settings.gift_max_wrong_codes:
        return
    lifts_at = row.window_started_at + _window(settings)
    if lifts_at <= now:
        return
    seconds = max(1, math.ceil((lifts_at - now).total_seconds()))
    raise TooManyWrongGiftCodes(extra={"retry_after": seconds})


async def count_wrong_code(
    session: AsyncSession, user_id: UUID, *, now: datetime, settings: BillingSettings
) -> None:
    """Count one wrong code (a new window starts when the last one is over)."""
    fresh = GiftCodeFailure.window_started_at <= now - _window(settings)
    await session.execute(
        insert(GiftCodeFailure)
        .values(user_id=user_id, window_started_at=now, failures=1)
        .on_conflict_do_update(
            index_elements=[GiftCodeFailure.user_id],
            set_={
                "failures": sa.case((fresh, 1), else_=GiftCodeFailure.failures + 1),
                "window_started_at": sa.case((fresh, now), else_=GiftCodeFailure.window_started_at),
            },
        )
    )
