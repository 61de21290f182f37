"""The page where a cardholder confirms a Stripe renewal that needs 3-D Secure.

Stripe hosts no page for a bare PaymentIntent: an off-session charge refused with
``authentication_required`` has to be confirmed on-session by the cardholder with Stripe.js.
``GET /stripe/actions/{payment_id}`` (the ``action_url`` of such a payment when Stripe gives no
redirect of its own) loads Stripe.js with the publishable key (``GATEWAY_STRIPE_PUBLISHABLE_KEY``)
and calls ``confirmCardPayment`` with the PaymentIntent's client secret and the saved card; Stripe
shows its authentication dialog, and its ``payment_intent.succeeded`` webhook settles the payment
as for any charge. A payment that no longer waits (confirmed, or cancelled because it was not
confirmed in time) is shown as such, with nothing to confirm. The page, and Stripe's dialog,
speak Russian or English (:mod:`payment_gateway.hosted_pages`).
"""

from __future__ import annotations

import json
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from payment_gateway import hosted_pages, phrases
from payment_gateway.deps import ProvidersDep, SessionDep, SettingsDep
from payment_gateway.hosted_pages import PageLocale
from payment_gateway.models import Payment, PaymentStatus
from payment_gateway.providers.stripe_provider import StripeProvider

router = APIRouter(prefix="/stripe/actions", tags=["pages"], include_in_schema=False)


@router.get("/{payment_id}", response_class=HTMLResponse)
async def action_page(
    payment_id: UUID,
    session: SessionDep,
    providers: ProvidersDep,
    settings: SettingsDep,
    locale: PageLocale,
) -> HTMLResponse:
    """The page a cardholder is sent to by the notice."""
    payment = await session.get(Payment, payment_id)
    provider = providers.by_name.get("stripe")
    if payment is None or payment.provider != "stripe" or not isinstance(provider, StripeProvider):
        headline = phrases.phrase(locale, "unknown_payment")
        return HTMLResponse(_page(locale, headline, message="no_such_payment"), 404)
    amount = hosted_pages.money(payment.amount, payment.currency, locale)
    details = None
    if payment.status == PaymentStatus.REQUIRES_ACTION and payment.provider_ref:
        details = await provider.action_details(payment.provider_ref)
    if details is None:
        done = payment.status == PaymentStatus.SUCCEEDED
        message = "confirmed" if done else "no_longer_confirmable"
        page = _page(locale, amount, message=message, status=str(payment.status))
        return HTMLResponse(page, 200 if done else 409)
    if not settings.stripe_publishable_key:
        return HTMLResponse(_page(locale, amount, message="no_publishable_key"), 503)
    client_secret, method = details
    stripe = json.dumps(
        {
            "key": settings.stripe_publishable_key,
            "secret": client_secret,
            "data": {"payment_method": method} if method else {},
            "locale": locale,  # Stripe's own dialog and errors in the page's language
            "confirmed": phrases.phrase(locale, "confirmed"),
        }
    ).replace("<", "\\u003c")
    return HTMLResponse(_page(locale, amount, stripe=stripe))


def _page(
    locale: str,
    headline: str,
    *,
    message: str | None = None,
    status: str | None = None,
    stripe: str | None = None,
) -> str:
    return hosted_pages.render(
        "stripe_action.html.j2",
        locale,
        headline=headline,
        message=message,
        status=status,
        stripe=stripe,
    )
