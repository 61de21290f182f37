"""The wrapper every adapter is handed out in hands every member of the provider protocol to
the adapter itself: none falls back to the protocol's default behind the adapter's back."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import pytest

from payment_gateway.providers import base
from payment_gateway.providers.guard import GuardedProvider
from payment_gateway.providers.registry import Providers


def protocol_members() -> set[str]:
    return {
        name
        for name, member in vars(base.PaymentProvider).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }


class Picky(base.PaymentProvider):
    """An adapter with its own sender check and its own read of one refund."""

    name = "picky"

    def verify_source(self, peer: str | None, headers: Mapping[str, str]) -> None:
        if peer != "10.0.0.1":
            raise base.WebhookSourceRefused(f"{peer} is not ours")

    async def fetch_refund(
        self, payment_provider_ref: str, refund_ref: str
    ) -> base.ProviderRefund | None:
        return base.ProviderRefund(
            provider_ref=refund_ref, amount=100, status=base.RefundStatus.SUCCEEDED
        )


class Broken(base.PaymentProvider):
    name = "broken"

    def verify_source(self, peer: str | None, headers: Mapping[str, str]) -> None:
        raise ValueError("allow-list not loaded")

    async def fetch_payment(self, provider_ref: str) -> base.ProviderPayment:
        return {"id": provider_ref}  # type: ignore[return-value]  # a dict, not a payment


def providers() -> Providers:
    return Providers(
        default="picky",
        by_name={"picky": Picky(), "broken": Broken()},  # type: ignore[abstract]
    )


def test_every_member_of_the_protocol_is_the_adapters_own() -> None:
    inherited = protocol_members() - set(vars(GuardedProvider))
    assert inherited == set(), f"GuardedProvider must hand these to the adapter: {inherited}"


def test_a_sender_the_adapter_refuses_is_refused() -> None:
    picky = providers().get("picky")

    picky.verify_source("10.0.0.1", {})
    with pytest.raises(base.WebhookSourceRefused):
        picky.verify_source("203.0.113.9", {})


def test_a_sender_check_that_fails_refuses_the_webhook() -> None:
    with pytest.raises(base.WebhookSourceRefused):
        providers().get("broken").verify_source("10.0.0.1", {})


async def test_a_refund_is_read_by_the_adapters_own_method() -> None:
    refund = await providers().get("picky").fetch_refund("pay_1", "re_1")

    assert refund is not None
    assert (refund.provider_ref, refund.status) == ("re_1", base.RefundStatus.SUCCEEDED)


async def test_an_answer_of_the_wrong_shape_is_unreadable_not_a_crash() -> None:
    with pytest.raises(base.ProviderAnswerUnreadable):
        await providers().get("broken").fetch_payment("pay_1")
