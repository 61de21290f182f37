from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared import clock, events
from shared.money import Money

DESIGNED_TYPES = {
    "payment.succeeded",
    "payment.failed",
    "payment.expired",
    "payment.disputed",
    "refund.succeeded",
    "refund.failed",
    "subscription.activated",
    "subscription.renewed",
    "subscription.renewal_failed",
    "subscription.expiring",
    "subscription.grace_started",
    "subscription.expired",
    "subscription.canceled",
    "purchase.completed",
    "refund.completed",
    "wallet.topped_up",
    "entitlements.changed",
    "plan.changed",
}
# Added beyond the design's first list (fields and types are only ever added): plan changes,
# and the second round's retention events (design section 11) with the gateway's 3-D Secure one.
ADDED_TYPES = {
    "subscription.plan_changed",
    "subscription.payment_action_required",
    "subscription.payment_method_required",
    "payment_method.expiring",
    "subscription.paused",
    "subscription.resumed",
    "payment.action_required",
    "household.invited",
    "household.joined",
    "household.removed",
    "gift.purchased",
    "gift.delivered",
    "gift.redeemed",
    "gift.expiring",
}


def succeeded() -> events.PaymentSucceeded:
    return events.PaymentSucceeded(
        payment_id=uuid4(),
        customer=events.Customer(id=uuid4(), email="a@example.com"),
        amount=Money(amount=29900, currency="RUB"),
        provider="sandbox",
        provider_ref="ss_1",
        payment_method_ref="pm_1",
    )


class TestRegistry:
    def test_every_event_type_of_the_design_has_a_payload_model(self) -> None:
        assert set(events.event_types()) == DESIGNED_TYPES | ADDED_TYPES

    def test_payloads_are_frozen(self) -> None:
        payload = succeeded()
        with pytest.raises(ValidationError):
            payload.provider = "stripe"  # type: ignore[misc]


class TestRoundTrip:
    def test_encoded_envelope_decodes_to_the_same_typed_payload(self) -> None:
        with clock.frozen(datetime(2026, 11, 24, 12, 0, tzinfo=UTC)):
            envelope = events.wrap(succeeded(), producer="payment_gateway", correlation_id="r1")

        decoded = events.decode(events.encode(envelope))

        assert isinstance(decoded.data, events.PaymentSucceeded)
        assert decoded == envelope
        assert decoded.type == "payment.succeeded"
        assert decoded.version == 1
        assert decoded.occurred_at == datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def test_unknown_event_type_is_refused(self) -> None:
        with pytest.raises(events.UnknownEventType):
            events.decode(b'{"type": "payment.teleported", "data": {}}')

    def test_fields_added_by_a_newer_producer_are_ignored(self) -> None:
        envelope = events.wrap(succeeded(), producer="payment_gateway")
        raw = envelope.model_dump(mode="json")
        raw["data"]["installments"] = 3
        assert events.decode(orjson.dumps(raw)).data == envelope.data

    def test_amounts_in_events_are_strict_integers(self) -> None:
        raw = events.wrap(succeeded(), producer="payment_gateway").model_dump(mode="json")
        raw["data"]["amount"]["amount"] = 299.0
        with pytest.raises(ValidationError):
            events.decode(orjson.dumps(raw))

    @given(email=st.text(), description=st.text(), metadata=st.dictionaries(st.text(), st.text()))
    def test_encoding_is_byte_for_byte_what_consumers_always_received(
        self, email: str, description: str, metadata: dict[str, str]
    ) -> None:
        """The one-pass encoder writes the bytes the dict-then-orjson path wrote (quotes, control
        characters, any Unicode), so stored and published events look as they always did."""
        payload = events.PaymentSucceeded(
            payment_id=uuid4(),
            customer=events.Customer(id=uuid4(), email=email),
            amount=Money(amount=29900, currency="RUB"),
            provider=description,
            metadata=metadata,
        )
        envelope = events.wrap(payload, producer="payment_gateway", correlation_id=description)

        encoded = events.encode(envelope)

        assert encoded == orjson.dumps(envelope.model_dump(mode="json"))
        assert events.decode(encoded) == envelope
