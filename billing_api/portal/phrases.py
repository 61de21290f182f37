# ruff: noqa: RUF001 -- Russian text is Cyrillic on purpose
"""The portal's words in Russian and English: one table, one key per phrase.

``{name}`` placeholders are filled by :func:`phrase`; a key missing in one language falls back
to the other rather than breaking a page.
"""

from __future__ import annotations

import re
from typing import Any, Final

PHRASES: Final[dict[str, dict[str, str]]] = {
    "title": {"ru": "Подписка и платежи", "en": "Billing"},
    "nav.subscriptions": {"ru": "Подписки", "en": "Subscriptions"},
    "nav.purchases": {"ru": "Покупки", "en": "Purchases"},
    "nav.payments": {"ru": "Платежи", "en": "Payments"},
    "nav.wallet": {"ru": "Кошелёк", "en": "Wallet"},
    "back_to_app": {"ru": "Вернуться в приложение", "en": "Back to the app"},
    "none_yet": {"ru": "Пока ничего нет.", "en": "Nothing here yet."},
    "status": {"ru": "Статус", "en": "Status"},
    "period_end": {"ru": "Оплачено до", "en": "Paid until"},
    "next_charge": {"ru": "Следующее списание", "en": "Next charge"},
    "next_charge_value": {"ru": "{amount}, {day}", "en": "{amount} on {day}"},
    "wont_renew": {
        "ru": "Не продлится: подписка закончится {day}",
        "en": "Won't renew: the subscription ends on {day}",
    },
    "no_renewal": {"ru": "Не продлевается", "en": "Does not renew"},
    "card": {"ru": "Карта", "en": "Card"},
    "card_value": {
        "ru": "{brand} •••• {last4}, до {month}/{year}",
        "en": "{brand} •••• {last4}, exp. {month}/{year}",
    },
    "no_card": {"ru": "Карта не сохранена", "en": "No card on file"},
    "pause_value": {"ru": "Пауза с {start} по {end}", "en": "Paused from {start} to {end}"},
    "pending_plan": {"ru": "С конца периода: {plan}", "en": "From the period end: {plan}"},
    "action.cancel": {"ru": "Отменить в конце периода", "en": "Cancel at period end"},
    "action.resume": {"ru": "Возобновить", "en": "Resume"},
    "action.pause": {"ru": "Приостановить", "en": "Pause"},
    "action.change_plan": {"ru": "Сменить тариф", "en": "Change plan"},
    "action.card": {"ru": "Обновить карту", "en": "Update card"},
    "action.refund": {"ru": "Вернуть деньги", "en": "Refund"},
    "action.confirm_refund": {"ru": "Подтвердить возврат", "en": "Confirm refund"},
    "action.top_up": {"ru": "Пополнить", "en": "Top up"},
    "action.choose": {"ru": "Выбрать", "en": "Choose"},
    "action.back": {"ru": "Назад", "en": "Back"},
    "months": {"ru": "Срок паузы", "en": "Pause length"},
    "months.1": {"ru": "1 месяц", "en": "1 month"},
    "months.2": {"ru": "2 месяца", "en": "2 months"},
    "months.3": {"ru": "3 месяца", "en": "3 months"},
    "plans.title": {"ru": "Сменить тариф", "en": "Change plan"},
    "plans.current": {"ru": "Сейчас: {plan}", "en": "Current plan: {plan}"},
    "plans.upgrade": {
        "ru": "Сразу: к оплате {amount} (с учётом {credit} за неиспользованные дни)",
        "en": "Now: pay {amount} ({credit} credited for the unused days)",
    },
    "plans.downgrade": {
        "ru": "С конца периода, {price} за период; сейчас ничего не списывается",
        "en": "From the period end, {price} a period; nothing is charged now",
    },
    "plans.upgrade_no_credit": {"ru": "Сразу: к оплате {amount}", "en": "Now: pay {amount}"},
    "plans.none": {"ru": "Других тарифов нет.", "en": "No other plans."},
    "plans.unavailable": {
        "ru": "Сейчас эту подписку нельзя перевести на другой тариф.",
        "en": "This subscription cannot change plan now.",
    },
    "refund.title": {"ru": "Возврат платежа", "en": "Refund a payment"},
    "refund.quote": {"ru": "Вернём {amount}.", "en": "You get back {amount}."},
    "refund.rule": {"ru": "Правило", "en": "Rule"},
    "refund.nothing": {"ru": "Сейчас вернуть нечего.", "en": "Nothing can be refunded now."},
    "payment": {"ru": "Платёж", "en": "Payment"},
    "amount": {"ru": "Сумма", "en": "Amount"},
    "date": {"ru": "Дата", "en": "Date"},
    "refunds": {"ru": "Возвраты", "en": "Refunds"},
    "refunded": {"ru": "Возврат {amount}", "en": "Refund {amount}"},
    "receipt": {"ru": "Чек", "en": "Receipt"},
    "receipt_pdf": {"ru": "PDF", "en": "PDF"},
    "purchase.buy": {"ru": "Покупка", "en": "Bought"},
    "purchase.rent": {"ru": "Аренда", "en": "Rented"},
    "purchase.forever": {"ru": "Навсегда", "en": "No expiry"},
    "purchase.until": {"ru": "До {moment}", "en": "Until {moment}"},
    "wallet.balance": {"ru": "Баланс", "en": "Balance"},
    "wallet.owed": {"ru": "Задолженность", "en": "Owed"},
    "wallet.statement": {"ru": "Выписка", "en": "Statement"},
    "wallet.amount": {"ru": "Сумма пополнения, ₽", "en": "Top-up amount, RUB"},
    "wallet.amount_hint": {"ru": "например, 500", "en": "e.g. 500"},
    "done.canceled": {
        "ru": "Подписка не продлится и закончится в конце оплаченного периода.",
        "en": "The subscription won't renew and ends at the end of the paid period.",
    },
    "done.resumed": {"ru": "Подписка снова продлевается.", "en": "The subscription renews again."},
    "done.paused": {"ru": "Пауза запланирована.", "en": "The pause is scheduled."},
    "done.plan_changed": {"ru": "Тариф изменён.", "en": "The plan is changed."},
    "done.refunded": {
        "ru": "Возврат оформлен: деньги вернутся туда, откуда пришли.",
        "en": "Refund requested: the money goes back where it came from.",
    },
    "done.again": {
        "ru": "Эта форма уже отправлена; повторно ничего не сделано.",
        "en": "This form was sent already; nothing was done twice.",
    },
    "error.title": {"ru": "Не получилось", "en": "That did not work"},
    "error.detail": {"ru": "Код {status}: {detail}", "en": "Code {status}: {detail}"},
    "error.amount": {
        "ru": "Введите сумму числом, например 500 или 500,50.",
        "en": "Enter an amount as a number, e.g. 500 or 500.50.",
    },
    "csrf.title": {"ru": "Форма устарела", "en": "This form has expired"},
    "csrf.text": {
        "ru": "Ничего не изменено. Откройте страницу заново и попробуйте ещё раз.",
        "en": "Nothing was changed. Open the page again and retry.",
    },
    "auth.title": {"ru": "Сессия закончилась", "en": "Your session has ended"},
    "auth.text": {
        "ru": "Откройте раздел оплаты заново из приложения кинотеатра.",
        "en": "Open billing again from the cinema app.",
    },
    "link.unknown.title": {"ru": "Ссылка не найдена", "en": "Link not found"},
    "link.unknown.text": {
        "ru": "Такой ссылки нет. Откройте раздел оплаты из приложения.",
        "en": "There is no such link. Open billing from the app.",
    },
    "link.used.title": {"ru": "Ссылка уже использована", "en": "This link was used already"},
    "link.expired.title": {"ru": "Ссылка устарела", "en": "This link has expired"},
    "link.spent.text": {
        "ru": "Каждая ссылка открывается один раз и действует несколько минут."
        " Получите новую в приложении.",
        "en": "Each link opens once and only for a few minutes. Get a new one from the app.",
    },
    "not_found.title": {"ru": "Не найдено", "en": "Not found"},
    "status.pending": {"ru": "ожидает оплаты", "en": "awaiting payment"},
    "status.active": {"ru": "активна", "en": "active"},
    "status.grace": {"ru": "ожидает оплаты продления", "en": "renewal payment due"},
    "status.paused": {"ru": "на паузе", "en": "paused"},
    "status.expired": {"ru": "истекла", "en": "expired"},
    "status.canceled": {"ru": "отменена", "en": "canceled"},
    "status.completed": {"ru": "оплачено", "en": "paid"},
    "status.abandoned": {"ru": "не оплачено", "en": "not paid"},
    "status.refunded": {"ru": "возвращено", "en": "refunded"},
    "status.succeeded": {"ru": "оплачен", "en": "paid"},
    "status.failed": {"ru": "отклонён", "en": "declined"},
    "status.requires_action": {"ru": "ждёт подтверждения", "en": "needs confirmation"},
    "status.partially_refunded": {"ru": "частично возвращён", "en": "partly refunded"},
    "status.disputed": {"ru": "оспорен", "en": "disputed"},
    "refund.pending": {"ru": "в обработке", "en": "in progress"},
    "refund.succeeded": {"ru": "выполнен", "en": "done"},
    "refund.failed": {"ru": "не выполнен", "en": "failed"},
    "refund.queued": {"ru": "в очереди", "en": "queued"},
    "refund.parked": {"ru": "на проверке", "en": "under review"},
}


_RULES: Final = (
    (
        re.compile(r"full refund within (\d+) minutes of payment"),
        {"ru": "полный возврат в течение {0} мин. после оплаты"},
    ),
    (re.compile(r"unused (\d+) of (\d+) days"), {"ru": "не использовано дней: {0} из {1}"}),
    (re.compile(r"refund window closed"), {"ru": "срок возврата истёк"}),
    (re.compile(r"plan is not refundable"), {"ru": "тариф без возврата"}),
    (re.compile(r"already refunded"), {"ru": "уже возвращено"}),
    (re.compile(r"a refund is in progress"), {"ru": "возврат уже оформляется"}),
)


def refund_rule(rule: str, locale: str) -> str:
    """A refund quote's rule (the services write it in English) in ``locale`` when known."""
    for pattern, texts in _RULES:
        found = pattern.fullmatch(rule)
        if found and locale in texts:
            return texts[locale].format(*found.groups())
    return rule


def phrase(key: str, locale: str, **values: Any) -> str:
    """The phrase ``key`` in ``locale`` with its placeholders filled."""
    texts = PHRASES.get(key)
    if texts is None:
        return key
    text = texts.get(locale) or next(iter(texts.values()))
    return text.format(**values) if values else text
