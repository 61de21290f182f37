"""54-FZ receipts for YooKassa: the ``receipt`` object sent with a payment or a refund.

Russian law (Federal Law 54-FZ) wants a fiscal receipt for every payment and every refund,
listing what was paid for. YooKassa registers it with the merchant's online cash register when
the request carries a ``receipt``: the customer's email, the items (``description``,
``quantity``, ``amount`` per unit, ``vat_code``, ``payment_subject``, ``payment_mode``) and,
when the merchant's registration asks for it, the ``tax_system_code``. YooKassa refuses a
receipt whose items do not add up to the amount exactly.

The items come from billing's order lines. They may not add up to the amount: a discount given
on the whole order, or a partial refund of an order of several lines. The amount is then spread
over the lines in proportion to their totals, in whole minor units (largest remainders first),
so the items add up to the amount to the kopeck. A line of several units whose total does not
divide by its quantity becomes two items (some units a kopeck dearer), since an item states a
price per unit. With no lines at all, the receipt has one item: the payment's description.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from payment_gateway.providers.base import OrderLine, ProviderError
from payment_gateway.providers.yookassa_mapping import amount_of

DESCRIPTION_LIMIT = 128  # YooKassa's limit for an item's description


@dataclass(frozen=True)
class ReceiptRules:
    """What the merchant's accountant chose for the receipts (see the settings)."""

    vat_code: int = 1
    tax_system_code: int | None = None
    payment_subject: str = "service"
    payment_mode: str = "full_payment"


def spread(totals: Sequence[int], amount: int) -> list[int]:
    """``amount`` shared among lines in proportion to their ``totals``, adding up exactly.

    Each line gets the floor of its share; the minor units left go one each to the lines with
    the largest remainders (the earlier line first on a tie). Lines that total nothing get
    nothing unless every line totals nothing (then the first takes it all).
    """
    if not totals:
        return []
    whole = sum(totals)
    if whole <= 0:
        return [amount, *([0] * (len(totals) - 1))]
    shares = [amount * total // whole for total in totals]
    remainders = [amount * total % whole for total in totals]
    left = amount - sum(shares)
    for index in sorted(range(len(totals)), key=lambda i: (-remainders[i], i))[:left]:
        shares[index] += 1
    return shares


def _items_of(line: OrderLine, total: int, currency: str, rules: ReceiptRules) -> list[Any]:
    base = {
        "description": line.description[:DESCRIPTION_LIMIT],
        "vat_code": rules.vat_code,
        "payment_subject": line.payment_subject or rules.payment_subject,
        "payment_mode": line.payment_mode or rules.payment_mode,
    }
    quantity = max(line.quantity, 1)
    unit, dearer = divmod(total, quantity)
    groups = [(quantity - dearer, unit), (dearer, unit + 1)]
    return [
        {**base, "quantity": str(count), "amount": amount_of(price, currency)}
        for count, price in groups
        if count
    ]


def build_receipt(
    lines: Sequence[OrderLine],
    *,
    amount: int,
    currency: str,
    email: str | None,
    fallback_description: str,
    rules: ReceiptRules,
) -> dict[str, Any]:
    """The ``receipt`` of a payment or refund of ``amount``; raises ProviderError without an
    email (YooKassa needs somewhere to send the receipt)."""
    if not email:
        raise ProviderError("a 54-FZ receipt needs the customer's email")
    lines = [line for line in lines if line.amount >= 0] or [
        OrderLine(description=fallback_description or "Payment", amount=amount)
    ]
    totals = spread([line.amount for line in lines], amount)
    items = [
        item
        for line, total in zip(lines, totals, strict=True)
        if total > 0
        for item in _items_of(line, total, currency, rules)
    ]
    receipt: dict[str, Any] = {"customer": {"email": email}, "items": items}
    if rules.tax_system_code is not None:
        receipt["tax_system_code"] = rules.tax_system_code
    return receipt
