"""Which providers this gateway serves, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from payment_gateway.providers.base import PaymentProvider
from shared.errors import NotFound


class UnknownProvider(NotFound):
    default_detail = "no such payment provider"


@dataclass
class Providers:
    default: str
    by_name: dict[str, PaymentProvider] = field(default_factory=dict)

    def get(self, name: str) -> PaymentProvider:
        try:
            return self.by_name[name]
        except KeyError:
            raise UnknownProvider(f"provider {name!r} is not enabled") from None

    @property
    def for_new_payments(self) -> PaymentProvider:
        return self.get(self.default)
