"""Which providers this gateway serves, built once from settings.

Every adapter handed out here is wrapped in :class:`~.guard.GuardedProvider`: its calls that
may move money are recorded before they are made, and whatever it raises that is not a
:class:`~.base.ProviderError` arrives as one (:class:`~.base.ProviderAnswerUnreadable`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from payment_gateway.providers.base import Customer, PaymentProvider
from payment_gateway.providers.calls import ProviderCalls
from payment_gateway.providers.guard import guard
from shared.errors import NotFound


class UnknownProvider(NotFound):
    default_detail = "no such payment provider"


@dataclass
class Providers:
    default: str
    by_name: dict[str, PaymentProvider] = field(default_factory=dict)
    # Where calls are recorded and new customers kept; None records nothing (a bare registry).
    calls: ProviderCalls | None = None

    def get(self, name: str) -> PaymentProvider:
        try:
            provider = self.by_name[name]
        except KeyError:
            raise UnknownProvider(f"provider {name!r} is not enabled") from None
        return guard(provider, self.calls)

    @property
    def for_new_payments(self) -> PaymentProvider:
        return self.get(self.default)

    async def create_customer(self, name: str, customer: Customer) -> str | None:
        """The user's new customer at provider ``name`` (None when it keeps no customers),
        kept in our database, committed, before anything else is asked of the provider."""
        customer_ref = await self.get(name).create_customer(customer)
        if customer_ref is None or self.calls is None:
            return customer_ref
        return await self.calls.keep_customer(name, customer.id, customer_ref)
