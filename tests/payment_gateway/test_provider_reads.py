"""A provider that reads one object per request (Stripe) is read several at a time in a batch,
never more than ``FETCH_CONCURRENCY`` at once, and its error reaches the processor."""

from __future__ import annotations

import asyncio

import pytest

from payment_gateway.providers import base
from payment_gateway.providers.base import ProviderPayment, ProviderStatus


class OnePerRequest(base.PaymentProvider):
    """The provider's side only: answers each read after a moment, counting reads in flight."""

    name = "one-per-request"

    def __init__(self, *, failing: str | None = None) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.reads: list[str] = []
        self.failing = failing

    async def fetch_payment(self, provider_ref: str) -> ProviderPayment:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            self.reads.append(provider_ref)
            if provider_ref == self.failing:
                raise base.ProviderError("provider unavailable")
            return ProviderPayment(provider_ref, ProviderStatus.SUCCEEDED, 1000, "RUB")
        finally:
            self.in_flight -= 1


async def test_a_batch_is_read_several_at_a_time_each_reference_once() -> None:
    provider = OnePerRequest()  # type: ignore[abstract]  # only reads are used
    refs = [f"pi_{n}" for n in range(30)]

    found = await provider.fetch_payments([*refs, "pi_3", "pi_3"])

    assert sorted(found) == sorted(refs)
    assert all(found[ref].provider_ref == ref for ref in refs)
    assert sorted(provider.reads) == sorted(refs)  # a repeated reference is read once
    assert 1 < provider.most_in_flight <= base.FETCH_CONCURRENCY


async def test_a_failed_read_fails_the_batch_read() -> None:
    provider = OnePerRequest(failing="pi_5")  # type: ignore[abstract]

    with pytest.raises(base.ProviderError):
        await provider.fetch_payments([f"pi_{n}" for n in range(10)])
