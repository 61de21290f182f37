"""Back-office view of one customer and what staff may do for them: refund a payment outside its
window, give complimentary access to a plan."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import entitlements, locks
from billing_api.admin.audit import service as audit
from billing_api.admin.customers.schemas import (
    AdminRefundIn,
    ComplimentaryIn,
    ComplimentaryOut,
    CustomerOut,
)
from billing_api.catalog import service as catalog
from billing_api.gateway import GatewayClient
from billing_api.models import ComplimentaryGrant, Payment, Subscription
from billing_api.payments import service as payments
from billing_api.payments.schemas import PaymentOut
from billing_api.refunds import quotes as refund_quotes
from billing_api.refunds import service as refunds
from billing_api.refunds.schemas import RefundOut
from shared import clock
from shared.errors import Conflict, Forbidden, NotFound


class PlanArchived(Conflict):
    default_detail = "the plan is archived: it can no longer be given to anyone"


class RefundAboveLimit(Forbidden):
    default_detail = "this refund is larger than your role may make"


class GrantNotFound(NotFound):
    default_detail = "no such complimentary grant"


class GrantNotLive(Conflict):
    default_detail = "the grant has ended or was revoked already"


def customers_query() -> sa.Subquery:
    """Everyone billing knows: the distinct users of subscriptions and payments."""
    seen = sa.union_all(
        sa.select(
            Subscription.user_id.label("user_id"),
            Subscription.email.label("email"),
            sa.literal(1).label("subscription"),
            sa.literal(0).label("payment"),
            Subscription.created_at.label("at"),
        ),
        sa.select(
            Payment.user_id,
            Payment.email,
            sa.literal(0),
            sa.literal(1),
            Payment.created_at,
        ),
    ).subquery("seen")
    return (
        sa.select(
            seen.c.user_id,
            sa.func.max(seen.c.email).label("email"),
            sa.func.sum(seen.c.subscription).label("subscriptions"),
            sa.func.sum(seen.c.payment).label("payments"),
            sa.func.max(seen.c.at).label("last_seen_at"),
        )
        .group_by(seen.c.user_id)
        .subquery("customer")
    )


async def list_customers(
    session: AsyncSession, *, search: str | None, limit: int, offset: int
) -> list[CustomerOut]:
    customers = customers_query()
    query = sa.select(customers).order_by(customers.c.last_seen_at.desc(), customers.c.user_id)
    if search:
        term = f"%{search}%"
        query = query.where(
            sa.or_(
                customers.c.email.ilike(term), sa.cast(customers.c.user_id, sa.String).ilike(term)
            )
        )
    rows = (await session.execute(query.limit(limit).offset(offset))).all()
    return [CustomerOut.model_validate(row, from_attributes=True) for row in rows]


# --- payments and refunds --------------------------------------------------------------------


async def _payment(session: AsyncSession, payment_id: UUID) -> Payment:
    payment = await session.get(Payment, payment_id)
    if payment is None:
        raise payments.PaymentNotFound(f"payment {payment_id} not found")
    return payment


async def get_payment(session: AsyncSession, payment_id: UUID) -> PaymentOut:
    """Any user's payment."""
    return payments.payment_out(await _payment(session, payment_id))


async def refund(
    session: AsyncSession,
    gateway: GatewayClient,
    actor: str,
    payment_id: UUID,
    body: AdminRefundIn,
    *,
    limit: int | None = None,
    limit_currency: str | None = None,
) -> RefundOut:
    """Refund a payment with the refund window overridden: up to everything not refunded yet.

    The rest of the flow is the user's refund: money back where it came from, what the payment
    paid for canceled and access revoked once the money is back. ``limit`` caps the amount
    (minor units) the staff member's role may refund; ``None`` caps nothing. The cap is on all
    the payment's refunds together, read under the payment's lock: refunds posted one after
    another or side by side never add up past it. The cap is in ``limit_currency`` (billing's
    default currency): a payment in any other currency is above it whatever its amount.
    """
    payment = await locks.lock_payment(session, payment_id)
    if payment is None:
        raise payments.PaymentNotFound(f"payment {payment_id} not found")
    quote = await refund_quotes.quote_payment(
        session, payment, now=clock.now(), override_window=True
    )
    amount = quote.amount if body.amount is None else body.amount
    if limit is not None and (
        payment.currency != limit_currency or payment.refunded_amount + amount > limit
    ):
        raise RefundAboveLimit(
            f"a refund of {amount} minor units of {payment.currency} (after"
            f" {payment.refunded_amount} refunded already) is above your role's limit of"
            f" {limit} {limit_currency}; ask someone with the finance role"
        )
    before = audit.snapshot(payment)
    made = await refunds.refund_payment(
        session,
        gateway,
        payment,
        amount=amount,
        rule=quote.rule,
        reason=body.reason,
        override_window=True,
    )
    after = audit.snapshot(made)
    await audit.record(
        session,
        actor,
        "refund.override_window",
        "payment",
        payment_id,
        before=before,
        after=after,
        reason=body.reason,
    )
    return refunds.refund_out(made)


# --- complimentary access --------------------------------------------------------------------


def grant_out(grant: ComplimentaryGrant) -> ComplimentaryOut:
    return ComplimentaryOut.model_validate(grant, from_attributes=True)


async def list_grants(session: AsyncSession, user_id: UUID) -> list[ComplimentaryOut]:
    rows = await session.scalars(
        sa.select(ComplimentaryGrant)
        .where(ComplimentaryGrant.user_id == user_id)
        .order_by(ComplimentaryGrant.created_at.desc())
    )
    return [grant_out(row) for row in rows]


async def grant(
    session: AsyncSession, actor: str, user_id: UUID, body: ComplimentaryIn
) -> ComplimentaryOut:
    """Give a user the plan's access for ``days`` at no charge (``complimentary`` grant)."""
    plan = await catalog.load_plan(session, body.plan_id, active_only=False)
    if not plan.active:
        raise PlanArchived(f"plan {plan.code} is archived")
    row = ComplimentaryGrant(
        user_id=user_id,
        plan_id=plan.id,
        valid_until=clock.now() + timedelta(days=body.days),
        reason=body.reason,
        granted_by=actor,
    )
    session.add(row)
    await session.flush()
    await entitlements.publish_snapshot(session, user_id)
    await audit.record(
        session,
        actor,
        "complimentary.grant",
        "complimentary_grant",
        row.id,
        after=audit.snapshot(row),
        reason=body.reason,
    )
    return grant_out(row)


async def revoke(
    session: AsyncSession, actor: str, grant_id: UUID, reason: str
) -> ComplimentaryOut:
    """End a complimentary grant now; access to the plan ends with it."""
    row = await session.get(ComplimentaryGrant, grant_id, with_for_update=True)
    if row is None:
        raise GrantNotFound(f"complimentary grant {grant_id} not found")
    now = clock.now()
    if row.revoked_at is not None or row.valid_until <= now:
        raise GrantNotLive(f"complimentary grant {grant_id} is not live")
    before = audit.snapshot(row)
    row.revoked_at = now
    await session.flush()
    await entitlements.publish_snapshot(session, row.user_id)
    await audit.record(
        session,
        actor,
        "complimentary.revoke",
        "complimentary_grant",
        row.id,
        before=before,
        after=audit.snapshot(row),
        reason=reason,
    )
    return grant_out(row)
