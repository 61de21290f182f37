"""Rendering events into subject, text and HTML: language, money, dates, escaping."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from notifier.rendering import Renderer, format_money
from shared import events
from shared.money import Money
from tests.notifier.conftest import EVENT_TYPES, LINKED, notice

NBSP = "\u00a0"
NNBSP = "\u202f"  # CLDR puts a narrow no-break space before the year's "g." and before "AM"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


class TestLanguage:
    def test_russian_is_the_default(self, renderer: Renderer) -> None:
        event = notice("wallet.topped_up")
        assert event.locale == "ru"
        assert renderer.render(event).subject == f"Кошелёк пополнен на 1{NBSP}527,45{NBSP}₽"

    def test_english_when_the_event_asks_for_it(self, renderer: Renderer) -> None:
        message = renderer.render(notice("wallet.topped_up", locale="en"))
        assert message.subject == "Your wallet was topped up with RUB1,527.45"
        assert '<html lang="en">' in message.html

    def test_a_regional_locale_uses_its_language(self, renderer: Renderer) -> None:
        message = renderer.render(notice("wallet.topped_up", locale="en-US"))
        assert message.subject.startswith("Your wallet")

    @pytest.mark.parametrize("locale", ["de", "", "xx_YY", "../en"])
    def test_an_unknown_locale_falls_back_to_russian(self, renderer: Renderer, locale: str) -> None:
        message = renderer.render(notice("wallet.topped_up", locale=locale))
        assert message.subject.startswith("Кошелёк пополнен")
        assert '<html lang="ru">' in message.html

    def test_a_language_folder_missing_one_template_uses_the_russian_one(
        self, tmp_path: Path
    ) -> None:
        source = Renderer().templates
        for path in source.rglob("*.j2"):
            target = tmp_path / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())
        (tmp_path / "en" / "wallet.topped_up.subject.j2").unlink()
        message = Renderer(tmp_path).render(notice("wallet.topped_up", locale="en"))
        assert message.subject.startswith("Кошелёк пополнен")
        assert message.text.startswith("Hello")


class TestMoney:
    @pytest.mark.parametrize(
        ("amount", "currency", "locale", "expected"),
        [
            (152745, "RUB", "ru", f"1{NBSP}527,45{NBSP}₽"),
            (152745, "RUB", "en", "RUB1,527.45"),
            (152745, "USD", "en", "$1,527.45"),
            (0, "RUB", "ru", f"0,00{NBSP}₽"),
            (1500, "JPY", "ru", f"1{NBSP}500{NBSP}¥"),
            (1234567, "KWD", "en", "KWD1,234.567"),
            # ISO says three digits for IQD, CLDR none: nothing is rounded away.
            (1234567, "IQD", "en", "IQD1,234.567"),
            (10**13, "RUB", "en", "RUB100,000,000,000.00"),
        ],
    )
    def test_amounts_are_exact_and_formatted_for_the_language(
        self, amount: int, currency: str, locale: str, expected: str
    ) -> None:
        assert format_money(Money(amount=amount, currency=currency), locale) == expected


class TestDates:
    def test_dates_are_in_the_persons_timezone(self, renderer: Renderer) -> None:
        message = renderer.render(notice("subscription.expiring", timezone="Asia/Vladivostok"))
        # 21:30 UTC on 1 December is 07:30 on 2 December in Vladivostok
        assert f"2 декабря 2026{NNBSP}г., 07:30 (UTC+10:00)" in message.text  # noqa: RUF001

    def test_english_dates_follow_english_conventions(self, renderer: Renderer) -> None:
        message = renderer.render(notice("subscription.expiring", locale="en"))
        assert f"December 2, 2026, 12:30{NNBSP}AM (UTC+03:00)" in message.text

    @pytest.mark.parametrize("timezone", [None, "Mars/Olympus_Mons", "../../etc/passwd"])
    def test_dates_are_in_utc_when_the_timezone_is_unknown(
        self, renderer: Renderer, timezone: str | None
    ) -> None:
        message = renderer.render(notice("subscription.expiring", timezone=timezone))
        assert f"1 декабря 2026{NNBSP}г., 21:30 (UTC)" in message.text  # noqa: RUF001


class TestTemplates:
    @pytest.mark.parametrize("locale", ["ru", "en"])
    @pytest.mark.parametrize("event_type", EVENT_TYPES)
    def test_every_event_renders_in_both_languages(
        self, renderer: Renderer, event_type: str, locale: str
    ) -> None:
        message = renderer.render(notice(event_type, locale=locale))
        assert message.subject
        assert "\n" not in message.subject
        assert message.text.strip()
        assert message.html.startswith("<!DOCTYPE html>")
        assert f'<html lang="{locale}">' in message.html

    def test_html_escapes_what_the_event_says(self, renderer: Renderer) -> None:
        event = events.PurchaseCompleted(
            user_id=uuid4(),
            purchase_id=uuid4(),
            movie_id=uuid4(),
            movie_title="<script>alert(1)</script>",
            kind="buy",
            amount=Money(amount=100, currency="RUB"),
        )
        message = renderer.render(event)
        assert "<script>" not in message.html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html
        assert "<script>alert(1)</script>" in message.text  # plain text is not HTML

    def test_optional_fields_left_out_leave_no_trace(self, renderer: Renderer) -> None:
        event = events.SubscriptionCanceled(
            user_id=uuid4(),
            subscription_id=uuid4(),
            plan=events.PlanSummary(plan_id=uuid4(), code="basic", name="Basic"),
            canceled_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        )
        message = renderer.render(event)
        assert "больше недоступны" in message.text
        assert "вернём" not in message.text


class TestLinks:
    @pytest.mark.parametrize("locale", ["ru", "en"])
    @pytest.mark.parametrize("event_type", sorted(LINKED))
    def test_a_notice_that_can_be_acted_on_carries_its_link_in_text_and_html(
        self, renderer: Renderer, event_type: str, locale: str
    ) -> None:
        event = notice(event_type, locale=locale)
        link = getattr(event, LINKED[event_type])
        assert link
        message = renderer.render(event)
        assert link in message.text
        # HTML escapes the "&" of a query string inside the attribute, as it must
        assert f'href="{html.escape(link)}"' in message.html

    @pytest.mark.parametrize(
        "event_type", ["subscription.renewal_failed", "payment_method.expiring"]
    )
    def test_no_link_leaves_no_trace(self, renderer: Renderer, event_type: str) -> None:
        event = notice(event_type, locale="en").model_copy(update={"update_url": None})
        message = renderer.render(event)
        assert "href" not in message.html.split("<body", 1)[1]
        assert "Update your card:" not in message.text


RECEIPTED = (
    "purchase.completed",
    "subscription.activated",
    "subscription.renewed",
    "subscription.plan_changed",
    "wallet.topped_up",
    "refund.completed",
)
RECEIPT_URL = "https://billing.example/receipts/WyJwYXltZW50IiwiYSJd.sig"


class TestReceiptLinks:
    @pytest.mark.parametrize(("locale", "label"), [("ru", "Чек"), ("en", "Receipt")])
    @pytest.mark.parametrize("event_type", RECEIPTED)
    def test_money_taken_or_given_back_links_to_its_receipt(
        self, renderer: Renderer, event_type: str, locale: str, label: str
    ) -> None:
        event = notice(event_type, locale=locale).model_copy(update={"receipt_url": RECEIPT_URL})
        message = renderer.render(event)
        assert f"{label.lower()}" in message.text.lower() and RECEIPT_URL in message.text
        assert f'href="{RECEIPT_URL}"' in message.html

    @pytest.mark.parametrize("event_type", RECEIPTED)
    def test_no_receipt_link_leaves_no_trace(self, renderer: Renderer, event_type: str) -> None:
        message = renderer.render(notice(event_type, locale="en"))
        assert "/receipts/" not in message.text
        assert "receipt" not in message.html.split("<body", 1)[1].lower()
        assert not message.text.endswith("\n\n")


class TestDunningWording:
    @pytest.mark.parametrize(
        "event_type", ["subscription.renewal_failed", "subscription.grace_started"]
    )
    def test_a_card_renewal_asks_for_the_card_and_not_for_a_top_up(
        self, renderer: Renderer, event_type: str
    ) -> None:
        for locale, wallet in (("en", "wallet"), ("ru", "кошел")):
            message = renderer.render(notice(event_type, locale=locale))
            assert wallet not in message.text.lower()
            assert wallet not in message.html.lower()

    @pytest.mark.parametrize(
        "event_type", ["subscription.renewal_failed", "subscription.grace_started"]
    )
    def test_a_renewal_from_the_wallet_asks_for_a_top_up_of_the_amount(
        self, renderer: Renderer, event_type: str
    ) -> None:
        event = notice(event_type).model_copy(update={"renewal_source": "wallet_then_card"})
        text = renderer.render(event).text
        assert f"Пополните кошелёк хотя бы на 1{NBSP}527,45{NBSP}₽" in text
        english = renderer.render(event.model_copy(update={"locale": "en"})).text
        assert "Top up your wallet with at least RUB1,527.45" in english

    def test_the_card_that_expires_is_named_by_brand_last_four_and_expiry(
        self, renderer: Renderer
    ) -> None:
        event = notice("payment_method.expiring", locale="en")
        assert "VISA card ending in 4242 (expires 01/2027)" in renderer.render(event).text
        russian = renderer.render(notice("payment_method.expiring")).text
        assert "карта VISA с последними цифрами 4242 (действует до 01/2027)" in russian  # noqa: RUF001


class TestHouseholds:
    @pytest.mark.parametrize(
        ("locale", "subject", "says"),
        [
            ("ru", "Приглашение в семью: «Premium»", "owner@example.com приглашает вас"),
            ("en", "You are invited to share a Premium subscription", "owner@example.com invites"),
        ],
    )
    def test_an_invitation_names_the_owner_and_gives_the_code(
        self, renderer: Renderer, locale: str, subject: str, says: str
    ) -> None:
        event = notice("household.invited", locale=locale)
        message = renderer.render(event)
        assert message.subject == subject
        assert says in message.text
        assert "hh_Xy12AbCdEfGhIjKlMnOpQr" in message.text
        assert "hh_Xy12AbCdEfGhIjKlMnOpQr" in message.html

    @pytest.mark.parametrize(
        ("locale", "reason", "says"),
        [
            ("ru", "seats_reduced", "тариф с меньшим числом мест"),  # noqa: RUF001
            ("ru", "subscription_ended", "подписка владельца закончилась"),
            ("ru", "removed_by_owner", "владелец исключил вас"),
            ("ru", "removed_by_staff", "служба поддержки"),
            ("en", "seats_reduced", "a plan with fewer seats"),
            ("en", "subscription_ended", "subscription has ended"),
            ("en", "removed_by_owner", "the owner removed you"),
            ("en", "removed_by_staff", "support team removed you"),
        ],
    )
    def test_a_removed_member_is_told_why(
        self, renderer: Renderer, locale: str, reason: str, says: str
    ) -> None:
        event = notice("household.removed", locale=locale).model_copy(update={"reason": reason})
        message = renderer.render(event)
        assert says in message.text
        assert says in message.html


class TestGifts:
    @pytest.mark.parametrize(("locale", "words"), [("ru", "дарит вам"), ("en", "gave you")])
    def test_the_recipient_reads_who_gave_what_the_message_the_code_and_the_link(
        self, renderer: Renderer, locale: str, words: str
    ) -> None:
        event = notice("gift.delivered", locale=locale)
        assert isinstance(event, events.GiftDelivered)
        message = renderer.render(event)
        for part in ("buyer@example.com", words, "Happy birthday!", event.code, event.redeem_url):
            assert part in message.text, part
        assert html.escape(event.redeem_url) in message.html
        assert "Premium" in message.subject

    @pytest.mark.parametrize("event_type", ["gift.purchased", "gift.expiring"])
    def test_the_buyer_reads_the_code_to_hand_over(
        self, renderer: Renderer, event_type: str
    ) -> None:
        event = notice(event_type, locale="en")
        message = renderer.render(event)
        assert "ABCD-EFGH-JKMN-PQRS" in message.text
        assert "friend@example.com" in message.text
