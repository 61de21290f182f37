# ruff: noqa: RUF001 (the Russian page is checked in Cyrillic)
"""The sandbox's hosted checkout page speaks Russian or English: the checkout's chosen locale,
then the browser's Accept-Language, then Russian; amounts are written for the language."""

from __future__ import annotations

import re

import httpx

from tests.payment_gateway.conftest import BASE_URL, Gateway

NBSP = "\u00a0"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
DECLINED_CARD = "4000000000000002"


async def checkout_path(gateway: Gateway, **overrides: object) -> str:
    body: dict[str, object] = {"amount": 152745, "description": "Премиум, 1 месяц"}
    created = await gateway.create_payment(**(body | overrides))
    assert created.status_code == 201, created.text
    url: str = created.json()["checkout_url"]
    return url.removeprefix(BASE_URL)


async def submit(
    gateway: Gateway, path: str, card: str, accept_language: str | None = None
) -> httpx.Response:
    """Submit the page's form as a browser would: to its action, with the browser's header."""
    headers = dict(FORM, **({"Accept-Language": accept_language} if accept_language else {}))
    page = await gateway.anonymous.get(path, headers=headers)
    found = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert found, page.text
    action = found.group(1)
    return await gateway.anonymous.post(
        action, content=f"card_number={card}&expiry=12+%2F+34&cvc=123", headers=headers
    )


class TestLanguageOfTheCheckoutPage:
    async def test_a_russian_browser_reads_russian_with_the_amount_written_in_russian(
        self, gateway: Gateway
    ) -> None:
        path = await checkout_path(gateway)

        page = await gateway.anonymous.get(path, headers={"Accept-Language": "ru-RU,ru;q=0.9"})

        assert page.status_code == 200
        assert '<html lang="ru">' in page.text
        assert f"<title>Оплата 1{NBSP}527,45{NBSP}₽</title>" in page.text
        assert f'<div class="amount">1{NBSP}527,45{NBSP}₽</div>' in page.text
        assert f">Оплатить 1{NBSP}527,45{NBSP}₽</button>" in page.text
        assert "Номер карты" in page.text and "Отменить и вернуться" in page.text
        assert "Тестовые карты" in page.text and "Card number" not in page.text
        assert "Премиум, 1 месяц" in page.text

    async def test_an_english_browser_reads_english(self, gateway: Gateway) -> None:
        path = await checkout_path(gateway)

        page = await gateway.anonymous.get(path, headers={"Accept-Language": "en-US,en;q=0.9"})

        assert '<html lang="en">' in page.text
        assert '<div class="amount">RUB1,527.45</div>' in page.text
        assert ">Pay RUB1,527.45</button>" in page.text
        assert "Card number" in page.text and "Cancel and return" in page.text
        assert "Test cards" in page.text and "Номер карты" not in page.text

    async def test_a_language_we_do_not_speak_or_none_reads_russian(self, gateway: Gateway) -> None:
        path = await checkout_path(gateway)

        german = await gateway.anonymous.get(path, headers={"Accept-Language": "de-DE,de"})
        silent = await gateway.anonymous.get(path)

        for page in (german, silent):
            assert '<html lang="ru">' in page.text and "Номер карты" in page.text

    async def test_the_browsers_second_choice_we_speak_wins_over_russian(
        self, gateway: Gateway
    ) -> None:
        path = await checkout_path(gateway)

        page = await gateway.anonymous.get(path, headers={"Accept-Language": "de,en;q=0.5"})

        assert '<html lang="en">' in page.text

    async def test_the_locale_chosen_for_the_checkout_beats_the_browsers(
        self, gateway: Gateway
    ) -> None:
        path = await checkout_path(gateway, locale="en-GB")

        page = await gateway.anonymous.get(path, headers={"Accept-Language": "ru"})

        assert path.endswith("?locale=en")
        assert '<html lang="en">' in page.text and "Card number" in page.text
        assert f'action="{path}"' in page.text  # the answer to the form speaks it too

    async def test_a_chosen_locale_we_do_not_speak_leaves_the_page_to_the_browser(
        self, gateway: Gateway
    ) -> None:
        path = await checkout_path(gateway, locale="de")

        page = await gateway.anonymous.get(path, headers={"Accept-Language": "en"})

        assert "?" not in path
        assert '<html lang="en">' in page.text

    async def test_a_setup_checkout_says_nothing_is_charged_in_russian(
        self, gateway: Gateway
    ) -> None:
        path = await checkout_path(gateway, amount=0)

        page = await gateway.anonymous.get(path)

        assert "Сохранение карты — сегодня ничего не списывается" in page.text
        assert ">Сохранить карту</button>" in page.text
        assert "₽" not in page.text


class TestDeclineOnThePage:
    async def test_a_decline_is_told_in_russian(self, gateway: Gateway) -> None:
        path = await checkout_path(gateway)

        page = await submit(gateway, path, DECLINED_CARD)

        assert page.status_code == 402
        assert '<div class="error" id="status">Карта отклонена.</div>' in page.text

    async def test_a_decline_is_told_in_english(self, gateway: Gateway) -> None:
        path = await checkout_path(gateway)

        page = await submit(gateway, path, DECLINED_CARD, accept_language="en")

        assert page.status_code == 402
        assert '<div class="error" id="status">Your card was declined.</div>' in page.text

    async def test_the_reason_of_a_decline_is_told_when_the_page_is_opened_again(
        self, gateway: Gateway
    ) -> None:
        path = await checkout_path(gateway)
        await submit(gateway, path, "4000000000009995")

        russian = await gateway.anonymous.get(path)
        english = await gateway.anonymous.get(path, headers={"Accept-Language": "en"})

        assert "На карте недостаточно средств." in russian.text
        assert "Your card has insufficient funds." in english.text

    async def test_an_unknown_card_is_refused_in_the_pages_language(self, gateway: Gateway) -> None:
        path = await checkout_path(gateway)

        russian = await submit(gateway, path, "1234123412341234")
        english = await submit(gateway, path, "1234123412341234", accept_language="en")

        assert russian.status_code == english.status_code == 422
        assert "Песочница принимает только тестовые карты" in russian.text
        assert "The sandbox accepts only test cards" in english.text
        assert 'id="error"' in russian.text and 'id="card_number"' in russian.text

    async def test_the_json_twin_still_answers_in_english_for_programs(
        self, gateway: Gateway
    ) -> None:
        created = (await gateway.create_payment(locale="ru")).json()

        paid = await gateway.pay(created["checkout_url"].split("?")[0], DECLINED_CARD)

        assert paid.json()["failure_message"] == "Your card was declined."
