"""Subscriptions of the calling user."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response, status

from billing_api.deps import (
    CheckoutsDep,
    CustomerDep,
    GatewayDep,
    RenewalsNowDep,
    SessionDep,
    SettingsDep,
)
from billing_api.subscriptions import pauses, payment_method, plan_change, renewal_sources, service
from billing_api.subscriptions.schemas import (
    CancelIn,
    ChangePlanIn,
    PauseIn,
    PaymentMethodIn,
    PaymentMethodUpdateOut,
    PlanChangeOut,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
)
from shared.pagination import Cursor, Limit, Page
from shared.ratelimit import per_user_and_ip

router = APIRouter(prefix="/api/v1/subscriptions", tags=["subscriptions"])


@router.post(
    "",
    response_model=SubscriptionOut,
    dependencies=[per_user_and_ip("checkout")],
    status_code=status.HTTP_201_CREATED,
    response_description="A new checkout.",
    responses={
        200: {
            "model": SubscriptionOut,
            "description": "A checkout for this plan is open already: that one, no new charge.",
        }
    },
)
async def subscribe(
    body: SubscriptionIn,
    response: Response,
    customer: CustomerDep,
    session: SessionDep,
    settings: SettingsDep,
    checkouts: CheckoutsDep,
) -> SubscriptionOut:
    """Check out a plan; a pending checkout for the same plan is returned instead of a new one."""
    subscription, created = await service.subscribe(session, settings, customer, body)
    await checkouts.open(subscription.latest_payment_id)
    if not created:
        response.status_code = status.HTTP_200_OK
    return await service.subscription_out(session, subscription)


@router.get("", response_model=Page[SubscriptionOut])
async def list_subscriptions(
    customer: CustomerDep, session: SessionDep, limit: Limit = 20, cursor: Cursor = None
) -> Page[SubscriptionOut]:
    """My subscriptions, newest first."""
    items, next_cursor = await service.list_subscriptions(
        session, customer.id, cursor=cursor, limit=limit
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{subscription_id}", response_model=SubscriptionOut)
async def get_subscription(
    subscription_id: UUID, customer: CustomerDep, session: SessionDep
) -> SubscriptionOut:
    """One of my subscriptions."""
    return await service.get_subscription(session, customer.id, subscription_id)


@router.patch("/{subscription_id}", response_model=SubscriptionOut)
async def update_subscription(
    subscription_id: UUID, body: SubscriptionPatch, customer: CustomerDep, session: SessionDep
) -> SubscriptionOut:
    """Choose how renewals are paid: the card, or the wallet first when it covers them."""
    subscription = await renewal_sources.set_renewal_source(
        session, customer.id, subscription_id, body.renewal_source
    )
    return await service.subscription_out(session, subscription)


@router.post("/{subscription_id}/cancel", response_model=SubscriptionOut)
async def cancel(
    subscription_id: UUID,
    customer: CustomerDep,
    session: SessionDep,
    gateway: GatewayDep,
    body: CancelIn | None = None,
) -> SubscriptionOut:
    """Cancel at the end of the paid period (default) or now, with the refund the plan allows."""
    at_period_end = body.at_period_end if body else True
    subscription = await service.cancel(
        session, gateway, customer.id, subscription_id, at_period_end=at_period_end
    )
    return await service.subscription_out(session, subscription)


@router.post("/{subscription_id}/pause", response_model=SubscriptionOut)
async def pause(
    subscription_id: UUID,
    body: PauseIn,
    customer: CustomerDep,
    session: SessionDep,
    settings: SettingsDep,
) -> SubscriptionOut:
    """Pause for 1-3 months from the end of the paid period, instead of cancelling."""
    subscription = await pauses.pause(
        session, settings, customer.id, subscription_id, months=body.months
    )
    return await service.subscription_out(session, subscription)


@router.post("/{subscription_id}/resume", response_model=SubscriptionOut)
async def resume(
    subscription_id: UUID, customer: CustomerDep, session: SessionDep, renewals: RenewalsNowDep
) -> SubscriptionOut:
    """Undo a scheduled cancel or a pause not begun yet, or end a running pause now (renewed
    and charged at once)."""
    ctx = renewals.context()
    subscription, charge = await pauses.resume(session, ctx, customer.id, subscription_id)
    await renewals.charge(ctx, charge)
    if charge is not None:  # settled in its own transaction: read what it made
        await session.refresh(subscription)
    return await service.subscription_out(session, subscription)


@router.post("/{subscription_id}/change-plan", response_model=PlanChangeOut)
async def change_plan(
    subscription_id: UUID,
    body: ChangePlanIn,
    customer: CustomerDep,
    session: SessionDep,
    settings: SettingsDep,
    checkouts: CheckoutsDep,
) -> PlanChangeOut:
    """Upgrade now (less the unused part of this period) or downgrade at the period end."""
    change = await plan_change.change_plan(
        session,
        settings,
        customer,
        subscription_id,
        body.plan_id,
        payment_method=body.payment_method,
    )
    await checkouts.open(change.payment_id)
    return await plan_change.plan_change_out(session, change)


@router.post(
    "/{subscription_id}/payment-method",
    response_model=PaymentMethodUpdateOut,
    status_code=status.HTTP_201_CREATED,
    response_description="A new checkout that saves the card (and pays what is due).",
    responses={
        200: {
            "model": PaymentMethodUpdateOut,
            "description": "An update checkout is open already: that one, no new charge.",
        }
    },
)
async def update_payment_method(
    subscription_id: UUID,
    body: PaymentMethodIn,
    response: Response,
    customer: CustomerDep,
    session: SessionDep,
    settings: SettingsDep,
    checkouts: CheckoutsDep,
) -> PaymentMethodUpdateOut:
    """Save a new card for renewals at a checkout; in grace or dunning it pays the renewal due."""
    update = await payment_method.update_payment_method(
        session, settings, customer, subscription_id
    )
    await checkouts.open(update.payment.id)
    if not update.created:
        response.status_code = status.HTTP_200_OK
    return payment_method.update_out(update)
