"""A provider that reads or charges one object per request (Stripe) is asked several at a time in
a batch, never more than ``FETCH_CONCURRENCY`` at once; its errors reach the caller."""

from __future__ import annotations

import asyncio
import uuid

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

    async def charge_off_session(self, request: base.OffSessionRequest) -> ProviderPayment:
        return await self.fetch_payment(f"pi_{request.payment_id}")

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


async def test_renewals_charged_in_bulk_are_charged_several_at_a_time_each_answered() -> None:
    ids = [uuid.uuid4() for _ in range(20)]
    provider = OnePerRequest(failing=f"pi_{ids[7]}")  # type: ignore[abstract]
    customer = base.Customer(id=uuid.uuid4(), email=None)
    requests = [base.OffSessionRequest(id, customer, 29900, "RUB", "renewal", "pm_1") for id in ids]

    answers = await provider.charge_off_session_many(requests)

    assert isinstance(answers[7], base.ProviderError)  # only that charge could not be made
    assert [a.provider_ref for a in answers if isinstance(a, ProviderPayment)] == [
        f"pi_{id}" for n, id in enumerate(ids) if n != 7
    ]
    assert 1 < provider.most_in_flight <= base.FETCH_CONCURRENCY
