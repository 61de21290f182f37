"""YooKassa's payments and notifications read in the gateway's terms: states, declines (hard
ones stop dunning), amounts, and the notice a notification reduces to."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest

from payment_gateway.providers.base import InvalidWebhook, ProviderStatus
from payment_gateway.providers.yookassa_mapping import (
    amount_of,
    parse_notification,
    payment_snapshot,
)


def payment(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "2d5ab1f4-000f-5000-a000-1c2d3e4f5a6b",
        "status": status,
        "amount": {"value": "1527.45", "currency": "RUB"},
        **extra,
    }


class TestPaymentSnapshot:
    @pytest.mark.parametrize(
        ("status", "details", "expected"),
        [
            ("pending", None, ProviderStatus.PENDING),
            ("waiting_for_capture", None, ProviderStatus.PENDING),
            ("succeeded", None, ProviderStatus.SUCCEEDED),
            (
                "canceled",
                {"party": "payment_network", "reason": "general_decline"},
                ProviderStatus.FAILED,
            ),
            (
                "canceled",
                {"party": "yoo_money", "reason": "expired_on_confirmation"},
                ProviderStatus.EXPIRED,
            ),
        ],
    )
    def test_states(
        self, status: str, details: dict[str, str] | None, expected: ProviderStatus
    ) -> None:
        extra = {"cancellation_details": details} if details else {}
        assert payment_snapshot(payment(status, **extra)).status is expected

    @pytest.mark.parametrize(
        ("reason", "code", "hard"),
        [
            ("insufficient_funds", "insufficient_funds", False),
            ("general_decline", "generic_decline", False),
            ("issuer_unavailable", "issuer_not_available", False),
            ("payment_method_limit_exceeded", "card_velocity_exceeded", False),
            ("fraud_suspected", "fraudulent", False),
            ("3d_secure_failed", "3d_secure_failed", False),
            ("card_expired", "expired_card", True),
            ("invalid_card_number", "incorrect_number", True),
            ("payment_method_restricted", "restricted_card", True),
            ("country_forbidden", "transaction_not_allowed", True),
            ("permission_revoked", "revocation_of_authorization", True),
            ("unsupported_mobile_operator", "unsupported_mobile_operator", True),
        ],
    )
    def test_declines_in_the_suites_codes(self, reason: str, code: str, hard: bool) -> None:
        snapshot = payment_snapshot(
            payment("canceled", cancellation_details={"party": "payment_network", "reason": reason})
        )

        assert (snapshot.failure_code, snapshot.hard_decline) == (code, hard)
        assert reason in (snapshot.failure_message or "")

    def test_only_a_saved_method_of_a_succeeded_payment_is_kept(self) -> None:
        method = {
            "id": "pm-1",
            "saved": True,
            "card": {
                "last4": "4477",
                "card_type": "MasterCard",
                "expiry_month": "12",
                "expiry_year": "2029",
            },
        }

        paid = payment_snapshot(payment("succeeded", payment_method=method))
        unsaved = payment_snapshot(payment("succeeded", payment_method={**method, "saved": False}))

        assert paid.payment_method_ref == "pm-1"
        assert unsaved.payment_method_ref is None
        assert paid.card is not None
        assert (paid.card.brand, paid.card.last4, paid.card.exp_year) == (
            "mastercard",
            "4477",
            2029,
        )
        assert (paid.amount, paid.currency, paid.charge_ref) == (152745, "RUB", paid.provider_ref)

    def test_minor_units_become_yookassas_decimal_strings(self) -> None:
        assert amount_of(152745, "RUB") == {"value": "1527.45", "currency": "RUB"}
        assert amount_of(500, "JPY") == {"value": "500", "currency": "JPY"}


class TestNotifications:
    def test_a_payment_event_names_the_payment_and_ours(self) -> None:
        ours = uuid4()
        body = {
            "type": "notification",
            "event": "payment.succeeded",
            "object": payment("succeeded", metadata={"payment_id": str(ours)}),
        }

        notice = parse_notification(json.dumps(body).encode())

        assert notice.event_id == "payment.succeeded:2d5ab1f4-000f-5000-a000-1c2d3e4f5a6b"
        assert (notice.payment_id, notice.provider_ref, notice.relevant) == (
            ours,
            "2d5ab1f4-000f-5000-a000-1c2d3e4f5a6b",
            True,
        )

    def test_a_refund_event_names_its_payment(self) -> None:
        body = {
            "type": "notification",
            "event": "refund.succeeded",
            "object": {"id": "rf-1", "payment_id": "pay-1", "status": "succeeded"},
        }

        notice = parse_notification(json.dumps(body).encode())

        assert (notice.event_id, notice.provider_ref, notice.payment_id) == (
            "refund.succeeded:rf-1",
            "pay-1",
            None,
        )

    def test_other_events_are_kept_but_not_acted_on(self) -> None:
        body = {"type": "notification", "event": "payout.succeeded", "object": {"id": "po-1"}}

        assert parse_notification(json.dumps(body).encode()).relevant is False

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"[]",
            b'{"event": "payment.succeeded"}',
            b'{"event": 1, "object": {"id": "x"}}',
        ],
        ids=["garbage", "list", "no-object", "bad-event"],
    )
    def test_a_body_that_is_not_a_notification_is_refused(self, body: bytes) -> None:
        with pytest.raises(InvalidWebhook):
            parse_notification(body)
