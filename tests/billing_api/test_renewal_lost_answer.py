"""A batch of renewal charges whose answer billing never got."""

from __future__ import annotations

import asyncio
from uuid import UUID

from billing_api.lifecycle import renewal_claims, renewals, service
from billing_api.lifecycle.service import LEASE
from billing_api.periods import add_months
from shared import clock
from tests.billing_api.conftest import Suite
from tests.billing_api.test_lifecycle import end_of, off_session_charges
from tests.billing_api.test_renewals import (
    captured,
    context,
    due_subscriptions,
    period_ends,
    renewal_payments,
)


class TestLostBatchAnswer:
    async def test_charged_renewals_whose_answer_was_lost_are_settled_once(
        self, suite: Suite
    ) -> None:
        subscriptions, at = await due_subscriptions(suite, 4)
        captured_before = await captured(suite)
        with clock.frozen(at):
            ctx = context(suite, at)
            claimed = await renewal_claims.claim_renewals(ctx)
            # Charged at the gateway, but billing's wait for the answer ran out.
            await ctx.gateway.charge_off_session_many([renewals._request(c) for c in claimed])
        after_lease = at + LEASE
        with clock.frozen(after_lease):
            ctx = context(suite, after_lease)
            await asyncio.gather(renewals.renew_due(ctx), service.end_periods(ctx))
        await asyncio.sleep(1)  # the gateway's own events arrive meanwhile

        assert await off_session_charges(suite) == 4
        assert await captured(suite) - captured_before == 4
        payments = await renewal_payments(suite)
        assert {p.id for p in payments.values()} == {c.payment_id for c in claimed}
        assert {p.status for p in payments.values()} == {"succeeded"}
        ends = await period_ends(suite)
        for subscription in subscriptions:
            assert ends[UUID(subscription["id"])] == add_months(end_of(subscription), 1)
        assert len(await suite.events("subscription.renewed")) == 4
