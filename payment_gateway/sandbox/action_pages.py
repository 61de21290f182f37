"""The sandbox's page where a cardholder confirms an off-session charge (3-D Secure), and its
JSON twin.

``GET /sandbox/actions/{id}`` shows the charge with Confirm and Fail buttons; submitting one (or
``POST /sandbox/actions/{id}/confirm``, ``…/decline``) settles the charge, and the result reaches
the gateway by signed webhook, as every sandbox outcome does. A charge that no longer waits
(confirmed, refused, or cancelled by the gateway because it was not confirmed in time) is shown
as such and takes no decision: the JSON twin answers 409. The page speaks Russian or English,
as the checkout page does (:mod:`payment_gateway.hosted_pages`).
"""

from __future__ import annotations

from urllib.parse import parse_qs
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from payment_gateway import hosted_pages
from payment_gateway.deps import SandboxDep
from payment_gateway.hosted_pages import PageLocale
from payment_gateway.sandbox.actions import ActionClosed
from payment_gateway.sandbox.models import SandboxCharge

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
async def action_page(charge_id: str, provider: SandboxDep, locale: PageLocale) -> HTMLResponse:
    """The page a cardholder is sent to by the notice."""
    return HTMLResponse(_page(await provider.get_action(charge_id), locale))


@router.post("/{charge_id}", response_class=HTMLResponse, include_in_schema=False)
async def submit_page(
    charge_id: str, request: Request, provider: SandboxDep, locale: PageLocale
) -> HTMLResponse:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    decision = "decline" if form.get("decision", [""])[0] == "decline" else "confirm"
    try:
        charge = await provider.decide_action(charge_id, decision)
    except ActionClosed:
        return HTMLResponse(_page(await provider.get_action(charge_id), locale), status_code=409)
    return HTMLResponse(_page(charge, locale))


# What a charge that no longer waits says, by its status (phrase keys).
_DONE = {
    "succeeded": "confirmed",
    "failed": "refused",
    "canceled": "not_confirmed_in_time",
}


def _page(charge: SandboxCharge, locale: str) -> str:
    return hosted_pages.render(
        "sandbox_action.html.j2",
        locale,
        charge=charge,
        amount=hosted_pages.money(charge.amount, charge.currency, locale),
        message=_DONE.get(charge.status, "no_longer_confirmable"),
    )
