"""Stripe behind the provider protocol: Checkout Sessions, off-session PaymentIntents, Refunds.

A checkout of amount 0 (a trial that only saves the card) is a Checkout Session in ``setup`` mode;
its SetupIntent, not a PaymentIntent, carries the saved payment method.

Every call goes through one :class:`stripe.StripeClient` (no global ``stripe.api_key``) with the
SDK's ``*_async`` methods, and every write carries an idempotency key derived from our ids, so a
retry (the SDK's own, or ours after a timeout) cannot charge, refund or create a customer twice
within Stripe's 24-hour idempotency window. What Stripe answers is read into the provider
protocol's terms by :mod:`.stripe_mapping`.

Renewals that need the cardholder (3-D Secure): an off-session PaymentIntent that Stripe
refuses with ``authentication_required`` (or one found in ``requires_action``) is
``requires_action``, not failed. Its ``action_url`` is Stripe's own redirect when the
PaymentIntent gives one (``next_action.redirect_to_url``), else the gateway's page
``/stripe/actions/{payment_id}`` (:mod:`payment_gateway.stripe_actions`), which confirms the
PaymentIntent on-session with Stripe.js ``confirmCardPayment`` and the same card. Stripe then
reports ``payment_intent.succeeded`` as for any charge. :meth:`StripeProvider.cancel_payment`
cancels a PaymentIntent nobody confirmed in time; one that succeeded first cannot be cancelled
(Stripe refuses), and the answer then says it succeeded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime

import stripe
from stripe.checkout import Session
from stripe.params import CustomerCreateParams, PaymentIntentCreateParams
from stripe.params.checkout import SessionCreateParams, SessionCreateParamsPaymentIntentData

from payment_gateway.providers import declines
from payment_gateway.providers import stripe_mapping as mapping
from payment_gateway.providers.base import (
    CheckoutCreated,
    CheckoutRequest,
    Customer,
    OffSessionRequest,
    PaymentProvider,
    ProviderAnswerUnreadable,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    ProviderStatus,
    RefundRequest,
    WebhookNotice,
)

_METADATA_VALUE_LIMIT = 500  # Stripe rejects longer metadata values


class StripeProvider(PaymentProvider):
    """The ``stripe`` provider of :class:`~payment_gateway.providers.base.PaymentProvider`."""

    name = "stripe"

    def __init__(
        self,
        api_key: str,
        webhook_secret: str,
        *,
        api_base: str | None = None,
        http_client: stripe.HTTPClient | None = None,
        webhook_tolerance: int = 300,
        public_url: str = "http://127.0.0.1:8001",
    ) -> None:
        # HTTPXClient without sync support: any accidental blocking call fails instead of
        # silently stalling the event loop.
        self._http_client = http_client or stripe.HTTPXClient()
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http_client,
        )
        self._webhook_secret = webhook_secret
        self._webhook_tolerance = webhook_tolerance
        self._public_url = public_url

    async def aclose(self) -> None:
        """Release the HTTP connections (call from the service's lifespan)."""
        await self._http_client.close_async()  # type: ignore[no-untyped-call]

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutCreated:
        """A Checkout Session: ``mode=payment``, or ``mode=setup`` for amount 0 (save only)."""
        metadata = {**request.metadata, "payment_id": str(request.payment_id)}
        with _stripe_errors("create_checkout"):
            customer_ref = request.customer_ref or await self._create_customer(request.customer)
            params: SessionCreateParams = {
                "customer": customer_ref,
                "client_reference_id": str(request.payment_id),
                "metadata": metadata,
                "success_url": request.success_url,
                "cancel_url": request.cancel_url,
                "expires_at": int(request.expires_at.timestamp()),
            }
            if request.locale:  # else Stripe's page follows the payer's browser
                params["locale"] = "en" if request.locale == "en" else "ru"
            if request.amount == 0:
                # Setup mode saves the card through a SetupIntent and charges nothing; with
                # dynamic payment methods Stripe needs the currency to pick the methods offered.
                params["mode"] = "setup"
                params["currency"] = request.currency.lower()
                params["setup_intent_data"] = {"metadata": metadata}
            else:
                intent_data: SessionCreateParamsPaymentIntentData = {"metadata": metadata}
                if request.save_payment_method:
                    intent_data["setup_future_usage"] = "off_session"
                params["mode"] = "payment"
                params["line_items"] = [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": request.currency.lower(),
                            "unit_amount": request.amount,
                            "product_data": {"name": request.description},
                        },
                    }
                ]
                params["payment_intent_data"] = intent_data
            session = await self._client.v1.checkout.sessions.create_async(
                params, {"idempotency_key": f"checkout-{request.payment_id}"}
            )
        if session.url is None:
            # The session exists at Stripe: an answer we cannot use, not a refusal.
            raise ProviderAnswerUnreadable(
                f"stripe returned checkout session {session.id} without a url"
            )
        return CheckoutCreated(
            provider_ref=session.id,
            checkout_url=session.url,
            expires_at=datetime.fromtimestamp(session.expires_at, UTC),
            customer_ref=customer_ref,
        )

    async def charge_off_session(self, request: OffSessionRequest) -> ProviderPayment:
        params: PaymentIntentCreateParams = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "description": request.description,
            "payment_method": request.payment_method_ref,
            "off_session": True,
            "confirm": True,
            "metadata": {**request.metadata, "payment_id": str(request.payment_id)},
            "expand": ["payment_method"],  # its card's brand, last four and expiry
        }
        if request.customer_ref:
            params["customer"] = request.customer_ref
        with _stripe_errors("charge_off_session"):
            try:
                intent = await self._client.v1.payment_intents.create_async(
                    params, {"idempotency_key": f"payment-{request.payment_id}"}
                )
            except stripe.CardError as exc:  # a decline is an answer, not an outage
                return mapping.declined_payment(request, exc, public_url=self._public_url)
        return self._intent_payment(intent.id, mapping.intent_status(intent), intent)

    async def cancel_payment(self, provider_ref: str) -> ProviderPayment:
        """Cancel a PaymentIntent nobody confirmed; answer what it is then (succeeded when the
        cardholder confirmed it first: Stripe refuses to cancel a successful one)."""
        if not provider_ref.startswith("pi_"):
            raise ProviderError(f"only a PaymentIntent can be cancelled, not {provider_ref!r}")
        with _stripe_errors("cancel_payment"):
            intent = await self._client.v1.payment_intents.retrieve_async(provider_ref)
            if intent.status not in ("succeeded", "canceled", "processing"):
                # Confirmed (or cancelled) meanwhile, Stripe refuses: what it is is read below.
                with suppress(stripe.InvalidRequestError):
                    await self._client.v1.payment_intents.cancel_async(
                        provider_ref,
                        {"cancellation_reason": "abandoned"},
                        {"idempotency_key": f"cancel-{provider_ref}"},
                    )
        return await self.fetch_payment(provider_ref)

    async def action_details(self, provider_ref: str) -> tuple[str, str | None] | None:
        """What the action page needs to confirm a PaymentIntent waiting for its cardholder:
        its client secret and the card to confirm it with; None when it no longer waits."""
        with _stripe_errors("action_details"):
            intent = await self._client.v1.payment_intents.retrieve_async(provider_ref)
        if not mapping.needs_authentication(intent) or intent.client_secret is None:
            return None
        error = intent.last_payment_error
        method = mapping.ref(intent.payment_method) or (
            mapping.ref(error.payment_method) if error is not None else None
        )
        return intent.client_secret, method

    def _intent_payment(
        self, provider_ref: str, status: ProviderStatus, intent: stripe.PaymentIntent
    ) -> ProviderPayment:
        return mapping.intent_payment(
            provider_ref,
            status,
            intent,
            action_url=mapping.action_url(intent, self._public_url),
        )

    async def refund(self, request: RefundRequest) -> ProviderRefund:
        metadata = {"refund_id": str(request.refund_id), "payment_id": str(request.payment_id)}
        if request.reason:  # an empty metadata value would mean "unset" to Stripe
            metadata["reason"] = request.reason[:_METADATA_VALUE_LIMIT]
        with _stripe_errors("refund"):
            intent_ref = await self._refundable_intent(request.payment_provider_ref)
            refund = await self._client.v1.refunds.create_async(
                {
                    "payment_intent": intent_ref,
                    "amount": request.amount,
                    "reason": "requested_by_customer",
                    "metadata": metadata,
                },
                {"idempotency_key": f"refund-{request.refund_id}"},
            )
        return mapping.provider_refund(refund)

    async def fetch_payment(self, provider_ref: str) -> ProviderPayment:
        with _stripe_errors("fetch_payment"):
            if provider_ref.startswith("cs_"):
                payment, intent = await self._fetch_session(provider_ref)
            elif provider_ref.startswith("pi_"):
                payment, intent = await self._fetch_intent(provider_ref)
            else:
                raise ProviderError(f"not a Stripe payment reference: {provider_ref!r}")
            if intent is None:
                return payment
            refunds = await self._list_refunds(intent.id)
            charge = intent.latest_charge
            disputed = isinstance(charge, stripe.Charge) and charge.disputed
            dispute = await self._dispute(intent.id) if disputed else None
        return replace(
            payment,
            refunds=refunds,
            disputed=disputed,
            dispute_reason=dispute.reason if dispute else None,
            dispute_amount=dispute.amount if dispute else None,
            dispute_ref=dispute.id if dispute else None,
        )

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookNotice:
        return mapping.parse_event(
            body, headers, secret=self._webhook_secret, tolerance=self._webhook_tolerance
        )

    async def create_customer(self, customer: Customer) -> str:
        """The Stripe customer of one of our users (the gateway keeps it before the checkout)."""
        with _stripe_errors("create_customer"):
            return await self._create_customer(customer)

    async def _create_customer(self, customer: Customer) -> str:
        params: CustomerCreateParams = {"metadata": {"user_id": str(customer.id)}}
        if customer.email:
            params["email"] = customer.email
        created = await self._client.v1.customers.create_async(
            params, {"idempotency_key": f"customer-{customer.id}"}
        )
        return created.id

    async def _fetch_session(
        self, session_ref: str
    ) -> tuple[ProviderPayment, stripe.PaymentIntent | None]:
        session = await self._client.v1.checkout.sessions.retrieve_async(
            session_ref,
            {
                "expand": [
                    "payment_intent",
                    "payment_intent.latest_charge",
                    "payment_intent.payment_method",
                ]
            },
        )
        if session.mode == "setup":
            return await self._fetch_setup(session), None
        intent = session.payment_intent
        if isinstance(intent, stripe.PaymentIntent):
            return mapping.intent_payment(
                session_ref, mapping.session_status(session, intent), intent
            ), intent
        # No attempt yet (Stripe creates the PaymentIntent when the customer pays).
        payment = ProviderPayment(
            provider_ref=session_ref,
            status=mapping.session_status(session, None),
            amount=session.amount_total or 0,
            currency=(session.currency or "").upper(),
            customer_ref=mapping.ref(session.customer),
        )
        return payment, None

    async def _fetch_setup(self, session: Session) -> ProviderPayment:
        """A setup-mode session: nothing is charged; its SetupIntent holds the saved method."""
        setup_ref = mapping.ref(session.setup_intent)
        setup = (
            await self._client.v1.setup_intents.retrieve_async(
                setup_ref, {"expand": ["payment_method"]}
            )
            if setup_ref
            else None
        )
        status = mapping.setup_status(session, setup)
        error = setup.last_setup_error if setup and status is not ProviderStatus.SUCCEEDED else None
        failure_code = (error.decline_code or error.code) if error else None
        saved = setup is not None and status is ProviderStatus.SUCCEEDED
        return ProviderPayment(
            provider_ref=session.id,
            status=status,
            amount=0,
            currency=(session.currency or "").upper(),
            payment_method_ref=mapping.ref(setup.payment_method) if setup and saved else None,
            customer_ref=mapping.ref(session.customer)
            or (mapping.ref(setup.customer) if setup else None),
            failure_code=failure_code,
            failure_message=error.message if error else None,
            hard_decline=declines.is_hard_decline(failure_code),
            card=mapping.card_of(setup.payment_method) if setup and saved else None,
        )

    async def _fetch_intent(self, intent_ref: str) -> tuple[ProviderPayment, stripe.PaymentIntent]:
        intent = await self._client.v1.payment_intents.retrieve_async(
            intent_ref, {"expand": ["latest_charge", "payment_method"]}
        )
        status = mapping.intent_status(intent)
        if status is ProviderStatus.FAILED and intent.status == "requires_payment_method":
            sessions = await self._client.v1.checkout.sessions.list_async(
                {"payment_intent": intent.id, "status": "open", "limit": 1}
            )
            if sessions.data:  # a declined Checkout attempt: the customer may still retry
                status = ProviderStatus.PENDING
        return self._intent_payment(intent_ref, status, intent), intent

    async def _refundable_intent(self, payment_provider_ref: str) -> str:
        """Refunds go against the PaymentIntent; a Checkout payment is known by its session."""
        if not payment_provider_ref.startswith("cs_"):
            return payment_provider_ref
        session = await self._client.v1.checkout.sessions.retrieve_async(payment_provider_ref)
        intent_ref = mapping.ref(session.payment_intent)
        if intent_ref is None:
            raise ProviderError(f"checkout session {payment_provider_ref} has no payment to refund")
        return intent_ref

    async def _list_refunds(self, intent_ref: str) -> tuple[ProviderRefund, ...]:
        listing = await self._client.v1.refunds.list_async(
            {"payment_intent": intent_ref, "limit": 100}
        )
        return tuple(
            [mapping.provider_refund(refund) async for refund in listing.auto_paging_iter()]
        )

    async def _dispute(self, intent_ref: str) -> stripe.Dispute | None:
        disputes = await self._client.v1.disputes.list_async(
            {"payment_intent": intent_ref, "limit": 1}
        )
        return disputes.data[0] if disputes.data else None


@contextmanager
def _stripe_errors(operation: str) -> Iterator[None]:
    """Turn the SDK's errors into :class:`ProviderError` (the cause keeps the original)."""
    try:
        yield
    except stripe.APIError as exc:
        detail = exc.user_message or type(exc).__name__
        status = exc.http_status
        if status is not None and 200 <= status < 300:
            # A success whose body the SDK could not parse (not JSON): Stripe acted.
            raise ProviderAnswerUnreadable(f"stripe {operation}: unreadable answer") from exc
        raise ProviderError(f"stripe {operation} failed: {detail}") from exc
    except stripe.StripeError as exc:
        detail = exc.user_message or type(exc).__name__
        raise ProviderError(f"stripe {operation} failed: {detail}") from exc
