"""The portal's words: every phrase in both languages with the same blanks, and a phrase for
every key a page asks for, so no page shows a raw key like ``status.paused``."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from billing_api.models import PaymentStatus, PurchaseStatus, RefundStatus, SubscriptionStatus
from billing_api.portal import phrases

TEMPLATES = Path(phrases.__file__).parent / "templates"


def blanks(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("key", sorted(phrases.PHRASES))
def test_every_phrase_is_in_both_languages_with_the_same_blanks(key: str) -> None:
    texts = phrases.PHRASES[key]
    assert set(texts) == {"ru", "en"}
    assert all(text.strip() for text in texts.values())
    assert blanks(texts["ru"]) == blanks(texts["en"])


def test_every_key_a_page_names_has_a_phrase() -> None:
    named = {
        key
        for template in TEMPLATES.glob("*.j2")
        for key in re.findall(r"""\bt\(\s*["']([a-z0-9_.]+)["']\s*[,)]""", template.read_text())
    }
    assert named, "the pages name their phrases with t('key')"
    assert named - set(phrases.PHRASES) == set()


@pytest.mark.parametrize(
    "status", [*SubscriptionStatus, *PurchaseStatus, *PaymentStatus], ids=lambda s: str(s)
)
def test_every_status_a_page_shows_is_worded(status: str) -> None:
    assert f"status.{status}" in phrases.PHRASES
    assert phrases.phrase(f"status.{status}", "ru") != phrases.phrase(f"status.{status}", "en")


@pytest.mark.parametrize("status", list(RefundStatus), ids=lambda s: str(s))
def test_every_refund_status_a_page_shows_is_worded(status: str) -> None:
    assert f"refund.{status}" in phrases.PHRASES
