"""The sandbox provider: Stripe-like checkouts, saved methods, refunds, expiry, disputes.

Its parts: ``cards`` (what each test card decides), ``captures`` (paying a session in one
statement; what is left of a payment, locked), ``actions`` (charges waiting for the
cardholder's confirmation), ``snapshots`` (what the gateway is told) and ``events`` (the
signed webhooks it reports with). This module is the provider protocol, the
hosted page's and the dashboard's side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment_gateway.providers import base
from payment_gateway.sandbox import actions, captures, cards, events, off_session, snapshots
from payment_gateway.sandbox.models import (
    SandboxCharge,
    SandboxDispute,
    SandboxPaymentMethod,
    SandboxRefund,
    SandboxSession,
    new_id,
)
from shared import clock
from shared.errors import AppError, Conflict, NotFound


class CheckoutSessionNotFound(NotFound):
    default_detail = "no such checkout session"


class CheckoutSessionClosed(Conflict):
    default_detail = "this checkout session can no longer be paid"


class CheckoutSessionExpired(AppError):
    status_code = 410
    default_detail = "this checkout session has expired"


class NothingLeftToRefund(Conflict):
    default_detail = "the amount is more than is left to refund"


class AlreadyDisputed(Conflict):
    default_detail = "this payment is already disputed"


@dataclass(frozen=True)
class PayResult:
    session_id: str
    status: str
    redirect_url: str
    failure_code: str | None = None
    failure_message: str | None = None


class SandboxProvider:
    """A card processor in a box; it reaches the gateway only through signed webhooks."""

    name = "sandbox"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        public_url: str,
        webhook_secret: str,
        tolerance: int = 300,
    ) -> None:
        self.sessions = sessions
        self.public_url = public_url.rstrip("/")
        self.webhook_secret = webhook_secret
        self.tolerance = tolerance
        self.webhooks_waiting = asyncio.Event()

    # --- the provider protocol ---------------------------------------------------------------

    async def create_customer(self, customer: base.Customer) -> str | None:
        """The sandbox's customer of a user: named after the user, nothing to create."""
        return f"cus_sb_{customer.id.hex}"

    async def create_checkout(self, request: base.CheckoutRequest) -> base.CheckoutCreated:
        async with self.sessions() as db, db.begin():
            found = await db.scalar(
                sa.select(SandboxSession).where(SandboxSession.payment_id == request.payment_id)
            )
            if found is None:
                found = SandboxSession(
                    id=new_id("cs"),
                    payment_id=request.payment_id,
                    customer_id=request.customer.id,
                    customer_email=request.customer.email,
                    amount=request.amount,
                    currency=request.currency,
                    description=request.description,
                    success_url=request.success_url,
                    cancel_url=request.cancel_url,
                    save_payment_method=request.save_payment_method,
                    status="open",
                    expires_at=request.expires_at,
                )
                db.add(found)
        # The page's language rides on its URL (the sandbox keeps no column for it); without
        # one the page follows the payer's browser.
        chosen = f"?locale={request.locale}" if request.locale else ""
        return base.CheckoutCreated(
            provider_ref=found.id,
            checkout_url=f"{self.public_url}/sandbox/checkout/{found.id}{chosen}",
            expires_at=found.expires_at,
            customer_ref=f"cus_sb_{request.customer.id.hex}",
        )

    async def charge_off_session(self, request: base.OffSessionRequest) -> base.ProviderPayment:
        """Charge a saved card once per ``payment_id``; asked again, answer with that charge.

        The charge is inserted with ``ON CONFLICT DO NOTHING`` on its unique ``payment_id``, so a
        new charge costs three statements (card, charge, webhook) and a repeat reads the first.
        A card that asks for confirmation leaves the charge ``requires_action`` at its page.
        """
        async with self.sessions() as db, db.begin():
            method = await db.get(SandboxPaymentMethod, request.payment_method_ref)
            charge = await db.scalar(
                insert(SandboxCharge)
                .values(off_session.charge_row(request, method, self.public_url))
                .on_conflict_do_nothing(index_elements=[SandboxCharge.payment_id])
                .returning(SandboxCharge)
            )
            if charge is None:
                charge = await db.scalar(
                    sa.select(SandboxCharge).where(SandboxCharge.payment_id == request.payment_id)
                )
                assert charge is not None
                snapshot = await snapshots.charge_snapshot(db, charge)
            else:
                await self._enqueue(db, f"charge.{charge.status}", charge.id, charge.payment_id)
                snapshot = snapshots.charge_snapshot_of(charge, refunds=())
        self.webhooks_waiting.set()
        return snapshot

    async def charge_off_session_many(
        self, requests: Sequence[base.OffSessionRequest]
    ) -> list[base.ProviderPayment | base.ProviderError]:
        """:meth:`charge_off_session` for many payments in a few statements (``off_session``)."""
        outcomes = await off_session.charge_many(
            self.sessions, requests, enqueue=self._enqueue, public_url=self.public_url
        )
        self.webhooks_waiting.set()
        return outcomes

    async def refund(self, request: base.RefundRequest) -> base.ProviderRefund:
        async with self.sessions() as db, db.begin():
            # Locked first: this refund lines up with the dashboard's refunds and disputes of
            # the same payment, so what is left is never handed out twice.
            paid, payment_id = await captures.captured(db, request.payment_provider_ref)
            refund = await db.scalar(
                sa.select(SandboxRefund).where(SandboxRefund.refund_id == request.refund_id)
            )
            if refund is None:
                already = await captures.refunded(db, request.payment_provider_ref)
                disputed = await snapshots.dispute_fields(db, request.payment_provider_ref)
                fits = request.amount <= paid - already
                status = "succeeded" if fits and not disputed else "failed"
                refund = SandboxRefund(
                    id=new_id("re"),
                    refund_id=request.refund_id,
                    payment_ref=request.payment_provider_ref,
                    amount=request.amount,
                    status=status,
                )
                db.add(refund)
                await self._enqueue(
                    db,
                    f"refund.{status}",
                    refund.id,
                    payment_id,
                    extra={
                        "payment_ref": request.payment_provider_ref,
                        "refund_id": str(request.refund_id),
                    },
                )
        self.webhooks_waiting.set()
        return snapshots.refund_snapshot(refund)

    async def cancel_payment(self, provider_ref: str) -> base.ProviderPayment:
        """Cancel a charge still waiting for the cardholder; one already settled (confirmed
        first, or cancelled before) is answered as it is (see :mod:`.actions`)."""
        async with self.sessions() as db, db.begin():
            charge = await db.get(SandboxCharge, provider_ref, with_for_update=True)
            if charge is None:
                raise base.ProviderError(f"no such charge {provider_ref}")
            await actions.decide(db, charge, "cancel")
            snapshot = await snapshots.charge_snapshot(db, charge)
        self.webhooks_waiting.set()
        return snapshot

    async def fetch_payment(self, provider_ref: str) -> base.ProviderPayment:
        found = await self.fetch_payments([provider_ref])
        if provider_ref not in found:
            kind = "charge" if provider_ref.startswith("pi_sb_") else "checkout session"
            raise base.ProviderError(f"no such {kind} {provider_ref}")
        return found[provider_ref]

    async def fetch_payments(
        self, provider_refs: Sequence[str]
    ) -> Mapping[str, base.ProviderPayment]:
        """Sessions and charges with their refunds and disputes, read in one query.

        A session found open past its expiry is expired here (locked only for that), and the
        expiry reported by webhook once, as :meth:`get_session` does.
        """
        expired = False
        async with self.sessions() as db, db.begin():
            found = await snapshots.read_many(db, provider_refs)
            for payment, _, _ in found.values():
                if (
                    isinstance(payment, SandboxSession)
                    and payment.status == "open"
                    and payment.expires_at <= clock.now()
                ):
                    # refreshed in place: the snapshot below says what the lock found
                    await db.refresh(payment, with_for_update=True)
                    expired |= await self._expire_if_due(db, payment)
            answer = {ref: snapshots.snapshot_of(item) for ref, item in found.items()}
        if expired:
            self.webhooks_waiting.set()
        return answer

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> base.WebhookNotice:
        return events.parse_notice(
            body, headers, secret=self.webhook_secret, tolerance=self.tolerance
        )

    async def fetch_refund(
        self, payment_provider_ref: str, refund_ref: str
    ) -> base.ProviderRefund | None:
        return await base.refund_of_payment(self, payment_provider_ref, refund_ref)

    def verify_source(self, peer: str | None, headers: Mapping[str, str]) -> None:
        """Any sender: a sandbox webhook proves itself by its signature."""

    # --- the hosted page's side ---------------------------------------------------------------

    async def get_session(self, session_id: str) -> SandboxSession:
        async with self.sessions() as db, db.begin():
            checkout = await db.get(SandboxSession, session_id, with_for_update=True)
            if checkout is None:
                raise CheckoutSessionNotFound(f"checkout session {session_id} not found")
            await self._expire_if_due(db, checkout)
        self.webhooks_waiting.set()
        return checkout

    async def get_action(self, charge_id: str) -> SandboxCharge:
        """The charge behind an action page (404 when none waits or waited there)."""
        async with self.sessions() as db, db.begin():
            return await actions.locked_charge(db, charge_id)

    async def decide_action(self, charge_id: str, decision: str) -> SandboxCharge:
        """The cardholder confirms (``confirm``) or refuses (``decline``) a waiting charge."""
        async with self.sessions() as db, db.begin():
            charge = await actions.decide_by_cardholder(db, charge_id, decision)
        self.webhooks_waiting.set()
        return charge

    async def pay(
        self,
        session_id: str,
        card_number: str,
        *,
        exp_month: int | None = None,
        exp_year: int | None = None,
    ) -> PayResult:
        """Pay a session with a test card; paying a paid session again changes nothing.

        The card's expiry defaults to December a few years ahead (:func:`cards.expiry_of`); an
        expiry already over declines the checkout ``expired_card``, as an issuer would.

        An open session is settled with one statement (:func:`captures.settle_open`); only a
        session that is missing, already settled or due to expire is read and locked the slow way.
        """
        card = cards.card_of(card_number)
        month, year = cards.expiry_of(exp_month, exp_year, clock.now())
        succeeds, failure_code = card.succeeds, card.failure_code
        if succeeds and cards.expiry_end(month, year) <= clock.now():
            succeeds, failure_code = False, "expired_card"
        async with self.sessions() as db, db.begin():
            settled = await captures.settle_open(
                db,
                session_id,
                cards.normalise_card(card_number),
                succeeds=succeeds,
                failure_code=failure_code,
                fails_off_session=card.fails_off_session,
                off_session_failure_code=card.off_session_failure_code,
                brand=cards.brand_of(card_number),
                exp_month=month,
                exp_year=year,
                requires_action=card.requires_action_off_session,
            )
            if settled is None:
                checkout = await db.get(SandboxSession, session_id, with_for_update=True)
                if checkout is None:
                    raise CheckoutSessionNotFound(f"checkout session {session_id} not found")
                await self._expire_if_due(db, checkout)
                settled = captures.Settled(
                    checkout.status,
                    checkout.success_url,
                    checkout.cancel_url,
                    checkout.failure_code,
                )
        self.webhooks_waiting.set()
        if settled.status == "expired":
            raise CheckoutSessionExpired(f"checkout session {session_id} has expired")
        if settled.status == "succeeded":
            return PayResult(session_id, "succeeded", settled.success_url)
        return PayResult(
            session_id,
            "failed",
            settled.cancel_url,
            settled.failure_code,
            cards.declined_message(settled.failure_code),
        )

    async def expire_due(self, now: datetime | None = None) -> int:
        """Expire every open session past its expiry (each reported by webhook once)."""
        moment = now or clock.now()
        async with self.sessions() as db, db.begin():
            due = list(
                await db.scalars(
                    sa.select(SandboxSession)
                    .where(SandboxSession.status == "open", SandboxSession.expires_at <= moment)
                    .limit(200)
                    .with_for_update(skip_locked=True)
                )
            )
            for checkout in due:
                await self._expire_if_due(db, checkout, now=moment)
        if due:
            self.webhooks_waiting.set()
        return len(due)

    # --- the dashboard's side: money moved by staff or the payer's bank, not by the gateway --

    async def dashboard_refund(
        self, payment: str, *, amount: int | None = None, reason: str | None = None
    ) -> SandboxRefund:
        """Refund from the dashboard, as staff would in Stripe's: no ``refund_id`` of ours.

        ``payment`` is the sandbox's reference or the gateway's payment id; ``amount`` defaults
        to everything not refunded yet. Reported to the gateway by ``refund.succeeded``.
        """
        async with self.sessions() as db, db.begin():
            ref, payment_id, left = await captures.refundable(db, payment)
            # as Stripe: a disputed charge is not refunded
            if await snapshots.dispute_fields(db, ref):
                raise AlreadyDisputed(f"payment {ref} is disputed; it cannot be refunded")
            amount = left if amount is None else amount
            if not 0 < amount <= left:
                raise NothingLeftToRefund(f"at most {left} can be refunded")
            refund = SandboxRefund(
                id=new_id("re"),
                refund_id=None,
                payment_ref=ref,
                amount=amount,
                status="succeeded",
            )
            db.add(refund)
            await self._enqueue(
                db,
                "refund.succeeded",
                refund.id,
                payment_id,
                extra={"payment_ref": ref, "refund_id": None, "reason": reason},
            )
        self.webhooks_waiting.set()
        return refund

    async def open_dispute(self, payment: str, *, reason: str = "fraudulent") -> SandboxDispute:
        """The payer's bank disputes the charge: what was not refunded is held back.

        Reported to the gateway by ``charge.dispute.created``; one dispute per payment.
        """
        async with self.sessions() as db, db.begin():
            ref, payment_id, left = await captures.refundable(db, payment)
            if await db.scalar(
                sa.select(SandboxDispute.id).where(SandboxDispute.payment_ref == ref)
            ):
                raise AlreadyDisputed(f"payment {ref} is already disputed")
            if left <= 0:
                raise NothingLeftToRefund("everything was refunded; there is nothing to dispute")
            dispute = SandboxDispute(id=new_id("dp"), payment_ref=ref, amount=left, reason=reason)
            db.add(dispute)
            await self._enqueue(
                db,
                "charge.dispute.created",
                dispute.id,
                payment_id,
                extra={"payment_ref": ref, "amount": left, "reason": reason},
            )
        self.webhooks_waiting.set()
        return dispute

    # --- internals ----------------------------------------------------------------------------

    async def _expire_if_due(
        self, db: AsyncSession, checkout: SandboxSession, *, now: datetime | None = None
    ) -> bool:
        if checkout.status != "open" or checkout.expires_at > (now or clock.now()):
            return checkout.status == "expired"
        checkout.status = "expired"
        await self._enqueue(db, "checkout.session.expired", checkout.id, checkout.payment_id)
        return True

    async def _enqueue(
        self,
        db: AsyncSession,
        event_type: str,
        object_id: str,
        payment_id: UUID | None,
        *,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Every event this provider reports is queued through here, in the change's transaction."""
        await events.enqueue(db, event_type, object_id, payment_id, extra=extra)
