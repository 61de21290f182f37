"""A movie checkout keeps working once PostgreSQL switches its prepared statement to a generic
plan (after five runs on one connection): the pending-purchase conflict target must match the
partial unique index by a literal predicate, not a bound parameter."""

from __future__ import annotations

from tests.billing_api.conftest import Suite


class TestRepeatedPurchaseCheckouts:
    async def test_the_twentieth_purchase_checkout_is_created_like_the_first(
        self, suite: Suite
    ) -> None:
        movie = await suite.scalar("SELECT id FROM movie ORDER BY title LIMIT 1")
        statuses = []
        for _ in range(20):
            user = suite.as_user()
            response = await user.post(
                "/api/v1/purchases", json={"movie_id": str(movie), "kind": "buy"}
            )
            statuses.append(response.status_code)
        assert statuses == [201] * 20, statuses
