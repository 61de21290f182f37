"""The page where a cardholder confirms a Stripe renewal that needs 3-D Secure.

Stripe hosts no page for a bare PaymentIntent: an off-session charge refused with
``authentication_required`` has to be confirmed on-session by the cardholder with Stripe.js.
``GET /stripe/actions/{payment_id}`` (the ``action_url`` of such a payment when Stripe gives no
redirect of its own) loads Stripe.js with the publishable key (``GATEWAY_STRIPE_PUBLISHABLE_KEY``)
and calls ``confirmCardPayment`` with the PaymentIntent's client secret and the saved card; Stripe
shows its authentication dialog, and its ``payment_intent.succeeded`` webhook settles the payment
as for any charge. A payment that no longer waits (confirmed, or cancelled because it was not
confirmed in time) is shown as such, with nothing to confirm.
"""

from __future__ import annotations

import json
from html import escape
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from payment_gateway.deps import ProvidersDep, SessionDep, SettingsDep
from payment_gateway.models import Payment, PaymentStatus
from payment_gateway.providers.stripe_provider import StripeProvider
from shared.money import format_minor_units

STYLE = (
    "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;padding:40px 16px}"
    "main{max-width:420px;margin:auto;background:#fff;border-radius:12px;padding:28px}"
    ".amount{font-size:32px;font-weight:700;margin:8px 0 20px}button{width:100%;padding:12px;"
    "border:0;border-radius:6px;background:#4353ff;color:#fff;font-size:16px;cursor:pointer}"
)

router = APIRouter(prefix="/stripe/actions", tags=["pages"], include_in_schema=False)


@router.get("/{payment_id}", response_class=HTMLResponse)
async def action_page(
    payment_id: UUID, session: SessionDep, providers: ProvidersDep, settings: SettingsDep
) -> HTMLResponse:
    """The page a cardholder is sent to by the notice."""
    payment = await session.get(Payment, payment_id)
    provider = providers.by_name.get("stripe")
    if payment is None or payment.provider != "stripe" or not isinstance(provider, StripeProvider):
        return HTMLResponse(_page("Unknown payment", "There is no such payment."), 404)
    amount = f"{format_minor_units(payment.amount, payment.currency)} {payment.currency}"
    details = None
    if payment.status == PaymentStatus.REQUIRES_ACTION and payment.provider_ref:
        details = await provider.action_details(payment.provider_ref)
    if details is None:
        done = payment.status == PaymentStatus.SUCCEEDED
        message = (
            "Payment confirmed. You can close this page."
            if done
            else "This payment can no longer be confirmed."
        )
        page = _page(amount, message, status=str(payment.status))
        return HTMLResponse(page, 200 if done else 409)
    if not settings.stripe_publishable_key:
        return HTMLResponse(
            _page(amount, "Confirmation is not available: no Stripe publishable key is set."), 503
        )
    client_secret, method = details
    config = json.dumps(
        {
            "key": settings.stripe_publishable_key,
            "secret": client_secret,
            "data": {"payment_method": method} if method else {},
        }
    ).replace("<", "\\u003c")
    script = (
        "<script src='https://js.stripe.com/v3/'></script><script>"
        f"const c={config};const s=Stripe(c.key);"
        "document.getElementById('confirm').onclick=async()=>{"
        "const r=await s.confirmCardPayment(c.secret,c.data);"
        "const o=document.getElementById('status');"
        "o.textContent=r.error?r.error.message:'Payment confirmed. You can close this page.';};"
        "</script>"
    )
    body = (
        "<p>Your bank asks you to confirm this renewal charge (3-D Secure).</p>"
        f"<button id='confirm'>Confirm {escape(amount)}</button><p id='status'></p>{script}"
    )
    return HTMLResponse(_page(amount, body, raw=True))


def _page(headline: str, message: str, *, status: str | None = None, raw: bool = False) -> str:
    data = f" data-status='{escape(status)}'" if status else ""
    content = message if raw else f"<p id='status'{data}>{escape(message)}</p>"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>Confirm your payment</title><style>{STYLE}</style></head><body><main>"
        f"<h1>Confirm this payment with your bank</h1><div class='amount'>{escape(headline)}</div>"
        f"{content}</main></body></html>"
    )
