"""Which providers this gateway serves, built once from settings, and which one a payment goes to.

A new checkout goes to the provider its currency is routed to (``GATEWAY_PROVIDER_ROUTES``,
e.g. ``RUB=yookassa,*=stripe``), or to the default provider (``GATEWAY_PROVIDER``). Everything
that follows a payment stays with the provider that took it: its refunds and status reads go to
``payment.provider``, and an off-session charge goes to the provider that saved the card
(:func:`payment_gateway.payments.service.provider_for_charge`).

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

ANY_CURRENCY = "*"


class UnknownProvider(NotFound):
    default_detail = "no such payment provider"


@dataclass
class Providers:
    default: str
    by_name: dict[str, PaymentProvider] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)  # currency (or "*") -> provider
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
        """The default provider: for a payment whose currency no route names."""
        return self.get(self.default)

    def for_currency(self, currency: str) -> PaymentProvider:
        """Where a new checkout in ``currency`` goes."""
        name = self.routes.get(currency.upper()) or self.routes.get(ANY_CURRENCY) or self.default
        return self.get(name)

    async def create_customer(self, name: str, customer: Customer) -> str | None:
        """The user's new customer at provider ``name`` (None when it keeps no customers),
        kept in our database, committed, before anything else is asked of the provider."""
        customer_ref = await self.get(name).create_customer(customer)
        if customer_ref is None or self.calls is None:
            return customer_ref
        return await self.calls.keep_customer(name, customer.id, customer_ref)
