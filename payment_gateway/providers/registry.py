"""Which providers this gateway serves, built once from settings, and which one a payment goes to.

A new checkout goes to the provider its currency is routed to (``GATEWAY_PROVIDER_ROUTES``,
e.g. ``RUB=yookassa,*=stripe``), or to the default provider (``GATEWAY_PROVIDER``). Everything
that follows a payment stays with the provider that took it: its refunds and status reads go to
``payment.provider``, and an off-session charge goes to the provider that saved the card
(:func:`payment_gateway.payments.service.provider_for_charge`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from payment_gateway.providers.base import PaymentProvider
from shared.errors import NotFound

ANY_CURRENCY = "*"


class UnknownProvider(NotFound):
    default_detail = "no such payment provider"


@dataclass
class Providers:
    default: str
    by_name: dict[str, PaymentProvider] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)  # currency (or "*") -> provider

    def get(self, name: str) -> PaymentProvider:
        try:
            return self.by_name[name]
        except KeyError:
            raise UnknownProvider(f"provider {name!r} is not enabled") from None

    @property
    def for_new_payments(self) -> PaymentProvider:
        """The default provider: for a payment whose currency no route names."""
        return self.get(self.default)

    def for_currency(self, currency: str) -> PaymentProvider:
        """Where a new checkout in ``currency`` goes."""
        name = self.routes.get(currency.upper()) or self.routes.get(ANY_CURRENCY) or self.default
        return self.get(name)
