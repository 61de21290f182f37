"""Snapshots of what a user may watch, sent to access_api as ``entitlements.changed``.

A snapshot lists every grant that is still valid, with ``valid_until`` already including grace,
so access ends on time even when a later event is late. Versions grow per user; access_api keeps
only the newest it has seen, so snapshots may arrive in any order or twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.models import (
    ComplimentaryGrant,
    EntitlementVersion,
    Plan,
    Purchase,
    Subscription,
)
from shared import clock, events, outbox

LIVE_SUBSCRIPTION = ("active", "grace")


def subscription_valid_until(subscription: Subscription, plan: Plan) -> datetime | None:
    """End of access: period end, plus grace unless the user chose to stop."""
    end = subscription.current_period_end
    if end is None:
        return None
    if subscription.cancel_at_period_end or not subscription.auto_renew:
        return end
    return end + timedelta(days=plan.grace_days)


async def publish_snapshot(session: AsyncSession, user_id: UUID) -> events.EntitlementsChanged:
    await session.flush()  # the snapshot must see the changes made in this transaction
    now = clock.now()
    grants: list[events.Grant] = []
    rows = await session.execute(
        sa.select(Subscription, Plan)
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.user_id == user_id, Subscription.status.in_(LIVE_SUBSCRIPTION))
    )
    for subscription, plan in rows:
        valid_until = subscription_valid_until(subscription, plan)
        if valid_until is not None and valid_until > now:
            grants.append(
                events.Grant(
                    source="subscription",
                    source_id=subscription.id,
                    plan_id=plan.id,
                    role=plan.role,
                    valid_until=valid_until,
                )
            )
    purchases = await session.scalars(
        sa.select(Purchase).where(
            Purchase.user_id == user_id,
            Purchase.status == "completed",
            sa.or_(Purchase.valid_until.is_(None), Purchase.valid_until > now),
        )
    )
    for purchase in purchases:
        grants.append(
            events.Grant(
                source="purchase",
                source_id=purchase.id,
                movie_id=purchase.movie_id,
                valid_until=purchase.valid_until,
            )
        )
    gifts = await session.execute(
        sa.select(ComplimentaryGrant, Plan)
        .join(Plan, Plan.id == ComplimentaryGrant.plan_id)
        .where(
            ComplimentaryGrant.user_id == user_id,
            ComplimentaryGrant.revoked_at.is_(None),
            ComplimentaryGrant.valid_until > now,
        )
    )
    for gift, plan in gifts:
        grants.append(
            events.Grant(
                source="complimentary",
                source_id=gift.id,
                plan_id=plan.id,
                role=plan.role,
                valid_until=gift.valid_until,
            )
        )
    version = await session.scalar(
        insert(EntitlementVersion)
        .values(user_id=user_id, version=1)
        .on_conflict_do_update(
            index_elements=[EntitlementVersion.user_id],
            set_={"version": EntitlementVersion.version + 1},
        )
        .returning(EntitlementVersion.version)
    )
    snapshot = events.EntitlementsChanged(
        user_id=user_id, version=int(version or 1), grants=tuple(grants)
    )
    await outbox.add(session, snapshot)
    return snapshot
