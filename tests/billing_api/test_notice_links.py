"""The dunning notices' link and wording inputs, as the pure transitions build them."""

from __future__ import annotations

import pytest

from billing_api.models import SubscriptionStatus
from billing_api.subscriptions import links, transitions
from shared import events
from tests.billing_api.test_transitions import END, MONTHLY, NOW, OFFSETS, RENEWAL, subscription

ACCOUNT = "https://cinema.example/account"


class TestUpdateLink:
    def test_is_the_account_page_opened_on_the_subscription(self) -> None:
        row = subscription(SubscriptionStatus.ACTIVE)
        assert links.update_url(ACCOUNT, row.id) == f"{ACCOUNT}?subscription_id={row.id}"

    def test_a_declined_renewal_links_to_it(self) -> None:
        row = subscription(SubscriptionStatus.ACTIVE)
        (event,) = transitions.record_failed_renewal(
            row, MONTHLY, RENEWAL, reason=None, retry_offsets=OFFSETS, now=NOW, account_url=ACCOUNT
        )
        assert isinstance(event, events.SubscriptionRenewalFailed)
        assert event.update_url == links.update_url(ACCOUNT, row.id)

    def test_the_grace_links_to_it(self) -> None:
        row = subscription(SubscriptionStatus.ACTIVE)
        (event,) = transitions.end_period(row, MONTHLY, now=END, account_url=ACCOUNT)
        assert isinstance(event, events.SubscriptionGraceStarted)
        assert event.update_url == links.update_url(ACCOUNT, row.id)

    def test_no_account_page_no_link(self) -> None:
        row = subscription(SubscriptionStatus.ACTIVE)
        (event,) = transitions.end_period(row, MONTHLY, now=END)
        assert isinstance(event, events.SubscriptionGraceStarted)
        assert event.update_url is None


class TestRenewalSource:
    @pytest.mark.parametrize("source", ["card", "wallet_then_card"])
    def test_the_dunning_notices_say_how_the_subscription_renews(self, source: str) -> None:
        row = subscription(SubscriptionStatus.ACTIVE, renewal_source=source)
        (failed,) = transitions.record_failed_renewal(
            row, MONTHLY, RENEWAL, reason=None, retry_offsets=OFFSETS, now=NOW
        )
        (grace,) = transitions.end_period(row, MONTHLY, now=END)
        assert isinstance(failed, events.SubscriptionRenewalFailed)
        assert isinstance(grace, events.SubscriptionGraceStarted)
        assert failed.renewal_source == grace.renewal_source == source
