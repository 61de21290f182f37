"""The Stripe provider against a local Stripe stand-in, through the SDK's real HTTP path."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import stripe

from payment_gateway.providers.base import (
    CheckoutRequest,
    Customer,
    InvalidWebhook,
    OffSessionRequest,
    ProviderError,
    ProviderStatus,
    RefundRequest,
    RefundStatus,
)
from payment_gateway.providers.stripe_provider import StripeProvider
from shared.events import CardSummary
from tests.payment_gateway.stripe_standin import StripeStandin, sign_webhook, webhook_body

# The SDK's HTTPXClient posts its form body as a str through ``data=``, which httpx deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

WEBHOOK_SECRET = "whsec_standin_secret"
ALICE = Customer(id=UUID("00000000-0000-0000-0000-00000000a11c"), email="alice@example.com")


@pytest.fixture
def standin() -> Iterator[StripeStandin]:
    with StripeStandin() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_sdk_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's telemetry writes an id file under ~/.config/stripe at the first request."""
    monkeypatch.setattr(stripe, "enable_telemetry", False)


@pytest.fixture
async def provider(standin: StripeStandin) -> AsyncIterator[StripeProvider]:
    provider = StripeProvider(
        standin.api_key, WEBHOOK_SECRET, api_base=standin.url, http_client=stripe.HTTPXClient()
    )
    yield provider
    await provider.aclose()


def checkout_request(**overrides: Any) -> CheckoutRequest:
    fields: dict[str, Any] = {
        "payment_id": uuid4(),
        "customer": ALICE,
        "amount": 999,
        "currency": "EUR",
        "description": "Premium, 1 month",
        "success_url": "https://cinema.example/paid",
        "cancel_url": "https://cinema.example/cancelled",
        "save_payment_method": True,
        "expires_at": datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1),
        "metadata": {"subscription_id": "sub-42"},
    }
    return CheckoutRequest(**{**fields, **overrides})


def off_session_request(**overrides: Any) -> OffSessionRequest:
    fields: dict[str, Any] = {
        "payment_id": uuid4(),
        "customer": ALICE,
        "amount": 999,
        "currency": "EUR",
        "description": "Premium renewal",
        "payment_method_ref": "pm_card_visa",
        "customer_ref": "cus_alice",
        "metadata": {"subscription_id": "sub-42"},
    }
    return OffSessionRequest(**{**fields, **overrides})


async def paid_checkout(provider: StripeProvider, standin: StripeStandin) -> tuple[str, str]:
    """A Checkout payment the customer completed: (session id, payment intent id)."""
    created = await provider.create_checkout(checkout_request())
    return created.provider_ref, standin.complete_session(created.provider_ref)


