"""Charges that wait for the cardholder (3-D Secure): confirmed, refused or cancelled, once.

A saved card like 4000002760003184 makes every off-session charge ``requires_action``: the
sandbox answers it with an ``action_url`` (its page ``/sandbox/actions/{charge_id}``) and waits.
The cardholder confirms there (the charge succeeds) or refuses (it fails); the gateway may
cancel it first (billing gave up waiting: it is ``canceled``, reported as failed). Each of the
three locks the charge's row and acts only on a charge still ``requires_action``, so exactly one
of them wins a race and the others see its outcome: a confirmation that lost to a cancel is
refused (the page says the payment can no longer be confirmed), and a cancel that lost to a
confirmation answers the success, so the money taken is never lost. Every outcome is reported to
the gateway by a signed webhook queued in the same transaction, as every other sandbox outcome.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.sandbox import events
from payment_gateway.sandbox.models import SandboxCharge
from shared.errors import Conflict, NotFound

WAITING = "requires_action"
# What each decision makes of a waiting charge: its status and failure code.
OUTCOMES = {
    "confirm": ("succeeded", None),
    "decline": ("failed", "payment_intent_authentication_failure"),
    "cancel": ("canceled", "canceled"),
}


class ActionNotFound(NotFound):
    default_detail = "no such payment to confirm"


class ActionClosed(Conflict):
    default_detail = "this payment can no longer be confirmed"


async def locked_charge(db: AsyncSession, charge_id: str) -> SandboxCharge:
    charge = await db.get(SandboxCharge, charge_id, with_for_update=True)
    if charge is None or charge.action_url is None:
        raise ActionNotFound(f"no payment {charge_id} waits for a confirmation")
    return charge


async def decide(db: AsyncSession, charge: SandboxCharge, decision: str) -> bool:
    """Apply ``decision`` to the locked ``charge`` if it still waits; whether it changed.

    A decision repeated after it was taken changes nothing (a double click, a retried cancel).
    """
    status, code = OUTCOMES[decision]
    if charge.status != WAITING:
        return False
    charge.status = status
    charge.failure_code = code
    await events.enqueue(db, f"charge.{status}", charge.id, charge.payment_id)
    return True


async def decide_by_cardholder(db: AsyncSession, charge_id: str, decision: str) -> SandboxCharge:
    """The cardholder confirms or refuses on the action page; ``ActionClosed`` if it no longer
    waits and was not settled that same way already."""
    charge = await locked_charge(db, charge_id)
    if not await decide(db, charge, decision) and charge.status != OUTCOMES[decision][0]:
        raise ActionClosed(f"payment {charge_id} is {charge.status}; it can no longer be confirmed")
    return charge
