"""The sandbox's page where a cardholder confirms an off-session charge (3-D Secure), and its
JSON twin.

``GET /sandbox/actions/{id}`` shows the charge with Confirm and Fail buttons; submitting one (or
``POST /sandbox/actions/{id}/confirm``, ``…/decline``) settles the charge, and the result reaches
the gateway by signed webhook, as every sandbox outcome does. A charge that no longer waits
(confirmed, refused, or cancelled by the gateway because it was not confirmed in time) is shown
as such and takes no decision: the JSON twin answers 409.
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qs
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from payment_gateway.deps import SandboxDep
from payment_gateway.sandbox.actions import ActionClosed
from payment_gateway.sandbox.models import SandboxCharge
from payment_gateway.sandbox.pages import STYLE
from shared.money import format_minor_units

router = APIRouter(prefix="/sandbox/actions", tags=["sandbox"])


class ActionOut(BaseModel):
    charge_id: str
    payment_id: UUID
    status: str  # succeeded (confirmed) | failed (refused)


def _out(charge: SandboxCharge) -> ActionOut:
    return ActionOut(charge_id=charge.id, payment_id=charge.payment_id, status=charge.status)


@router.post("/{charge_id}/confirm", response_model=ActionOut)
async def confirm(charge_id: str, provider: SandboxDep) -> ActionOut:
    """Confirm a charge waiting for the cardholder (the JSON twin of the page's button)."""
    return _out(await provider.decide_action(charge_id, "confirm"))


@router.post("/{charge_id}/decline", response_model=ActionOut)
async def decline(charge_id: str, provider: SandboxDep) -> ActionOut:
    """Refuse a charge waiting for the cardholder: it fails."""
    return _out(await provider.decide_action(charge_id, "decline"))


# For people, not programs: the document describes the JSON twin only (as the checkout page).
@router.get("/{charge_id}", response_class=HTMLResponse, include_in_schema=False)
async def action_page(charge_id: str, provider: SandboxDep) -> HTMLResponse:
    """The page a cardholder is sent to by the notice."""
    return HTMLResponse(_page(await provider.get_action(charge_id)))


@router.post("/{charge_id}", response_class=HTMLResponse, include_in_schema=False)
async def submit_page(charge_id: str, request: Request, provider: SandboxDep) -> HTMLResponse:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    decision = "decline" if form.get("decision", [""])[0] == "decline" else "confirm"
    try:
        charge = await provider.decide_action(charge_id, decision)
    except ActionClosed:
        return HTMLResponse(_page(await provider.get_action(charge_id)), status_code=409)
    return HTMLResponse(_page(charge))


_DONE = {
    "succeeded": "Payment confirmed. You can close this page.",
    "failed": "You refused this payment; nothing was charged.",
    "canceled": "This payment can no longer be confirmed: it was not confirmed in time.",
}


def _page(charge: SandboxCharge) -> str:
    amount = f"{format_minor_units(charge.amount, charge.currency)} {charge.currency}"
    head = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>Confirm {escape(amount)}</title><style>{STYLE}</style></head><body><main>"
        "<span class='badge'>SANDBOX — no real money moves</span>"
        "<h1>Confirm this payment with your bank</h1>"
        f"<div class='amount'>{escape(amount)}</div>"
    )
    if charge.status == "requires_action":
        action = f"/sandbox/actions/{escape(charge.id)}"
        body = (
            "<p>Your bank asks you to confirm this renewal charge (3-D Secure).</p>"
            f"<form method='post' action='{action}'><input type='hidden' name='decision'"
            f" value='confirm'><button type='submit' id='confirm'>Confirm {escape(amount)}"
            "</button></form>"
            f"<form method='post' action='{action}'><input type='hidden' name='decision'"
            " value='decline'><button type='submit' id='fail' style='background:#a11'>Fail"
            " authentication</button></form>"
        )
    else:
        message = _DONE.get(charge.status, "This payment can no longer be confirmed.")
        css = "" if charge.status == "succeeded" else " class='error'"
        body = f"<p id='status'{css} data-status='{escape(charge.status)}'>{escape(message)}</p>"
    return f"{head}{body}</main></body></html>"
