# ruff: noqa: RUF001 (Russian phrases are written in Cyrillic on purpose)
"""Every word of the gateway's pages for people, in Russian and in English.

The hosted checkout, the 3-D Secure confirmation pages (the sandbox's and Stripe's) say nothing
that is not here: a template asks for a phrase by its key (``say("pay", amount=…)``), so a page
can never mix languages and a phrase missing in one language fails the phrase-table test, not a
customer. The decline reasons are worded by failure code, as Stripe words them in English; the
JSON answers keep the English ``failure_message`` (programs read it, not people).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# The test cards the checkout page lists, each with its phrase (what the card does).
TEST_CARDS: Final = (
    ("4242 4242 4242 4242", "card_succeeds"),
    ("4000 0000 0000 0002", "card_declined_note"),
    ("4000 0000 0000 9995", "card_insufficient_note"),
    ("4000 0000 0000 0341", "card_fails_later_note"),
    ("4000 0999 0000 0013 / 4000 0999 0000 0021", "card_lost_expired_later_note"),
    ("4000 0027 6000 3184", "card_asks_later_note"),
)

PHRASES: Final[Mapping[str, Mapping[str, str]]] = {
    "ru": {
        "sandbox_badge": "ПЕСОЧНИЦА — настоящие деньги не списываются",
        "save_card": "Сохранить карту",
        "save_card_headline": "Сохранение карты — сегодня ничего не списывается",
        "card_saved": "Карта сохранена, ничего не списано.",
        "pay_title": "Оплата {amount}",
        "pay": "Оплатить {amount}",
        "paid": "Платёж прошёл.",
        "return": "Вернуться в кинотеатр",
        "cancel": "Отменить и вернуться",
        "expired": "Время на оплату истекло.",
        "card_number": "Номер карты",
        "expiry": "Срок действия",
        "expiry_placeholder": "ММ / ГГ",
        "cvc": "CVC",
        "test_cards": "Тестовые карты",
        "card_succeeds": "оплачивается",
        "card_declined_note": "отклоняется",
        "card_insufficient_note": "недостаточно средств",
        "card_fails_later_note": "сохраняется, но следующие продления не проходят",
        "card_lost_expired_later_note": (
            "(только в песочнице) сохраняются, но следующие продления отклоняются:"
            " карта утеряна / истёк срок"
        ),
        "card_asks_later_note": "сохраняется; следующие продления просят подтверждения",
        "unknown_card": "Песочница принимает только тестовые карты: их список ниже.",
        "invalid_expiry": (
            "Срок действия — это месяц от 1 до 12 и год, например 12 / 30 (ММ / ГГ)."
        ),
        "declined": "Карта отклонена.",
        "insufficient_funds": "На карте недостаточно средств.",
        "processing_error": "При обработке карты произошла ошибка.",
        "expired_card": "Срок действия карты истёк.",
        "payment_method_not_found": "Сохранённая карта не найдена.",
        "confirm_title": "Подтверждение платежа",
        "confirm_heading": "Подтвердите платёж в своём банке",
        "confirm_asked": "Банк просит подтвердить списание за продление (3-D Secure).",
        "confirm": "Подтвердить {amount}",
        "fail_authentication": "Не проходить проверку",
        "confirmed": "Платёж подтверждён. Страницу можно закрыть.",
        "refused": "Вы отказались от платежа, ничего не списано.",
        "not_confirmed_in_time": (
            "Этот платёж больше нельзя подтвердить: его не подтвердили вовремя."
        ),
        "no_longer_confirmable": "Этот платёж больше нельзя подтвердить.",
        "unknown_payment": "Неизвестный платёж",
        "no_such_payment": "Такого платежа нет.",
        "no_publishable_key": "Подтверждение недоступно: не задан публикуемый ключ Stripe.",
    },
    "en": {
        "sandbox_badge": "SANDBOX — no real money moves",
        "save_card": "Save card",
        "save_card_headline": "Save card — nothing is charged today",
        "card_saved": "The card is saved; nothing was charged.",
        "pay_title": "Pay {amount}",
        "pay": "Pay {amount}",
        "paid": "This payment is complete.",
        "return": "Return to the cinema",
        "cancel": "Cancel and return",
        "expired": "This checkout has expired.",
        "card_number": "Card number",
        "expiry": "Expiry",
        "expiry_placeholder": "MM / YY",
        "cvc": "CVC",
        "test_cards": "Test cards",
        "card_succeeds": "succeeds",
        "card_declined_note": "is declined",
        "card_insufficient_note": "has insufficient funds",
        "card_fails_later_note": "saves but later renewals fail",
        "card_lost_expired_later_note": (
            "(sandbox-only) save but later renewals are declined as a lost / expired card"
        ),
        "card_asks_later_note": "saves; later renewals ask you to confirm them",
        "unknown_card": "The sandbox accepts only test cards: they are listed below.",
        "invalid_expiry": "The expiry must be a month 1-12 and a year, such as 12 / 30 (MM / YY).",
        "declined": "Your card was declined.",
        "insufficient_funds": "Your card has insufficient funds.",
        "processing_error": "An error occurred while processing your card.",
        "expired_card": "Your card has expired.",
        "payment_method_not_found": "The saved card is not known.",
        "confirm_title": "Confirm your payment",
        "confirm_heading": "Confirm this payment with your bank",
        "confirm_asked": "Your bank asks you to confirm this renewal charge (3-D Secure).",
        "confirm": "Confirm {amount}",
        "fail_authentication": "Fail authentication",
        "confirmed": "Payment confirmed. You can close this page.",
        "refused": "You refused this payment; nothing was charged.",
        "not_confirmed_in_time": (
            "This payment can no longer be confirmed: it was not confirmed in time."
        ),
        "no_longer_confirmable": "This payment can no longer be confirmed.",
        "unknown_payment": "Unknown payment",
        "no_such_payment": "There is no such payment.",
        "no_publishable_key": "Confirmation is not available: no Stripe publishable key is set.",
    },
}

# A decline's phrase by its failure code (Stripe's codes); any other code is "declined".
_DECLINES: Final[Mapping[str, str]] = {
    "insufficient_funds": "insufficient_funds",
    "processing_error": "processing_error",
    "expired_card": "expired_card",
    "payment_method_not_found": "payment_method_not_found",
}


def phrase(locale: str, key: str, **values: str) -> str:
    """The phrase ``key`` in ``locale`` with its ``{placeholders}`` filled."""
    text = PHRASES[locale][key]
    return text.format(**values) if values else text


def decline_key(failure_code: str | None) -> str:
    """The phrase telling the payer why a card was declined with ``failure_code``."""
    return _DECLINES.get(failure_code or "", "declined")
