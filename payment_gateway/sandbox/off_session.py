"""Off-session charges of saved cards, many at once: the sandbox's bulk call.

Each charge is exactly what :meth:`SandboxProvider.charge_off_session` makes of it (the same
test-card outcome, once per ``payment_id``; asked again, the first charge answers), but a whole
batch costs a few statements: one read of the saved cards, one multi-row insert of the charges
(``ON CONFLICT DO NOTHING`` on ``payment_id``, in ``payment_id`` order so that two batches
sharing charges wait for each other instead of deadlocking), one read of the charges made
before, and the new charges' webhooks written together at the commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment_gateway.providers import base
from payment_gateway.sandbox import cards, snapshots
from payment_gateway.sandbox.models import SandboxCharge, SandboxPaymentMethod, new_id
from shared import clock

Enqueue = Callable[[AsyncSession, str, str, UUID | None], Awaitable[None]]


async def charge_many(
    sessions: async_sessionmaker[AsyncSession],
    requests: Sequence[base.OffSessionRequest],
    *,
    enqueue: Enqueue,
    public_url: str,
) -> list[base.ProviderPayment | base.ProviderError]:
    """Charge every request once; the snapshots come back in the requests' order."""
    if not requests:
        return []
    async with sessions() as db, db.begin():
        refs = {request.payment_method_ref for request in requests}
        methods = {
            method.id: method
            for method in await db.scalars(
                sa.select(SandboxPaymentMethod).where(SandboxPaymentMethod.id.in_(refs))
            )
        }
        rows = [
            charge_row(request, methods.get(request.payment_method_ref), public_url)
            for request in sorted(requests, key=lambda request: request.payment_id)
        ]
        made = {
            charge.payment_id: charge
            for charge in await db.scalars(
                insert(SandboxCharge)
                .values(rows)
                .on_conflict_do_nothing(index_elements=[SandboxCharge.payment_id])
                .returning(SandboxCharge)
            )
        }
        earlier = await _charges_made_before(db, [r.payment_id for r in requests], made)
        for row in rows:  # each new charge is reported once, as a single charge is
            charge = made.get(row["payment_id"])
            if charge is not None:
                await enqueue(db, f"charge.{charge.status}", charge.id, charge.payment_id)
        outcomes: list[base.ProviderPayment | base.ProviderError] = []
        for request in requests:
            charge = made.get(request.payment_id)
            if charge is not None:
                outcomes.append(snapshots.charge_snapshot_of(charge, refunds=()))
            else:
                outcomes.append(await snapshots.charge_snapshot(db, earlier[request.payment_id]))
    return outcomes


def charge_row(
    request: base.OffSessionRequest, method: SandboxPaymentMethod | None, public_url: str
) -> dict[str, Any]:
    """The charge of ``method`` for ``request``: its outcome by the test card, and the card
    charged (brand, last four, expiry) when the method is the customer's; a card that asks for
    confirmation leaves it ``requires_action`` at its action page."""
    status, code = cards.off_session_outcome(method, request.customer.id, clock.now())
    known = method is not None and method.customer_id == request.customer.id
    charge_id = new_id("pi")
    return {
        "id": charge_id,
        "payment_id": request.payment_id,
        "customer_id": request.customer.id,
        "amount": request.amount,
        "currency": request.currency,
        "payment_method_id": request.payment_method_ref,
        "status": status,
        "failure_code": code,
        "card_brand": method.brand if known and method else None,
        "card_last4": method.card_last4 if known and method else None,
        "card_exp_month": method.exp_month if known and method else None,
        "card_exp_year": method.exp_year if known and method else None,
        "action_url": cards.action_url(public_url, charge_id)
        if status == "requires_action"
        else None,
    }


async def _charges_made_before(
    db: AsyncSession, payment_ids: Sequence[UUID], made: dict[UUID, SandboxCharge]
) -> dict[UUID, SandboxCharge]:
    """The charges of payments charged before this batch (a repeat answers with them)."""
    repeated = [payment_id for payment_id in payment_ids if payment_id not in made]
    if not repeated:
        return {}
    return {
        charge.payment_id: charge
        for charge in await db.scalars(
            sa.select(SandboxCharge).where(SandboxCharge.payment_id.in_(repeated))
        )
    }
