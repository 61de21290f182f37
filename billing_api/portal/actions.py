"""The portal's forms (POST): each calls the service function its API route calls, once.

Same rules, events and checkouts as the API: a route that opens a card checkout commits first
through :class:`billing_api.deps.Checkouts` and sends the browser to the checkout; the others
send it back to the page with a short notice (Post/Redirect/Get). A refusal (an ``AppError``)
rolls everything back and is shown as a page with its status code
(:class:`billing_api.portal.rendering.PortalRoute`).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from billing_api.deps import CheckoutsDep, GatewayDep, RenewalsNowDep, SessionDep, SettingsDep
from billing_api.portal.forms import FormDep, PortalDep, act_once
from billing_api.portal.rendering import PortalRoute, page_locale
from billing_api.portal.sessions import PortalSession
from billing_api.refunds import service as refunds
from billing_api.subscriptions import pauses, payment_method, plan_change
from billing_api.subscriptions import service as subscriptions
from billing_api.wallet import service as wallet
from billing_api.wallet.schemas import TopUpIn
from shared.errors import UnprocessableEntity
from shared.money import exponent

router = APIRouter(
    prefix="/portal", tags=["portal"], include_in_schema=False, route_class=PortalRoute
)


class FieldNotUnderstood(UnprocessableEntity):
    default_detail = "a field of the form is missing or not understood"


def _locale(request: Request, portal: PortalSession) -> str:
    """The checkout speaks the language of the page its form was on."""
    return page_locale(request, portal.locale)


def _int_field(form: FormDep, name: str, *, low: int, high: int) -> int:
    value = form.get(name) or ""
    if not value.isdigit() or not low <= int(value) <= high:
        raise FieldNotUnderstood(f"{name} must be a whole number from {low} to {high}")
    return int(value)


def _minor_units(text: str | None, currency: str) -> int:
    """ "500", "500,50" or "500.50" of ``currency`` → minor units; refused when not exact."""
    try:
        major = Decimal((text or "").strip().replace(" ", "").replace(",", "."))
    except InvalidOperation:
        raise FieldNotUnderstood("the amount must be a number, e.g. 500 or 500.50") from None
    minor = major.scaleb(exponent(currency))
    if not major.is_finite() or minor != minor.to_integral_value() or minor <= 0:
        raise FieldNotUnderstood("the amount must be positive, with at most the currency's cents")
    return int(minor)


@router.post("/subscriptions/{subscription_id}/cancel")
async def cancel(
    subscription_id: UUID,
    portal: PortalDep,
    form: FormDep,
    session: SessionDep,
    gateway: GatewayDep,
) -> RedirectResponse:
    """Cancel at the end of the paid period."""

    async def act() -> str:
        await subscriptions.cancel(
            session, gateway, portal.user_id, subscription_id, at_period_end=True
        )
        return "/portal?done=canceled"

    return await act_once(session, portal, form, act)


@router.post("/subscriptions/{subscription_id}/resume")
async def resume(
    subscription_id: UUID,
    portal: PortalDep,
    form: FormDep,
    session: SessionDep,
    renewals: RenewalsNowDep,
) -> RedirectResponse:
    """Undo a scheduled cancel or pause, or end a running pause now."""

    async def act() -> str:
        ctx = renewals.context()
        _, charge = await pauses.resume(session, ctx, portal.user_id, subscription_id)
        await renewals.charge(ctx, charge)
        return "/portal?done=resumed"

    return await act_once(session, portal, form, act)


@router.post("/subscriptions/{subscription_id}/pause")
async def pause(
    subscription_id: UUID,
    portal: PortalDep,
    form: FormDep,
    session: SessionDep,
    settings: SettingsDep,
) -> RedirectResponse:
    """Pause for 1-3 months from the end of the paid period."""
    months = _int_field(form, "months", low=1, high=3)

    async def act() -> str:
        await pauses.pause(session, settings, portal.user_id, subscription_id, months=months)
        return "/portal?done=paused"

    return await act_once(session, portal, form, act)


@router.post("/subscriptions/{subscription_id}/change-plan")
async def change_plan(
    subscription_id: UUID,
    request: Request,
    portal: PortalDep,
    form: FormDep,
    session: SessionDep,
    settings: SettingsDep,
    checkouts: CheckoutsDep,
) -> RedirectResponse:
    """Upgrade now (to the checkout when it costs something) or downgrade at the period end."""
    try:
        plan_id = UUID(form.get("plan_id") or "")
    except ValueError:
        raise FieldNotUnderstood("plan_id must be a plan's id") from None

    async def act() -> str:
        change = await plan_change.change_plan(
            session, settings, portal.customer(), subscription_id, plan_id, payment_method="card"
        )
        await checkouts.open(change.payment_id, locale=_locale(request, portal))
        payment = change.payment
        if payment is not None and payment.status == "pending" and payment.checkout_url:
            return payment.checkout_url
        return "/portal?done=plan_changed"

    return await act_once(session, portal, form, act)


@router.post("/subscriptions/{subscription_id}/card")
async def update_card(
    subscription_id: UUID,
    request: Request,
    portal: PortalDep,
    form: FormDep,
    session: SessionDep,
    settings: SettingsDep,
    checkouts: CheckoutsDep,
) -> RedirectResponse:
    """Save a new card at a checkout (paying what is due, if anything)."""

    async def act() -> str:
        update = await payment_method.update_payment_method(
            session, settings, portal.customer(), subscription_id
        )
        await checkouts.open(update.payment.id, locale=_locale(request, portal))
        return update.payment.checkout_url or "/portal"

    return await act_once(session, portal, form, act)


@router.post("/payments/{payment_id}/refund")
async def refund(
    payment_id: UUID,
    portal: PortalDep,
    form: FormDep,
    session: SessionDep,
    gateway: GatewayDep,
) -> RedirectResponse:
    """Refund what the rules allow now (the amount shown on the quote page)."""

    async def act() -> str:
        await refunds.request_refund(
            session, gateway, portal.user_id, payment_id, reason="asked in the portal"
        )
        return "/portal/payments?done=refunded"

    return await act_once(session, portal, form, act)


@router.post("/wallet/top-ups")
async def top_up(
    request: Request,
    portal: PortalDep,
    form: FormDep,
    session: SessionDep,
    settings: SettingsDep,
    checkouts: CheckoutsDep,
) -> RedirectResponse:
    """Top up the wallet at a card checkout."""
    currency = settings.default_currency
    try:
        body = TopUpIn(amount=_minor_units(form.get("amount"), currency), currency=currency)
    except ValidationError:
        raise FieldNotUnderstood("the amount is too large") from None

    async def act() -> str:
        payment = await wallet.top_up(session, settings, portal.customer(), body)
        await checkouts.open(payment.id, locale=_locale(request, portal))
        return payment.checkout_url or "/portal/wallet"

    return await act_once(session, portal, form, act)