class TestCreateCheckout:
    async def test_session_is_a_payment_for_our_id_saving_the_method_for_renewals(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        request = checkout_request()

        created = await provider.create_checkout(request)

        [customer_call] = standin.requests_to("POST", "/v1/customers")
        assert customer_call.params == {
            "email": "alice@example.com",
            "metadata": {"user_id": str(ALICE.id)},
        }
        assert customer_call.idempotency_key == f"customer-{ALICE.id}"
        [session_call] = standin.requests_to("POST", "/v1/checkout/sessions")
        params = session_call.params
        assert params["mode"] == "payment"
        assert params["line_items"] == [
            {
                "quantity": "1",
                "price_data": {
                    "currency": "eur",
                    "unit_amount": "999",
                    "product_data": {"name": "Premium, 1 month"},
                },
            }
        ]
        assert params["customer"] == created.customer_ref
        assert params["client_reference_id"] == str(request.payment_id)
        our_metadata = {"subscription_id": "sub-42", "payment_id": str(request.payment_id)}
        assert params["metadata"] == our_metadata
        assert params["payment_intent_data"] == {
            "metadata": our_metadata,
            "setup_future_usage": "off_session",
        }
        assert params["expires_at"] == str(int(request.expires_at.timestamp()))
        assert params["success_url"] == request.success_url
        assert params["cancel_url"] == request.cancel_url
        assert session_call.idempotency_key == f"checkout-{request.payment_id}"
        session = standin.object(created.provider_ref)
        assert created.checkout_url == session["url"]
        assert created.expires_at == request.expires_at
        assert created.customer_ref == standin.objects_of("customer")[0]["id"]

    async def test_zero_amount_is_a_setup_session_that_saves_the_card_for_our_id(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        request = checkout_request(amount=0)

        created = await provider.create_checkout(request)

        [session_call] = standin.requests_to("POST", "/v1/checkout/sessions")
        our_metadata = {"subscription_id": "sub-42", "payment_id": str(request.payment_id)}
        assert session_call.params == {
            "mode": "setup",
            "currency": "eur",
            "customer": created.customer_ref,
            "client_reference_id": str(request.payment_id),
            "metadata": our_metadata,
            "setup_intent_data": {"metadata": our_metadata},
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "expires_at": str(int(request.expires_at.timestamp())),
        }
        assert session_call.idempotency_key == f"checkout-{request.payment_id}"
        session = standin.object(created.provider_ref)
        assert (session["mode"], created.checkout_url) == ("setup", session["url"])
        assert standin.object(session["setup_intent"])["metadata"] == our_metadata

    async def test_method_is_not_saved_unless_asked(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        await provider.create_checkout(checkout_request(save_payment_method=False))

        [session_call] = standin.requests_to("POST", "/v1/checkout/sessions")
        assert "setup_future_usage" not in session_call.params["payment_intent_data"]

    async def test_the_chosen_language_is_stripes_pages_and_none_leaves_it_to_the_browser(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        await provider.create_checkout(checkout_request(locale="en"))
        await provider.create_checkout(checkout_request())

        chosen, unchosen = standin.requests_to("POST", "/v1/checkout/sessions")
        assert chosen.params["locale"] == "en"
        assert "locale" not in unchosen.params

    async def test_known_customer_is_reused_without_creating_another(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        first = await provider.create_checkout(checkout_request())

        second = await provider.create_checkout(checkout_request(customer_ref=first.customer_ref))

        assert second.customer_ref == first.customer_ref
        assert len(standin.requests_to("POST", "/v1/customers")) == 1
        assert standin.requests_to("POST", "/v1/checkout/sessions")[1].params["customer"] == (
            first.customer_ref
        )

    async def test_creating_the_same_checkout_twice_gives_the_same_session(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        request = checkout_request()

        first = await provider.create_checkout(request)
        again = await provider.create_checkout(request)

        assert again == first
        assert len(standin.objects_of("checkout.session")) == 1
        assert len(standin.objects_of("customer")) == 1

    async def test_rejected_api_key_is_a_provider_error(self, standin: StripeStandin) -> None:
        provider = StripeProvider("sk_test_wrong", WEBHOOK_SECRET, api_base=standin.url)
        try:
            with pytest.raises(ProviderError, match="Invalid API Key"):
                await provider.create_checkout(checkout_request())
        finally:
            await provider.aclose()

    async def test_stripe_outage_is_a_provider_error(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        standin.fail_next_request(500)

        with pytest.raises(ProviderError, match="bad day"):
            await provider.create_checkout(checkout_request())


class TestChargeOffSession:
    async def test_saved_method_is_confirmed_off_session_and_succeeds(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        request = off_session_request()

        payment = await provider.charge_off_session(request)

        [call] = standin.requests_to("POST", "/v1/payment_intents")
        assert call.params == {
            "amount": "999",
            "currency": "eur",
            "description": "Premium renewal",
            "payment_method": "pm_card_visa",
            "customer": "cus_alice",
            "off_session": "true",
            "confirm": "true",
            "metadata": {"subscription_id": "sub-42", "payment_id": str(request.payment_id)},
            "expand": ["payment_method"],
        }
        assert call.idempotency_key == f"payment-{request.payment_id}"
        intent = standin.objects_of("payment_intent")[0]
        assert payment.status is ProviderStatus.SUCCEEDED
        assert payment.provider_ref == payment.charge_ref == intent["id"]
        assert (payment.amount, payment.currency, payment.customer_ref) == (999, "EUR", "cus_alice")
        assert payment.failure_code is None
        assert payment.hard_decline is False

    async def test_declined_charge_is_failed_with_the_decline_code(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        standin.declining_payment_methods["pm_card_insufficient"] = "insufficient_funds"

        payment = await provider.charge_off_session(
            off_session_request(payment_method_ref="pm_card_insufficient")
        )

        intent = standin.objects_of("payment_intent")[0]
        assert payment.status is ProviderStatus.FAILED
        assert payment.provider_ref == intent["id"]
        assert payment.failure_code == "insufficient_funds"
        assert payment.failure_message == "Your card was declined."
        assert payment.hard_decline is False, "insufficient funds may pass on a retry"

    @pytest.mark.parametrize(
        ("decline_code", "hard"),
        [
            ("lost_card", True),
            ("stolen_card", True),
            ("expired_card", True),
            ("invalid_account", True),
            ("processing_error", False),
            ("generic_decline", False),
        ],
    )
    async def test_a_decline_the_card_can_never_pass_is_hard_and_so_is_its_re_read(
        self, provider: StripeProvider, standin: StripeStandin, decline_code: str, hard: bool
    ) -> None:
        standin.declining_payment_methods["pm_card_gone"] = decline_code

        payment = await provider.charge_off_session(
            off_session_request(payment_method_ref="pm_card_gone")
        )
        assert payment.provider_ref is not None
        again = await provider.fetch_payment(payment.provider_ref)

        assert (payment.status, payment.failure_code) == (ProviderStatus.FAILED, decline_code)
        assert payment.hard_decline is hard
        assert (again.status, again.failure_code, again.hard_decline) == (
            ProviderStatus.FAILED,
            decline_code,
            hard,
        )

    async def test_a_charge_reports_the_card_it_was_made_with(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        standin.add_card(
            "pm_card_visa", brand="mastercard", last4="4444", exp_month=1, exp_year=2030
        )

        payment = await provider.charge_off_session(off_session_request())
        assert payment.provider_ref is not None
        again = await provider.fetch_payment(payment.provider_ref)

        card = CardSummary(brand="mastercard", last4="4444", exp_month=1, exp_year=2030)
        assert payment.card == again.card == card

    async def test_charging_the_same_payment_twice_charges_once(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        request = off_session_request()

        first = await provider.charge_off_session(request)
        again = await provider.charge_off_session(request)

        assert again == first
        assert len(standin.objects_of("payment_intent")) == 1


class TestRefund:
    async def test_refund_carries_our_ids_and_reason_under_the_refund_key(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        _, intent_id = await paid_checkout(provider, standin)
        request = RefundRequest(
            refund_id=uuid4(),
            payment_id=uuid4(),
            payment_provider_ref=intent_id,
            amount=500,
            currency="EUR",
            reason="film would not play",
        )

        refund = await provider.refund(request)

        [call] = standin.requests_to("POST", "/v1/refunds")
        assert call.params == {
            "payment_intent": intent_id,
            "amount": "500",
            "reason": "requested_by_customer",
            "metadata": {
                "refund_id": str(request.refund_id),
                "payment_id": str(request.payment_id),
                "reason": "film would not play",
            },
        }
        assert call.idempotency_key == f"refund-{request.refund_id}"
        assert refund.status is RefundStatus.SUCCEEDED
        assert refund.amount == 500
        assert refund.refund_id == request.refund_id
        assert refund.provider_ref == standin.objects_of("refund")[0]["id"]

    async def test_checkout_payment_is_refunded_through_its_payment_intent(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        session_id, intent_id = await paid_checkout(provider, standin)

        await provider.refund(refund_request(session_id))

        [call] = standin.requests_to("POST", "/v1/refunds")
        assert call.params["payment_intent"] == intent_id

    async def test_refund_still_processing_is_pending(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        _, intent_id = await paid_checkout(provider, standin)
        standin.refund_status = "pending"

        refund = await provider.refund(refund_request(intent_id))

        assert refund.status is RefundStatus.PENDING

    async def test_refund_above_the_unrefunded_amount_is_a_provider_error(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        _, intent_id = await paid_checkout(provider, standin)

        with pytest.raises(ProviderError, match="greater than the unrefunded amount"):
            await provider.refund(refund_request(intent_id, amount=5000))


def refund_request(payment_provider_ref: str, amount: int = 999) -> RefundRequest:
    return RefundRequest(
        refund_id=uuid4(),
        payment_id=uuid4(),
        payment_provider_ref=payment_provider_ref,
        amount=amount,
        currency="EUR",
    )


class TestFetchPayment:
    async def test_paid_session_is_succeeded_with_the_saved_method(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        created = await provider.create_checkout(checkout_request())
        standin.add_card("pm_saved_visa", brand="visa", last4="1881", exp_month=4, exp_year=2031)
        intent_id = standin.complete_session(created.provider_ref, payment_method="pm_saved_visa")

        payment = await provider.fetch_payment(created.provider_ref)

        assert payment.status is ProviderStatus.SUCCEEDED
        assert payment.provider_ref == created.provider_ref
        assert payment.charge_ref == intent_id
        assert payment.payment_method_ref == "pm_saved_visa"
        assert payment.customer_ref == created.customer_ref
        assert (payment.amount, payment.currency) == (999, "EUR")
        assert (payment.refunds, payment.disputed) == ((), False)
        assert payment.card == CardSummary(brand="visa", last4="1881", exp_month=4, exp_year=2031)
        [call] = standin.requests_to("GET", f"/v1/checkout/sessions/{created.provider_ref}")
        assert call.params == {
            "expand": [
                "payment_intent",
                "payment_intent.latest_charge",
                "payment_intent.payment_method",
            ]
        }

    async def test_paid_session_without_saving_has_no_method_to_remember(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        created = await provider.create_checkout(checkout_request(save_payment_method=False))
        standin.complete_session(created.provider_ref)

        payment = await provider.fetch_payment(created.provider_ref)

        assert payment.status is ProviderStatus.SUCCEEDED
        assert payment.payment_method_ref is None

    async def test_expired_session_is_expired(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        created = await provider.create_checkout(checkout_request())
        standin.expire_session(created.provider_ref)

        payment = await provider.fetch_payment(created.provider_ref)

        assert payment.status is ProviderStatus.EXPIRED
        assert (payment.amount, payment.currency) == (999, "EUR")

    async def test_open_session_is_pending(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        created = await provider.create_checkout(checkout_request())

        payment = await provider.fetch_payment(created.provider_ref)

        assert payment.status is ProviderStatus.PENDING
        assert payment.charge_ref is None
        assert payment.customer_ref == created.customer_ref

    async def test_open_session_with_a_declined_attempt_stays_pending(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        created = await provider.create_checkout(checkout_request())
        intent_id = standin.decline_session_attempt(created.provider_ref)

        by_session = await provider.fetch_payment(created.provider_ref)
        by_intent = await provider.fetch_payment(intent_id)

        assert by_session.status is ProviderStatus.PENDING
        assert by_session.failure_code == "card_declined"
        assert by_intent.status is ProviderStatus.PENDING

    async def test_session_whose_delayed_payment_failed_is_failed(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        created = await provider.create_checkout(checkout_request())
        standin.fail_async_payment(created.provider_ref)

        payment = await provider.fetch_payment(created.provider_ref)

        assert payment.status is ProviderStatus.FAILED
        assert payment.failure_code == "insufficient_funds"

    async def test_succeeded_off_session_intent_is_succeeded(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        charged = await provider.charge_off_session(off_session_request())

        assert charged.provider_ref is not None
        payment = await provider.fetch_payment(charged.provider_ref)

        assert payment.status is ProviderStatus.SUCCEEDED
        assert payment.charge_ref == charged.provider_ref
        assert payment.customer_ref == "cus_alice"

    async def test_declined_off_session_intent_is_failed(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        standin.declining_payment_methods["pm_card_declined"] = "generic_decline"
        charged = await provider.charge_off_session(
            off_session_request(payment_method_ref="pm_card_declined")
        )

        assert charged.provider_ref is not None
        payment = await provider.fetch_payment(charged.provider_ref)

        assert payment.status is ProviderStatus.FAILED
        assert payment.failure_code == "generic_decline"

    async def test_refunds_are_listed_with_our_refund_ids(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        session_id, intent_id = await paid_checkout(provider, standin)
        partial = await provider.refund(refund_request(intent_id, amount=300))

        payment = await provider.fetch_payment(session_id)

        assert payment.refunds == (partial,)
        [call] = standin.requests_to("GET", "/v1/refunds")
        assert call.params["payment_intent"] == intent_id

    async def test_disputed_payment_reports_the_reason_amount_and_dispute(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        session_id, intent_id = await paid_checkout(provider, standin)
        dispute_id = standin.add_dispute(intent_id, reason="product_not_received")

        payment = await provider.fetch_payment(session_id)

        assert payment.disputed is True
        assert payment.dispute_reason == "product_not_received"
        assert (payment.dispute_amount, payment.dispute_ref) == (payment.amount, dispute_id)

    async def test_unknown_session_is_a_provider_error(self, provider: StripeProvider) -> None:
        with pytest.raises(ProviderError, match="No such object"):
            await provider.fetch_payment("cs_test_missing")

    async def test_reference_of_another_kind_is_a_provider_error(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        with pytest.raises(ProviderError, match="not a Stripe payment reference"):
            await provider.fetch_payment("sandbox_123")
        assert standin.requests == []


def signed(body: bytes, *, secret: str = WEBHOOK_SECRET, age: int = 0) -> dict[str, str]:
    return {"Stripe-Signature": sign_webhook(body, secret, int(time.time()) - age)}

    async def test_completed_setup_session_is_succeeded_with_the_setup_intents_method(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        created = await provider.create_checkout(checkout_request(amount=0))
        setup_id = standin.complete_setup_session(
            created.provider_ref, payment_method="pm_trial_visa"
        )

        payment = await provider.fetch_payment(created.provider_ref)

        assert payment.status is ProviderStatus.SUCCEEDED
        assert (payment.amount, payment.currency) == (0, "EUR")
        assert payment.payment_method_ref == "pm_trial_visa"
        assert payment.charge_ref is None  # nothing was charged, nothing to refund
        assert payment.customer_ref == created.customer_ref
        assert len(standin.requests_to("GET", f"/v1/setup_intents/{setup_id}")) == 1

    @pytest.mark.parametrize(
        ("expire", "status"), [(False, ProviderStatus.PENDING), (True, ProviderStatus.EXPIRED)]
    )
    async def test_setup_session_not_completed_is_pending_then_expired(
        self, provider: StripeProvider, standin: StripeStandin, expire: bool, status: ProviderStatus
    ) -> None:
        created = await provider.create_checkout(checkout_request(amount=0))
        if expire:
            standin.expire_session(created.provider_ref)

        payment = await provider.fetch_payment(created.provider_ref)

        assert (payment.status, payment.amount, payment.payment_method_ref) == (status, 0, None)


class TestParseWebhook:
    async def test_completed_checkout_gives_our_payment_id_and_the_session(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        request = checkout_request()
        created = await provider.create_checkout(request)
        standin.complete_session(created.provider_ref)
        body = webhook_body(
            "checkout.session.completed", standin.object(created.provider_ref), event_id="evt_1"
        )

        notice = provider.parse_webhook(body, signed(body))

        assert notice.event_id == "evt_1"
        assert notice.event_type == "checkout.session.completed"
        assert notice.payment_id == request.payment_id
        assert notice.provider_ref == created.provider_ref
        assert notice.relevant is True

    async def test_completed_setup_session_gives_our_payment_id_and_the_session(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        request = checkout_request(amount=0)
        created = await provider.create_checkout(request)
        standin.complete_setup_session(created.provider_ref)
        session = standin.object(created.provider_ref)
        assert session["setup_intent"] and session["payment_intent"] is None
        body = webhook_body("checkout.session.completed", session, event_id="evt_setup")

        notice = provider.parse_webhook(body, signed(body))

        assert notice.payment_id == request.payment_id
        assert notice.provider_ref == created.provider_ref
        assert notice.relevant is True

    async def test_failed_intent_gives_our_payment_id_and_the_intent(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        request = checkout_request()
        created = await provider.create_checkout(request)
        intent_id = standin.decline_session_attempt(created.provider_ref)
        body = webhook_body("payment_intent.payment_failed", standin.object(intent_id))

        notice = provider.parse_webhook(body, signed(body))

        assert (notice.payment_id, notice.provider_ref) == (request.payment_id, intent_id)

    async def test_refund_update_points_at_the_payment_intent(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        _, intent_id = await paid_checkout(provider, standin)
        refund = await provider.refund(refund_request(intent_id))
        body = webhook_body("refund.updated", standin.object(refund.provider_ref))

        notice = provider.parse_webhook(body, signed(body))

        assert notice.relevant is True
        assert notice.provider_ref == intent_id

    async def test_dispute_points_at_the_payment_intent(
        self, provider: StripeProvider, standin: StripeStandin
    ) -> None:
        _, intent_id = await paid_checkout(provider, standin)
        dispute_id = standin.add_dispute(intent_id)
        body = webhook_body("charge.dispute.created", standin.object(dispute_id))

        notice = provider.parse_webhook(body, signed(body))

        assert (notice.provider_ref, notice.payment_id) == (intent_id, None)

    def test_signature_header_is_found_whatever_its_case(self, provider: StripeProvider) -> None:
        body = webhook_body("checkout.session.expired", {"id": "cs_test_1", "metadata": {}})

        notice = provider.parse_webhook(
            body, {"stripe-signature": signed(body)["Stripe-Signature"]}
        )

        assert notice.provider_ref == "cs_test_1"

    def test_signature_299_seconds_old_is_accepted(self, provider: StripeProvider) -> None:
        body = webhook_body("checkout.session.expired", {"id": "cs_test_1", "metadata": {}})

        assert provider.parse_webhook(body, signed(body, age=299)).relevant is True

    def test_irrelevant_event_type_is_marked_not_relevant(self, provider: StripeProvider) -> None:
        body = webhook_body("customer.updated", {"id": "cus_1", "object": "customer"})

        notice = provider.parse_webhook(body, signed(body))

        assert notice.relevant is False
        assert (notice.payment_id, notice.provider_ref) == (None, None)

    def test_forged_signature_is_rejected(self, provider: StripeProvider) -> None:
        body = webhook_body("checkout.session.completed", {"id": "cs_test_1"})
        forged = webhook_body("checkout.session.completed", {"id": "cs_test_forged"})

        with pytest.raises(InvalidWebhook, match="signature"):
            provider.parse_webhook(forged, signed(body))

    def test_signature_with_another_secret_is_rejected(self, provider: StripeProvider) -> None:
        body = webhook_body("checkout.session.completed", {"id": "cs_test_1"})

        with pytest.raises(InvalidWebhook, match="signature"):
            provider.parse_webhook(body, signed(body, secret="whsec_someone_else"))

    def test_signature_301_seconds_old_is_rejected(self, provider: StripeProvider) -> None:
        body = webhook_body("checkout.session.completed", {"id": "cs_test_1"})

        with pytest.raises(InvalidWebhook, match="tolerance"):
            provider.parse_webhook(body, signed(body, age=301))

    def test_missing_signature_header_is_rejected(self, provider: StripeProvider) -> None:
        body = webhook_body("checkout.session.completed", {"id": "cs_test_1"})

        with pytest.raises(InvalidWebhook, match="missing Stripe-Signature"):
            provider.parse_webhook(body, {"Content-Type": "application/json"})

    def test_malformed_signature_header_is_rejected(self, provider: StripeProvider) -> None:
        body = webhook_body("checkout.session.completed", {"id": "cs_test_1"})

        with pytest.raises(InvalidWebhook, match="signature"):
            provider.parse_webhook(body, {"Stripe-Signature": "v1=abc"})

    def test_signed_body_that_is_not_json_is_rejected(self, provider: StripeProvider) -> None:
        body = b"<html>not an event</html>"

        with pytest.raises(InvalidWebhook, match="not a Stripe event"):
            provider.parse_webhook(body, signed(body))

    def test_signed_body_that_is_not_utf8_is_rejected(self, provider: StripeProvider) -> None:
        body = b"\xff\xfe{}"

        with pytest.raises(InvalidWebhook, match="UTF-8"):
            provider.parse_webhook(body, signed(body))
