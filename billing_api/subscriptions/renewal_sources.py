"""How a subscription's renewals are paid, as the subscriber chooses.

``card`` (the default): the saved card is charged off-session. ``wallet_then_card``: the renewal
is paid from the wallet when its balance covers the whole amount at the renewal, else the card is
charged as usual; without a card and without enough in the wallet the renewal fails and the
dunning retries go on (the notice asks for a top-up). See
:mod:`billing_api.lifecycle.wallet_renewals`.

The choice can be changed while the subscription can still renew (active, in grace, or paused);
it applies from the next renewal or dunning retry. It is not a change of state, so it is made
here rather than in :mod:`billing_api.subscriptions.transitions`.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.models import RenewalSource, Subscription, SubscriptionStatus
from billing_api.subscriptions import service
from billing_api.subscriptions.schemas import RenewalSourceName
from shared.errors import Conflict

# A subscription whose renewals are still ahead of it.
RENEWING = (SubscriptionStatus.ACTIVE, SubscriptionStatus.GRACE, SubscriptionStatus.PAUSED)


class SubscriptionNotRenewable(Conflict):
    default_detail = "the subscription has ended or has not started: it renews no more"


async def set_renewal_source(
    session: AsyncSession, user_id: UUID, subscription_id: UUID, source: RenewalSourceName
) -> Subscription:
    """Choose how the owner's subscription renews; 404 for someone else's, 409 once it ended."""
    subscription = await service.owned_subscription(session, user_id, subscription_id)
    if subscription.status not in RENEWING:
        raise SubscriptionNotRenewable(
            f"subscription {subscription_id} is {subscription.status}: it renews no more"
        )
    subscription.renewal_source = RenewalSource(source)
    await session.flush()
    return subscription
