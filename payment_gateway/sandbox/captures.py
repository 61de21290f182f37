"""Capturing a sandbox payment in one statement, and what is left of it, read under its row lock.

Refunds asked by the gateway, refunds made in the dashboard and disputes opened by the payer's
bank all lock the payment's row first, so what is left is never handed out twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from payment_gateway.sandbox.models import (
    SandboxCharge,
    SandboxPaymentMethod,
    SandboxRefund,
    SandboxSession,
    SandboxWebhook,
    new_id,
)
from shared import clock
from shared.errors import NotFound


class PaymentNotCaptured(NotFound):
    default_detail = "the sandbox captured no money for this payment"


@dataclass(frozen=True)
class Settled:
    """What the pay request answers with: the session's state once paid (or as found)."""

    status: str
    success_url: str
    cancel_url: str
    failure_code: str | None


async def settle_open(
    db: AsyncSession,
    session_id: str,
    number: str,
    *,
    succeeds: bool,
    failure_code: str | None,
    fails_off_session: bool,
    off_session_failure_code: str | None = None,
    brand: str | None = None,
    exp_month: int | None = None,
    exp_year: int | None = None,
    requires_action: bool = False,
) -> Settled | None:
    """Pay the session with the card ``number`` if it is open and not due to expire.

    One ``UPDATE … RETURNING`` whose row feeds two ``INSERT … SELECT`` in the same statement:
    the saved card (when the session saves one and the card succeeded) and the webhook that
    reports the result. The ``UPDATE`` matches only a session still open and not past its
    expiry and takes its row lock, so a concurrent pay waits and then matches nothing; the
    caller then reads the session as it is (settled or expiring) the slow way. What is stored
    is what :func:`~payment_gateway.sandbox.events.enqueue` and the ORM would have stored.
    Returns None when the session was not settled here.
    """
    moment = clock.now()
    method_id = new_id("pm")
    event_id = new_id("evt")
    event_type = "checkout.session.completed" if succeeds else "checkout.session.failed"
    changes: dict[str, object] = {
        "card_last4": number[-4:],
        "card_brand": brand,
        "card_exp_month": exp_month,
        "card_exp_year": exp_year,
        "updated_at": moment,
    }
    if succeeds:
        changes["status"] = "succeeded"
        changes["payment_method_id"] = sa.case(
            (SandboxSession.save_payment_method, method_id),
            else_=SandboxSession.payment_method_id,
        )
    else:
        changes["status"] = "failed"
        changes["failure_code"] = failure_code
    paid = (
        sa.update(SandboxSession)
        .where(
            SandboxSession.id == session_id,
            SandboxSession.status == "open",
            SandboxSession.expires_at > moment,
        )
        .values(changes)
        .returning(
            SandboxSession.id,
            SandboxSession.payment_id,
            SandboxSession.customer_id,
            SandboxSession.payment_method_id,
            SandboxSession.status,
            SandboxSession.success_url,
            SandboxSession.cancel_url,
            SandboxSession.failure_code,
        )
        .cte("paid")
    )
    saved_card = sa.insert(SandboxPaymentMethod).from_select(
        [
            "id",
            "customer_id",
            "card_last4",
            "fails_off_session",
            "off_session_failure_code",
            "brand",
            "exp_month",
            "exp_year",
            "requires_action",
            "created_at",
            "updated_at",
        ],
        sa.select(
            sa.literal(method_id),
            paid.c.customer_id,
            sa.literal(number[-4:]),
            sa.literal(fails_off_session),
            sa.literal(off_session_failure_code, sa.String),
            sa.literal(brand, sa.String),
            sa.literal(exp_month, sa.SmallInteger),
            sa.literal(exp_year, sa.SmallInteger),
            sa.literal(requires_action),
            sa.literal(moment),
            sa.literal(moment),
        ).where(paid.c.payment_method_id == method_id),
    )
    body = {
        "id": event_id,
        "type": event_type,
        "created": int(moment.timestamp()),
        "data": {"object": {"id": session_id, "payment_id": None}},
    }
    webhook = sa.insert(SandboxWebhook).from_select(
        ["id", "event_type", "body", "created_at", "next_attempt_at", "attempts"],
        sa.select(
            sa.literal(event_id),
            sa.literal(event_type),
            # the session's payment id, known only once the row is matched
            sa.func.jsonb_set(
                sa.cast(sa.literal(body, JSONB), JSONB),
                sa.literal(["data", "object", "payment_id"], sa.ARRAY(sa.Text)),
                sa.func.to_jsonb(sa.cast(paid.c.payment_id, sa.Text)),
            ),
            sa.literal(moment),
            sa.literal(moment),
            sa.literal(0),
        ).select_from(paid),
    )
    statement = (
        sa.select(paid.c.status, paid.c.success_url, paid.c.cancel_url, paid.c.failure_code)
        .add_cte(saved_card.cte("saved_card"))
        .add_cte(webhook.cte("webhook"))
    )
    row = (await db.execute(statement)).first()
    if row is None:
        return None
    return Settled(*row)


async def captured(db: AsyncSession, ref: str) -> tuple[int, UUID | None]:
    """What the payment captured and its id, its row locked (as the dashboard locks it)."""
    if ref.startswith("pi_sb_"):
        charge = await db.get(SandboxCharge, ref, with_for_update=True)
        if charge is not None and charge.status == "succeeded":
            return charge.amount, charge.payment_id
    else:
        checkout = await db.get(SandboxSession, ref, with_for_update=True)
        if checkout is not None and checkout.status == "succeeded":
            return checkout.amount, checkout.payment_id
    return 0, None


async def refunded(db: AsyncSession, ref: str) -> int:
    """What succeeded refunds took of the payment ``ref`` so far."""
    total = await db.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(SandboxRefund.amount), 0)).where(
            SandboxRefund.payment_ref == ref, SandboxRefund.status == "succeeded"
        )
    )
    return int(total or 0)


async def refundable(db: AsyncSession, payment: str) -> tuple[str, UUID | None, int]:
    """The captured payment's reference and id, and what is left of it, locked.

    ``payment`` is the sandbox's reference or the gateway's payment id."""
    try:
        by_id: UUID | None = UUID(payment)
    except ValueError:
        by_id = None
    found: SandboxSession | SandboxCharge | None
    if by_id is not None:
        found = await db.scalar(
            sa.select(SandboxSession).where(SandboxSession.payment_id == by_id)
        ) or await db.scalar(sa.select(SandboxCharge).where(SandboxCharge.payment_id == by_id))
    elif payment.startswith("pi_sb_"):
        found = await db.get(SandboxCharge, payment)
    else:
        found = await db.get(SandboxSession, payment)
    if found is None or found.status != "succeeded" or found.amount <= 0:
        raise PaymentNotCaptured(f"no captured sandbox payment {payment}")
    await db.refresh(found, with_for_update=True)  # refunds of one payment line up
    return found.id, found.payment_id, found.amount - await refunded(db, found.id)
