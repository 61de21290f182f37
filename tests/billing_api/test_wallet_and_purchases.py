from __future__ import annotations

from datetime import datetime, timedelta

from billing_api import demo
from tests.billing_api.conftest import Suite, User


async def topped_up(suite: Suite, user: User, amount: int) -> None:
    response = await user.post("/api/v1/wallet/top-ups", json={"amount": amount})
    assert response.status_code == 201, response.text
    await suite.pay(response.json()["payment"]["checkout_url"])

    async def credited() -> bool:
        balances = (await user.get("/api/v1/wallet")).json()["balances"]
        return {"amount": amount, "currency": "RUB"} in balances

    from tests import support

    await support.eventually(credited, timeout=15)


class TestWallet:
    async def test_top_up_by_card_credits_the_wallet_once(self, suite: Suite) -> None:
        user = suite.as_user()
        await topped_up(suite, user, 100000)
        events = await suite.events("wallet.topped_up")
        assert [(e.data.amount.amount, e.data.balance.amount) for e in events] == [(100000, 100000)]

    async def test_subscription_paid_from_the_wallet_is_active_at_once(self, suite: Suite) -> None:
        user = suite.as_user()
        await topped_up(suite, user, 100000)
        plan = await suite.plan("basic")
        response = await user.post(
            "/api/v1/subscriptions", json={"plan_id": plan["id"], "payment_method": "wallet"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "active"
        assert response.json()["latest_payment"]["checkout_url"] is None
        balances = (await user.get("/api/v1/wallet")).json()["balances"]
        assert balances == [{"amount": 100000 - 29900, "currency": "RUB"}]
        kinds = [e["kind"] for e in (await user.get("/api/v1/statement")).json()["items"]]
        assert kinds == ["wallet_spend", "payment_captured"]

    async def test_insufficient_balance_is_409_and_changes_nothing(self, suite: Suite) -> None:
        user = suite.as_user()
        await topped_up(suite, user, 10000)
        plan = await suite.plan("premium")
        response = await user.post(
            "/api/v1/subscriptions", json={"plan_id": plan["id"], "payment_method": "wallet"}
        )
        assert response.status_code == 409
        assert response.json()["error"] == "InsufficientFunds"
        assert (await user.get("/api/v1/wallet")).json()["balances"][0]["amount"] == 10000
        assert (await user.get("/api/v1/subscriptions")).json()["items"] == []

    async def test_amounts_must_be_positive_integers(self, suite: Suite) -> None:
        user = suite.as_user()
        for amount in (-100, 0, True, 10.5, "100"):
            response = await user.post("/api/v1/wallet/top-ups", json={"amount": amount})
            assert response.status_code == 422, amount
        assert await suite.scalar("SELECT count(*) FROM payment") == 0


class TestPurchases:
    async def test_bought_movie_is_completed_with_no_end(self, suite: Suite) -> None:
        user = suite.as_user()
        movie = demo.movie_id("Paper Moons")
        response = await user.post("/api/v1/purchases", json={"movie_id": str(movie)})
        assert response.status_code == 201
        await suite.pay(response.json()["latest_payment"]["checkout_url"])
        from tests import support

        async def completed() -> bool:
            items = (await user.get("/api/v1/purchases")).json()["items"]
            return bool(items) and items[0]["status"] == "completed"

        await support.eventually(completed, timeout=15)
        [purchase] = (await user.get("/api/v1/purchases")).json()["items"]
        assert purchase["valid_until"] is None
        [event] = await suite.events("purchase.completed")
        assert event.data.movie_title == "Paper Moons"

    async def test_rented_movie_ends_after_its_rent_hours(self, suite: Suite) -> None:
        user = suite.as_user()
        await topped_up(suite, user, 50000)
        movie = demo.movie_id("Salt and Cedar")
        response = await user.post(
            "/api/v1/purchases",
            json={"movie_id": str(movie), "kind": "rent", "payment_method": "wallet"},
        )
        purchase = response.json()
        assert purchase["status"] == "completed"
        until = datetime.fromisoformat(purchase["valid_until"])
        created = datetime.fromisoformat(purchase["created_at"])
        assert timedelta(hours=47, minutes=59) < until - created < timedelta(hours=48, minutes=1)

    async def test_unknown_movie_is_404(self, suite: Suite) -> None:
        from uuid import uuid4

        response = await suite.as_user().post("/api/v1/purchases", json={"movie_id": str(uuid4())})
        assert response.status_code == 404


class TestPayments:
    async def test_payments_are_paged_newest_first(self, suite: Suite) -> None:
        user = suite.as_user()
        for amount in (1000, 2000, 3000):
            await user.post("/api/v1/wallet/top-ups", json={"amount": amount})
        first = (await user.get("/api/v1/payments", params={"limit": 2})).json()
        second = (
            await user.get("/api/v1/payments", params={"limit": 2, "cursor": first["next_cursor"]})
        ).json()
        assert [p["amount"]["amount"] for p in first["items"]] == [3000, 2000]
        assert [p["amount"]["amount"] for p in second["items"]] == [1000]
        assert second["next_cursor"] is None

    async def test_a_forged_cursor_is_422(self, suite: Suite) -> None:
        response = await suite.as_user().get("/api/v1/payments", params={"cursor": "nonsense"})
        assert response.status_code == 422

    async def test_checkout_return_page_shows_the_payment_status(self, suite: Suite) -> None:
        user = suite.as_user()
        created = (await user.post("/api/v1/wallet/top-ups", json={"amount": 5000})).json()
        page = await suite.http.get(
            "/checkout/success", params={"payment_id": created["payment"]["id"]}
        )
        assert page.status_code == 200
        assert "data-status='pending'" in page.text
