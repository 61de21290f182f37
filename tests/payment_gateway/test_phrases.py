# ruff: noqa: RUF001 (the Russian page is checked in Cyrillic)
"""Every phrase of the gateway's pages exists in both languages, with the same blanks."""

from __future__ import annotations

from string import Formatter

import pytest

from payment_gateway import phrases
from shared.locales import LOCALES


def blanks(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name}


class TestPhraseTable:
    def test_both_languages_have_every_phrase_with_the_same_blanks(self) -> None:
        russian, english = phrases.PHRASES["ru"], phrases.PHRASES["en"]

        assert set(phrases.PHRASES) == set(LOCALES)
        assert set(russian) == set(english)
        assert {k: blanks(v) for k, v in russian.items()} == {
            k: blanks(v) for k, v in english.items()
        }

    @pytest.mark.parametrize(
        ("code", "russian", "english"),
        [
            ("card_declined", "Карта отклонена.", "Your card was declined."),
            ("lost_card", "Карта отклонена.", "Your card was declined."),
            (
                "insufficient_funds",
                "На карте недостаточно средств.",
                "Your card has insufficient funds.",
            ),
            ("expired_card", "Срок действия карты истёк.", "Your card has expired."),
            (None, "Карта отклонена.", "Your card was declined."),
        ],
    )
    def test_a_decline_is_worded_by_its_code_in_each_language(
        self, code: str | None, russian: str, english: str
    ) -> None:
        key = phrases.decline_key(code)

        assert (phrases.phrase("ru", key), phrases.phrase("en", key)) == (russian, english)

    def test_every_test_card_on_the_page_has_its_note(self) -> None:
        for _, note in phrases.TEST_CARDS:
            assert phrases.phrase("ru", note) and phrases.phrase("en", note)
