"""The words a receipt prints, in Russian and English."""

# ruff: noqa: RUF001 - Russian words are written in Cyrillic

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Labels:
    payment_title: str
    refund_title: str
    issued: str
    seller_heading: str
    seller: str
    tax_id: str
    address: str
    support: str
    buyer_heading: str
    email: str
    customer_id: str
    item: str
    quantity: str
    price: str
    discount: str
    amount: str
    total: str
    paid_with: str
    wallet: str
    card: str
    credit: str
    refers_to: str
    rule: str
    reason: str
    months: Callable[[int], str]
    vat: Callable[[int], str]


def _ru_months(count: int) -> str:
    if count % 10 == 1 and count % 100 != 11:
        word = "месяц"
    elif count % 10 in (2, 3, 4) and count % 100 not in (12, 13, 14):
        word = "месяца"
    else:
        word = "месяцев"
    return f"{count} {word}"


LABELS: Final = {
    "ru": Labels(
        payment_title="Чек",
        refund_title="Чек возврата",
        issued="Дата",
        seller_heading="Продавец",
        seller="Наименование",
        tax_id="ИНН",
        address="Адрес",
        support="Поддержка",
        buyer_heading="Покупатель",
        email="Эл. почта",
        customer_id="ID клиента",
        item="Наименование",
        quantity="Кол-во",
        price="Цена",
        discount="Скидка",
        amount="Сумма",
        total="Итого",
        paid_with="Способ оплаты",
        wallet="Кошелёк",
        card="Карта",
        credit="зачёт неиспользованного периода",
        refers_to="К чеку",
        rule="Основание",
        reason="Причина",
        months=_ru_months,
        vat=lambda percent: f"В т.ч. НДС {percent}%",
    ),
    "en": Labels(
        payment_title="Receipt",
        refund_title="Refund receipt",
        issued="Date",
        seller_heading="Seller",
        seller="Name",
        tax_id="Tax ID",
        address="Address",
        support="Support",
        buyer_heading="Buyer",
        email="Email",
        customer_id="Customer ID",
        item="Item",
        quantity="Qty",
        price="Price",
        discount="Discount",
        amount="Amount",
        total="Total",
        paid_with="Paid with",
        wallet="Wallet",
        card="Card",
        credit="credit for the unused period",
        refers_to="Refers to receipt",
        rule="Rule",
        reason="Reason",
        months=lambda count: f"{count} month" if count == 1 else f"{count} months",
        vat=lambda percent: f"Incl. VAT {percent}%",
    ),
}
