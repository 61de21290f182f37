"""Renewal charges: claim what is due, charge it at the gateway, settle what the gateway said.

A renewal is charged in three steps so that no crash and no second worker can charge twice:

1. **Claim** (one transaction per batch): due subscriptions are locked with ``FOR UPDATE SKIP
   LOCKED``, each gets its renewal payment (a pending one left by an earlier run is reused, so
   its id, the gateway's idempotency key, stays the same) and a lease (``next_renewal_at``) so
   other runs skip it while it is charged. The payments are committed before any charge.
2. **Charge**: the gateway is asked to charge each payment, ``CHARGE_CONCURRENCY`` at a time.
   No database connection is held meanwhile: what the gateway needs was read at the claim.
3. **Settle**: the answers are applied exactly as the gateway's ``payment.succeeded`` /
   ``payment.failed`` events would be (both paths are idempotent on the payment's status).

Design decisions, for throughput (``make bench-renewals``) without giving up any of the above:

* A batch costs a handful of statements to claim (one query for the due rows, one for pending
  payments, one multi-row insert, one lease update) instead of several per subscription.
* Answers are settled ``SETTLE_GROUP`` to a transaction: the group's subscriptions and then its
  payments are locked, each in one statement in id order (billing's lock order, as the event
  consumer does; should anything still deadlock, PostgreSQL's abort sends the losing group
  down the one-at-a-time path); if a group fails, each of its payments is settled on
  its own, and every later group is settled all the same, so one bad payment holds back no other.
  The failures are raised together once the whole run is done. A payment left unsettled by a
  crash stays pending: the next run after the lease charges it again with the same id (the
  gateway answers with the first charge) and settles it, and so would the gateway's event or
  reconciliation.
* While one batch is settled the next one is claimed and charged: the gateway is never idle
  waiting for our commits. At most one settlement is in flight, so memory and connections stay
  bounded (a run holds at most two pooled connections).

What a renewal costs, decided at the claim:

* **Priced like a purchase today.** A renewal is quoted by :func:`billing_api.pricing.service.quote`
  exactly as buying the plan for the subscription's number of periods (one, unless more were
  bought) would be quoted now: today's price, the plan's months tiers and the user's personal
  discount (capped together as at checkout). Promo codes were for the first payment only. The
  payment stores the quote and shows the discount in ``discount_amount``. A batch loads its
  plans, tiers and personal discounts in one query each, then quotes in memory.
* **Nothing to pay, nothing to charge.** A renewal that costs nothing (a downgrade to a free
  plan, a 100 % discount) is a ``free`` payment, like a free order at checkout: the gateway is
  not asked (it refuses zero charges) and the renewal is settled by this run as if the charge
  had succeeded. A subscription renewing onto a free plan needs no saved card.
* **Never charge for a plan that grants nothing.** A scheduled downgrade to a plan archived since
  goes ahead (the user chose it), and an archived plan keeps granting while anyone is on it or
  will switch to it (:func:`billing_api.catalog.service.plan_grants_access`). If the last
  ``plan.changed`` of the plan being renewed said ``active: false`` (``published_active``), the
  claim publishes it again, now granting, before the payment is committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import entitlements
from billing_api.catalog import service as catalog
from billing_api.gateway import GatewayPayment, GatewayRefused, GatewayUnavailable
from billing_api.lifecycle.service import BATCH, LEASE, JobContext, apply_gateway_result
from billing_api.models import Payment, Plan, Subscription, SubscriptionStatus
from billing_api.pricing import service as pricing
from billing_api.pricing.inputs import load_personal_discounts, load_tiers_of

logger = logging.getLogger(__name__)

# Charges in flight at once per run: each only waits on the gateway (no connection held).
CHARGE_CONCURRENCY = 8
# Gateway answers applied per transaction.
SETTLE_GROUP = 50


@dataclass(frozen=True)
class RenewalCharge:
    """One committed renewal payment, as the gateway is asked to charge it."""

    payment_id: UUID
    subscription_id: UUID
    user_id: UUID
    email: str | None
    amount: int
    currency: str
    description: str
    payment_method_ref: str | None
    free: bool = False  # nothing to pay: settled here, the gateway is not asked


async def renew_due(ctx: JobContext) -> int:
    """Charge every subscription whose renewal (or next dunning retry) is due, batch by batch;
    returns how many charges succeeded (counted by the charge, not by who applied it: the
    gateway's event may have got there first)."""
    succeeded = 0
    settlements: list[asyncio.Task[list[Exception]]] = []
    async with asyncio.TaskGroup() as group:
        while batch := await claim_renewals(ctx):
            results = await charge_all(ctx, batch)
            succeeded += sum(result.status == "succeeded" for result in results)
            if settlements:
                await settlements[-1]  # one settlement in flight at a time
            settlements.append(group.create_task(settle(ctx, results)))
    failures = [failure for task in settlements for failure in task.result()]
    if failures:
        raise ExceptionGroup("renewals charged but not settled by this run", failures)
    return succeeded


# --- 1. claim -----------------------------------------------------------------------------------


def _due(ctx: JobContext) -> sa.ColumnElement[bool]:
    lead = timedelta(minutes=ctx.settings.renewal_lead_minutes)
    # A renewal onto a free plan needs no card (a free plan may have been checked out without).
    onto_free_plan = (
        sa.select(Plan.id)
        .where(
            Plan.id == sa.func.coalesce(Subscription.pending_plan_id, Subscription.plan_id),
            Plan.price_amount == 0,
        )
        .exists()
    )
    return sa.and_(
        Subscription.status.in_((SubscriptionStatus.ACTIVE, SubscriptionStatus.GRACE)),
        Subscription.auto_renew,
        ~Subscription.cancel_at_period_end,
        sa.or_(Subscription.payment_method_ref.is_not(None), onto_free_plan),
        sa.or_(
            sa.and_(
                Subscription.renewal_attempts == 0,
                Subscription.current_period_end <= ctx.now + lead,
                sa.or_(
                    Subscription.next_renewal_at.is_(None),
                    Subscription.next_renewal_at <= ctx.now,
                ),
            ),
            sa.and_(
                Subscription.renewal_attempts > 0,
                Subscription.next_renewal_at <= ctx.now,
            ),
        ),
    )


async def claim_renewals(ctx: JobContext) -> list[RenewalCharge]:
    """Claim a batch of due subscriptions and commit their renewal payments (not yet charged)."""
    async with ctx.sessions() as session, session.begin():
        due = (
            await session.execute(
                sa.select(
                    Subscription.id,
                    Subscription.user_id,
                    Subscription.email,
                    Subscription.plan_id,
                    Subscription.pending_plan_id,
                    Subscription.months,
                    Subscription.payment_method_ref,
                )
                .where(_due(ctx))
                .order_by(Subscription.current_period_end)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if not due:
            return []
        ids = [row.id for row in due]
        pending = await _pending_renewals(session, ids)
        # A scheduled downgrade takes effect here: the renewal buys the new plan.
        to_price = [row for row in due if row.id not in pending]
        prices = await _Prices.load(session, ctx, to_price)
        charges: list[RenewalCharge] = []
        new_payments: list[dict[str, Any]] = []
        for row in due:
            charge = pending.get(row.id)
            if charge is None:
                plan, quote = prices.renewal(row)
                if quote.total > 0 and row.payment_method_ref is None:
                    continue  # the plan is no longer free and there is no card: grace, expiry
                payment = _new_payment(row, plan, quote)
                new_payments.append(payment)
                charge = _charge_of(payment)
            charges.append(charge)
        await _keep_granting(session, prices.plans_charged(new_payments))
        if new_payments:
            await session.execute(sa.insert(Payment), new_payments)
        await session.execute(
            sa.update(Subscription)
            .where(Subscription.id.in_(ids))
            .values(next_renewal_at=ctx.now + LEASE)  # others skip them while we charge
            .execution_options(synchronize_session=False)
        )
    return charges


async def _pending_renewals(
    session: AsyncSession, ids: Sequence[UUID]
) -> dict[UUID, RenewalCharge]:
    """Renewal payments an earlier run committed but never settled, by subscription."""
    rows = await session.execute(
        sa.select(
            Payment.id,
            Payment.subscription_id,
            Payment.user_id,
            Payment.email,
            Payment.amount,
            Payment.currency,
            Payment.description,
            Payment.payment_method_ref,
            Payment.method,
        )
        .where(
            Payment.subscription_id.in_(ids),
            Payment.purpose == "renewal",
            Payment.status == "pending",
        )
        .order_by(Payment.created_at)
    )
    found: dict[UUID, RenewalCharge] = {}
    for row in rows:
        assert row.subscription_id is not None
        found.setdefault(
            row.subscription_id,
            RenewalCharge(
                payment_id=row.id,
                subscription_id=row.subscription_id,
                user_id=row.user_id,
                email=row.email,
                amount=row.amount,
                currency=row.currency,
                description=row.description,
                payment_method_ref=row.payment_method_ref,
                free=row.method == "free" or row.amount == 0,
            ),
        )
    # Zero renewals committed as card payments before free renewals were settled here (the
    # gateway refuses them): from now on they are free payments too.
    zero_cards = [c.payment_id for c in found.values() if c.free and c.amount == 0]
    if zero_cards:
        await session.execute(
            sa.update(Payment)
            .where(Payment.id.in_(zero_cards), Payment.method == "card")
            .values(method="free")
            .execution_options(synchronize_session=False)
        )
    return found


class _Prices:
    """Today's renewal prices for one batch: its plans, their months tiers and the users'
    personal discounts are each loaded in one query, then every renewal is quoted in memory."""

    def __init__(
        self,
        ctx: JobContext,
        plans: dict[UUID, Plan],
        tiers: dict[UUID, list[pricing.Tier]],
        personal: dict[UUID, int],
    ) -> None:
        self.ctx = ctx
        self.plans = plans
        self.tiers = tiers
        self.personal = personal

    @classmethod
    async def load(cls, session: AsyncSession, ctx: JobContext, rows: Sequence[Any]) -> _Prices:
        plan_ids = {row.pending_plan_id or row.plan_id for row in rows}
        if not plan_ids:
            return cls(ctx, {}, {}, {})
        plans = {
            p.id: p for p in await session.scalars(sa.select(Plan).where(Plan.id.in_(plan_ids)))
        }
        tiers = await load_tiers_of(session, plan_ids)
        personal = await load_personal_discounts(session, {row.user_id for row in rows})
        return cls(ctx, plans, tiers, personal)

    def renewal(self, row: Any) -> tuple[Plan, pricing.Quote]:
        """The plan this renewal buys and its quote: a purchase of ``row.months`` periods
        today, with the plan's tiers and the user's personal discount (no promo code)."""
        plan = self.plans[row.pending_plan_id or row.plan_id]
        quote = pricing.quote(
            pricing.PlanPrice(
                plan.id, plan.price_amount, plan.currency, max(plan.max_months, row.months)
            ),
            row.months,
            now=self.ctx.now,
            tiers=self.tiers[plan.id],
            personal_percent=self.personal.get(row.user_id),
            max_total_percent=self.ctx.settings.max_total_discount_percent,
        )
        return plan, quote

    def plans_charged(self, payments: Sequence[dict[str, Any]]) -> list[Plan]:
        return [self.plans[plan_id] for plan_id in {p["plan_id"] for p in payments}]


async def _keep_granting(session: AsyncSession, plans: Sequence[Plan]) -> None:
    """Make sure every plan about to be charged for grants access: one whose last
    ``plan.changed`` said ``active: false`` (archived while nobody seemed to be on it) is
    published again, now granting, since this renewal puts someone on it. Rare: most batches
    only read ``published_active`` of plans already loaded."""
    for plan in sorted((p for p in plans if not p.published_active), key=lambda p: p.id):
        await session.refresh(plan, with_for_update=True)
        if plan.published_active:
            continue  # published meanwhile
        plan.version += 1
        await catalog.publish_plan(
            session, plan, [] if plan.all_movies else await catalog.plan_movie_ids(session, plan.id)
        )
        logger.warning(
            "plan %s was published as granting nothing; republished for renewals", plan.code
        )


def _new_payment(row: Any, plan: Plan, quote: pricing.Quote) -> dict[str, Any]:
    return {
        "id": uuid4(),
        "user_id": row.user_id,
        "email": row.email,
        "purpose": "renewal",
        "subscription_id": row.id,
        "plan_id": plan.id,
        "method": "card" if quote.total > 0 else "free",
        "status": "pending",
        "amount": quote.total,
        "currency": quote.currency,
        "base_amount": quote.base_amount,
        "discount_amount": quote.discount_amount,
        "quote": quote.to_json(),
        "months": row.months,
        "description": f"{plan.name}: renewal",
        "payment_method_ref": row.payment_method_ref,
        "refunded_amount": 0,
    }


def _charge_of(payment: dict[str, Any]) -> RenewalCharge:
    return RenewalCharge(
        payment_id=payment["id"],
        subscription_id=payment["subscription_id"],
        user_id=payment["user_id"],
        email=payment["email"],
        amount=payment["amount"],
        currency=payment["currency"],
        description=payment["description"],
        payment_method_ref=payment["payment_method_ref"],
        free=payment["method"] == "free",
    )


# --- 2. charge ----------------------------------------------------------------------------------


async def charge_all(ctx: JobContext, batch: Sequence[RenewalCharge]) -> list[GatewayPayment]:
    """The gateway's answer for each charge it could be asked about (others wait for the next
    run, after the lease)."""
    limit = asyncio.Semaphore(CHARGE_CONCURRENCY)

    async def charge(renewal: RenewalCharge) -> GatewayPayment | None:
        async with limit:
            return await _charge(ctx, renewal)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(charge(renewal)) for renewal in batch]
    return [outcome for task in tasks if (outcome := task.result()) is not None]


async def _charge(ctx: JobContext, renewal: RenewalCharge) -> GatewayPayment | None:
    if renewal.free:
        return _settled_here(renewal)
    assert renewal.payment_method_ref is not None
    try:
        result = await ctx.gateway.charge_off_session(
            payment_id=renewal.payment_id,
            user_id=renewal.user_id,
            email=renewal.email,
            amount=renewal.amount,
            currency=renewal.currency,
            description=renewal.description,
            payment_method_ref=renewal.payment_method_ref,
            metadata={"purpose": "renewal", "subscription_id": str(renewal.subscription_id)},
        )
    except GatewayRefused as exc:  # billing and the gateway disagree: a bug, not an outage
        logger.error("renewal charge refused by the gateway; retried on the next run: %s", exc)
        return None
    except GatewayUnavailable as exc:
        logger.warning("renewal charge not made; retried on the next run: %s", exc)
        return None
    return result


def _settled_here(renewal: RenewalCharge) -> GatewayPayment:
    """A free renewal's outcome without the gateway: succeeded, as a free order is at checkout.
    It is settled like any charge's answer (no provider: a free payment moves no money)."""
    return GatewayPayment(
        payment_id=renewal.payment_id,
        status="succeeded",
        provider="",
        checkout_url=None,
        expires_at=None,
        payment_method_ref=None,
        failure_code=None,
        failure_message=None,
    )


# --- 3. settle ----------------------------------------------------------------------------------


async def settle(ctx: JobContext, results: Sequence[GatewayPayment]) -> list[Exception]:
    """Apply the gateway's answers, ``SETTLE_GROUP`` per transaction; returns what failed (each
    such payment stays pending for the gateway's event, or the next run after the lease)."""
    failures: list[Exception] = []
    ordered = sorted(results, key=lambda result: result.payment_id)
    for start in range(0, len(ordered), SETTLE_GROUP):
        group = ordered[start : start + SETTLE_GROUP]
        try:
            await _settle_group(ctx, group)
        except Exception as failure:
            if len(group) == 1:
                failures.append(failure)
                continue
            logger.exception("settling %d renewals together failed; one at a time", len(group))
            for result in group:
                try:
                    await _settle_group(ctx, [result])
                except Exception as single:
                    failures.append(single)
    return failures


async def _settle_group(ctx: JobContext, group: Sequence[GatewayPayment]) -> None:
    async with ctx.sessions() as session, session.begin():
        # billing's lock order: the subscriptions (in id order), then their payments (in id
        # order), as an upgrade paid meanwhile takes them when it voids a pending renewal.
        ids = [result.payment_id for result in group]
        await session.execute(
            sa.select(Subscription.id)
            .where(
                Subscription.id.in_(sa.select(Payment.subscription_id).where(Payment.id.in_(ids)))
            )
            .order_by(Subscription.id)
            .with_for_update()
        )
        payments = {
            payment.id: payment
            for payment in await session.scalars(
                sa.select(Payment)
                .where(Payment.id.in_([result.payment_id for result in group]))
                .order_by(Payment.id)
                .with_for_update()
            )
        }
        # The session holds unchanged objects weakly: kept referenced here, the plans are
        # loaded once for the group instead of once per payment by each settlement.
        plans = await _plans_of(session, payments.values())
        # Each user's entitlement lock is taken last, all of them in user-id order.
        async with entitlements.deferred_snapshots(session):
            for result in group:
                await apply_gateway_result(
                    session,
                    payments[result.payment_id],
                    result,
                    dunning=ctx.settings.dunning_offsets,
                )
        del plans


async def _plans_of(session: AsyncSession, payments: Collection[Payment]) -> list[Plan]:
    """The plans the payments buy and the plans their subscriptions are on now."""
    plan_ids = {payment.plan_id for payment in payments if payment.plan_id is not None}
    subscription_ids = [p.subscription_id for p in payments if p.subscription_id is not None]
    current = sa.select(Subscription.plan_id).where(Subscription.id.in_(subscription_ids))
    return list(
        await session.scalars(
            sa.select(Plan).where(sa.or_(Plan.id.in_(plan_ids), Plan.id.in_(current)))
        )
    )
