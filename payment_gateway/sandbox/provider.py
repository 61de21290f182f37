"""The sandbox provider: Stripe-like test cards, saved methods, refunds, expiry, signed webhooks."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment_gateway.providers import base, signatures
from payment_gateway.sandbox.models import (
    SandboxCharge,
    SandboxDispute,
    SandboxPaymentMethod,
    SandboxRefund,
    SandboxSession,
    SandboxWebhook,
)
from shared import clock
from shared.errors import AppError, Conflict, NotFound, UnprocessableEntity

SIGNATURE_HEADER = "Sandbox-Signature"


@dataclass(frozen=True)
class TestCard:
    succeeds: bool
    fails_off_session: bool = False
    failure_code: str | None = None
    failure_message: str | None = None


TEST_CARDS: Mapping[str, TestCard] = {
    "4242424242424242": TestCard(succeeds=True),
    "4000000000000341": TestCard(succeeds=True, fails_off_session=True),
    "4000000000000002": TestCard(False, False, "card_declined", "Your card was declined."),
    "4000000000009995": TestCard(
        False, False, "insufficient_funds", "Your card has insufficient funds."
    ),
}

RELEVANT_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.failed",
        "checkout.session.expired",
        "charge.succeeded",
        "charge.failed",
        "refund.succeeded",
        "refund.failed",
        "charge.dispute.created",
    }
)


class CheckoutSessionNotFound(NotFound):
    default_detail = "no such checkout session"


class CheckoutSessionClosed(Conflict):
    default_detail = "this checkout session can no longer be paid"


class CheckoutSessionExpired(AppError):
    status_code = 410
    default_detail = "this checkout session has expired"


class UnknownTestCard(UnprocessableEntity):
    default_detail = (
        "the sandbox accepts only test cards: 4242424242424242 (succeeds), 4000000000000002"
        " (declined), 4000000000009995 (insufficient funds), 4000000000000341 (saves, later"
        " off-session charges fail)"
    )


class PaymentNotCaptured(NotFound):
    default_detail = "the sandbox captured no money for this payment"


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


def _new_id(prefix: str) -> str:
    return f"{prefix}_sb_{secrets.token_hex(12)}"


def normalise_card(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


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

    async def create_checkout(self, request: base.CheckoutRequest) -> base.CheckoutCreated:
        async with self.sessions() as db, db.begin():
            found = await db.scalar(
                sa.select(SandboxSession).where(SandboxSession.payment_id == request.payment_id)
            )
            if found is None:
                found = SandboxSession(
                    id=_new_id("cs"),
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
        return base.CheckoutCreated(
            provider_ref=found.id,
            checkout_url=f"{self.public_url}/sandbox/checkout/{found.id}",
            expires_at=found.expires_at,
            customer_ref=f"cus_sb_{request.customer.id.hex}",
        )

    async def charge_off_session(self, request: base.OffSessionRequest) -> base.ProviderPayment:
        """Charge a saved card once per ``payment_id``; asked again, answer with that charge.

        The charge is inserted with ``ON CONFLICT DO NOTHING`` on its unique ``payment_id``, so a
        new charge costs three statements (card, charge, webhook) and a repeat reads the first.
        """
        async with self.sessions() as db, db.begin():
            method = await db.get(SandboxPaymentMethod, request.payment_method_ref)
            if method is None or method.customer_id != request.customer.id:
                status, code = "failed", "payment_method_not_found"
            elif method.fails_off_session:
                status, code = "failed", "card_declined"
            else:
                status, code = "succeeded", None
            charge = await db.scalar(
                insert(SandboxCharge)
                .values(
                    id=_new_id("pi"),
                    payment_id=request.payment_id,
                    customer_id=request.customer.id,
                    amount=request.amount,
                    currency=request.currency,
                    payment_method_id=request.payment_method_ref,
                    status=status,
                    failure_code=code,
                )
                .on_conflict_do_nothing(index_elements=[SandboxCharge.payment_id])
                .returning(SandboxCharge)
            )
            if charge is None:
                charge = await db.scalar(
                    sa.select(SandboxCharge).where(SandboxCharge.payment_id == request.payment_id)
                )
                assert charge is not None
                snapshot = await self._charge_snapshot(db, charge)
            else:
                await self._enqueue(db, f"charge.{status}", charge.id, charge.payment_id)
                snapshot = _charge_snapshot(charge, refunds=())
        self.webhooks_waiting.set()
        return snapshot

    async def refund(self, request: base.RefundRequest) -> base.ProviderRefund:
        async with self.sessions() as db, db.begin():
            # Locked first: this refund lines up with the dashboard's refunds and disputes of
            # the same payment, so what is left is never handed out twice.
            paid, payment_id = await self._captured(db, request.payment_provider_ref)
            refund = await db.scalar(
                sa.select(SandboxRefund).where(SandboxRefund.refund_id == request.refund_id)
            )
            if refund is None:
                already = await db.scalar(
                    sa.select(sa.func.coalesce(sa.func.sum(SandboxRefund.amount), 0)).where(
                        SandboxRefund.payment_ref == request.payment_provider_ref,
                        SandboxRefund.status == "succeeded",
                    )
                )
                disputed = await self._dispute(db, request.payment_provider_ref)
                fits = request.amount <= paid - int(already or 0)
                status = "succeeded" if fits and not disputed else "failed"
                refund = SandboxRefund(
                    id=_new_id("re"),
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
        return _refund_snapshot(refund)

    async def fetch_payment(self, provider_ref: str) -> base.ProviderPayment:
        async with self.sessions() as db, db.begin():
            if provider_ref.startswith("pi_sb_"):
                charge = await db.get(SandboxCharge, provider_ref)
                if charge is None:
                    raise base.ProviderError(f"no such charge {provider_ref}")
                return await self._charge_snapshot(db, charge)
            checkout = await db.get(SandboxSession, provider_ref)
            if checkout is None:
                raise base.ProviderError(f"no such checkout session {provider_ref}")
            if checkout.status == "open" and checkout.expires_at <= clock.now():
                # lock only to expire it: the expiry is reported by webhook once
                await db.refresh(checkout, with_for_update=True)
                await self._expire_if_due(db, checkout)
            return await self._session_snapshot(db, checkout)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> base.WebhookNotice:
        header = next((v for k, v in headers.items() if k.lower() == "sandbox-signature"), None)
        try:
            signatures.verify(
                body, header, self.webhook_secret, now=int(time.time()), tolerance=self.tolerance
            )
            event = orjson.loads(body)
            obj = event["data"]["object"]
            event_id, event_type = str(event["id"]), str(event["type"])
            payment_id = UUID(obj["payment_id"]) if obj.get("payment_id") else None
        except signatures.BadSignature as exc:
            raise base.InvalidWebhook(str(exc)) from exc
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise base.InvalidWebhook(f"malformed event: {exc}") from exc
        return base.WebhookNotice(
            event_id=event_id,
            event_type=event_type,
            payment_id=payment_id,
            provider_ref=obj.get("payment_ref") or obj.get("id"),
            relevant=event_type in RELEVANT_EVENTS,
        )

    # --- the hosted page's side ---------------------------------------------------------------

    async def get_session(self, session_id: str) -> SandboxSession:
        async with self.sessions() as db, db.begin():
            checkout = await db.get(SandboxSession, session_id, with_for_update=True)
            if checkout is None:
                raise CheckoutSessionNotFound(f"checkout session {session_id} not found")
            await self._expire_if_due(db, checkout)
        self.webhooks_waiting.set()
        return checkout

    async def pay(self, session_id: str, card_number: str) -> PayResult:
        """Pay a session with a test card; paying a paid session again changes nothing."""
        card = TEST_CARDS.get(normalise_card(card_number))
        if card is None:
            raise UnknownTestCard
        async with self.sessions() as db, db.begin():
            checkout = await db.get(SandboxSession, session_id, with_for_update=True)
            if checkout is None:
                raise CheckoutSessionNotFound(f"checkout session {session_id} not found")
            expired = await self._expire_if_due(db, checkout)
            if not expired and checkout.status == "open":
                await self._settle(db, checkout, card, normalise_card(card_number))
        self.webhooks_waiting.set()
        if checkout.status == "expired":
            raise CheckoutSessionExpired(f"checkout session {session_id} has expired")
        if checkout.status == "succeeded":
            return PayResult(session_id, "succeeded", checkout.success_url)
        return PayResult(
            session_id,
            "failed",
            checkout.cancel_url,
            checkout.failure_code,
            next(
                (
                    c.failure_message
                    for c in TEST_CARDS.values()
                    if c.failure_code == checkout.failure_code
                ),
                "Your card was declined.",
            ),
        )

    async def _settle(
        self, db: AsyncSession, checkout: SandboxSession, card: TestCard, number: str
    ) -> None:
        checkout.card_last4 = number[-4:]
        if card.succeeds:
            checkout.status = "succeeded"
            if checkout.save_payment_method:
                method = SandboxPaymentMethod(
                    id=_new_id("pm"),
                    customer_id=checkout.customer_id,
                    card_last4=number[-4:],
                    fails_off_session=card.fails_off_session,
                )
                db.add(method)
                checkout.payment_method_id = method.id
            await self._enqueue(db, "checkout.session.completed", checkout.id, checkout.payment_id)
        else:
            checkout.status = "failed"
            checkout.failure_code = card.failure_code
            await self._enqueue(db, "checkout.session.failed", checkout.id, checkout.payment_id)

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
            ref, payment_id, left = await self._refundable(db, payment)
            if await self._dispute(db, ref):  # as Stripe: a disputed charge is not refunded
                raise AlreadyDisputed(f"payment {ref} is disputed; it cannot be refunded")
            amount = left if amount is None else amount
            if not 0 < amount <= left:
                raise NothingLeftToRefund(f"at most {left} can be refunded")
            refund = SandboxRefund(
                id=_new_id("re"),
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
            ref, payment_id, left = await self._refundable(db, payment)
            if await db.scalar(
                sa.select(SandboxDispute.id).where(SandboxDispute.payment_ref == ref)
            ):
                raise AlreadyDisputed(f"payment {ref} is already disputed")
            if left <= 0:
                raise NothingLeftToRefund("everything was refunded; there is nothing to dispute")
            dispute = SandboxDispute(id=_new_id("dp"), payment_ref=ref, amount=left, reason=reason)
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

    async def _refundable(self, db: AsyncSession, payment: str) -> tuple[str, UUID | None, int]:
        """The captured payment's reference and id, and what is left of it, locked."""
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
        refunded = await db.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(SandboxRefund.amount), 0)).where(
                SandboxRefund.payment_ref == found.id, SandboxRefund.status == "succeeded"
            )
        )
        return found.id, found.payment_id, found.amount - int(refunded or 0)

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
        event_id = _new_id("evt")
        moment = clock.now()
        obj = {
            "id": object_id,
            "payment_id": str(payment_id) if payment_id else None,
            **(extra or {}),
        }
        db.add(
            SandboxWebhook(
                id=event_id,
                event_type=event_type,
                body={
                    "id": event_id,
                    "type": event_type,
                    "created": int(moment.timestamp()),
                    "data": {"object": obj},
                },
                created_at=moment,
                next_attempt_at=moment,
                attempts=0,
            )
        )

    async def _captured(self, db: AsyncSession, ref: str) -> tuple[int, UUID | None]:
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

    async def _refunds(self, db: AsyncSession, ref: str) -> tuple[base.ProviderRefund, ...]:
        rows = await db.scalars(
            sa.select(SandboxRefund)
            .where(SandboxRefund.payment_ref == ref)
            .order_by(SandboxRefund.created_at)
        )
        return tuple(_refund_snapshot(row) for row in rows)

    async def _session_snapshot(
        self, db: AsyncSession, checkout: SandboxSession
    ) -> base.ProviderPayment:
        status = {
            "open": base.ProviderStatus.PENDING,
            "succeeded": base.ProviderStatus.SUCCEEDED,
            "failed": base.ProviderStatus.FAILED,
            "expired": base.ProviderStatus.EXPIRED,
        }[checkout.status]
        return base.ProviderPayment(
            provider_ref=checkout.id,
            status=status,
            amount=checkout.amount,
            currency=checkout.currency,
            charge_ref=checkout.id if status is base.ProviderStatus.SUCCEEDED else None,
            payment_method_ref=checkout.payment_method_id,
            customer_ref=f"cus_sb_{checkout.customer_id.hex}",
            failure_code=checkout.failure_code,
            failure_message="the card was declined" if checkout.failure_code else None,
            # only a paid session can have been refunded or disputed
            refunds=await self._refunds(db, checkout.id) if checkout.status == "succeeded" else (),
            **(await self._dispute(db, checkout.id) if checkout.status == "succeeded" else {}),
        )

    async def _charge_snapshot(
        self, db: AsyncSession, charge: SandboxCharge
    ) -> base.ProviderPayment:
        snapshot = _charge_snapshot(charge, refunds=await self._refunds(db, charge.id))
        return replace(snapshot, **await self._dispute(db, charge.id))

    async def _dispute(self, db: AsyncSession, ref: str) -> dict[str, Any]:
        """The dispute fields of a snapshot (empty when the payment is not disputed)."""
        dispute = await db.scalar(
            sa.select(SandboxDispute).where(SandboxDispute.payment_ref == ref)
        )
        if dispute is None:
            return {}
        return {
            "disputed": True,
            "dispute_reason": dispute.reason,
            "dispute_amount": dispute.amount,
            "dispute_ref": dispute.id,
        }


def _charge_snapshot(
    charge: SandboxCharge, *, refunds: tuple[base.ProviderRefund, ...]
) -> base.ProviderPayment:
    succeeded = charge.status == "succeeded"
    return base.ProviderPayment(
        provider_ref=charge.id,
        status=base.ProviderStatus.SUCCEEDED if succeeded else base.ProviderStatus.FAILED,
        amount=charge.amount,
        currency=charge.currency,
        charge_ref=charge.id if succeeded else None,
        payment_method_ref=charge.payment_method_id,
        customer_ref=f"cus_sb_{charge.customer_id.hex}",
        failure_code=charge.failure_code,
        failure_message="the saved card was declined" if charge.failure_code else None,
        refunds=refunds,
    )


def _refund_snapshot(refund: SandboxRefund) -> base.ProviderRefund:
    return base.ProviderRefund(
        provider_ref=refund.id,
        amount=refund.amount,
        status=base.RefundStatus(refund.status),
        refund_id=refund.refund_id,
        failure_message="more than the remaining captured amount, or the payment is disputed"
        if refund.status == "failed"
        else None,
    )
