"""The sandbox provider acts, then its adapter cannot read what it answered: the gateway answers
the documented 502 (never a 500), keeps what may have happened (the payment or refund, pending)
and the provider's own report settles it, without a second charge or refund."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from uuid import uuid4

import httpx
import orjson
import pytest
import sqlalchemy as sa

from payment_gateway.providers import base
from payment_gateway.webhooks.processing import NOT_KNOWN_YET
from shared import clock
from tests.payment_gateway.conftest import Gateway, payment_body, webhooks_processed
from tests.payment_gateway.test_off_session_batch import BATCH_URL, charge, saved_method
from tests.payment_gateway.test_payments_api import wait_for_status
from tests.payment_gateway.test_refunds_api import paid_payment, refund
from tests.payment_gateway.test_webhook_parking import processor as parking_processor
from tests.payment_gateway.test_webhook_processing import processor, stop_processor
from tests.payment_gateway.test_webhooks import hold_deliveries, post_webhook

Call = Callable[..., Awaitable[Any]]


def unreadable(answer: Call, error: Exception) -> Call:
    """The provider does the work; reading its answer then fails with ``error``."""

    async def call(*args: Any) -> Any:
        await answer(*args)
        raise error

    return call


async def refund_lost_on_the_way(
    gateway: Gateway, payment_id: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, httpx.Response]:
    """A full refund whose request the sandbox loses before reading it (nothing is made there);
    the sandbox receives requests again afterwards."""
    sandbox = gateway.app.state.sandbox
    answer = sandbox.refund

    async def lost_on_the_way(*args: Any) -> Any:
        raise ValueError("connection reset before the provider read the request")

    monkeypatch.setattr(sandbox, "refund", lost_on_the_way)
    refund_id = str(uuid4())
    response = await refund(gateway, payment_id, 5000, refund_id)
    monkeypatch.setattr(sandbox, "refund", answer)
    return refund_id, response


async def scalar(gateway: Gateway, query: str, **params: object) -> Any:
    async with gateway.app.state.resources.engine.connect() as conn:
        return await conn.scalar(sa.text(query), params)


async def call_states(gateway: Gateway, payment_id: str) -> list[tuple[str, str]]:
    async with gateway.app.state.resources.engine.connect() as conn:
        found = await conn.execute(
            sa.text(
                "SELECT operation, state FROM provider_call WHERE payment_id = :id ORDER BY id"
            ),
            {"id": payment_id},
        )
        return [(str(row[0]), str(row[1])) for row in found]


async def deliver_queued(gateway: Gateway, event_type: str, *, wait: bool = True) -> None:
    """Post every webhook of ``event_type`` the sandbox queued, then wait for processing."""
    async with gateway.app.state.sandbox.sessions() as db:
        bodies = list(
            await db.scalars(
                sa.text("SELECT body FROM sandbox_webhook WHERE event_type = :type"),
                {"type": event_type},
            )
        )
    for body in bodies:
        assert (await post_webhook(gateway, orjson.dumps(body))).status_code == 200
    if wait:
        await webhooks_processed(gateway.app)


class TestOffSession:
    async def test_a_charge_whose_answer_cannot_be_read_is_kept_and_settled_by_its_webhook(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        customer, method = await saved_method(gateway, "4242424242424242")
        hold_deliveries(gateway)
        sandbox = gateway.app.state.sandbox
        answer = sandbox.charge_off_session
        monkeypatch.setattr(sandbox, "charge_off_session", unreadable(answer, KeyError("status")))
        body = payment_body(
            customer={"id": customer}, mode="off_session", payment_method_ref=method
        )
        payment_id = str(body["payment_id"])

        first = await gateway.client.post("/internal/v1/payments", json=body)

        assert first.status_code == 502
        assert first.json()["error"] == "ProviderUnavailable"
        kept = (await gateway.client.get(f"/internal/v1/payments/{payment_id}")).json()
        assert (kept["status"], kept["provider_ref"]) == ("pending", None)
        assert await call_states(gateway, payment_id) == [("charge_off_session", "unreadable")]
        monkeypatch.setattr(sandbox, "charge_off_session", answer)
        again = await gateway.client.post("/internal/v1/payments", json=body)
        assert (again.status_code, again.json()["status"]) == (200, "pending")

        await deliver_queued(gateway, "charge.succeeded")

        paid = (await gateway.client.get(f"/internal/v1/payments/{payment_id}")).json()
        assert paid["status"] == "succeeded"
        assert paid["provider_ref"] is not None
        charges = "SELECT count(*) FROM sandbox_charge WHERE payment_id = :id"
        assert await scalar(gateway, charges, id=payment_id) == 1
        assert await gateway.events() == [("payment.succeeded", payment_id)]

    async def test_a_batch_whose_answer_cannot_be_read_answers_502_per_charge_and_keeps_them(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        customer, method = await saved_method(gateway, "4242424242424242")
        hold_deliveries(gateway)
        sandbox = gateway.app.state.sandbox
        answer = sandbox.charge_off_session_many
        monkeypatch.setattr(
            sandbox, "charge_off_session_many", unreadable(answer, TypeError("not a list"))
        )
        charges = [charge(customer, method), charge(customer, method, amount=10000)]

        first = await gateway.client.post(BATCH_URL, json={"charges": charges})
        monkeypatch.setattr(sandbox, "charge_off_session_many", answer)
        again = await gateway.client.post(BATCH_URL, json={"charges": charges})
        await deliver_queued(gateway, "charge.succeeded")

        assert [r["status_code"] for r in first.json()["results"]] == [502, 502]
        assert [r["status_code"] for r in again.json()["results"]] == [200, 200]
        assert [r["payment"]["status"] for r in again.json()["results"]] == ["pending"] * 2
        for item in charges:
            payment = await gateway.client.get(f"/internal/v1/payments/{item['payment_id']}")
            assert payment.json()["status"] == "succeeded"
            charged = "SELECT count(*) FROM sandbox_charge WHERE payment_id = :id"
            assert await scalar(gateway, charged, id=item["payment_id"]) == 1
        assert sorted(await gateway.events()) == sorted(
            ("payment.succeeded", str(item["payment_id"])) for item in charges
        )

    async def test_a_charge_in_doubt_whose_only_report_was_parked_is_settled_by_a_refresh(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        customer, method = await saved_method(gateway, "4242424242424242")
        hold_deliveries(gateway)
        await stop_processor(gateway)
        sandbox = gateway.app.state.sandbox
        answer = sandbox.charge_off_session
        monkeypatch.setattr(sandbox, "charge_off_session", unreadable(answer, KeyError("status")))
        body = payment_body(
            customer={"id": customer}, mode="off_session", payment_method_ref=method
        )
        payment_id = str(body["payment_id"])
        first = await gateway.client.post("/internal/v1/payments", json=body)
        await deliver_queued(gateway, "charge.succeeded", wait=False)
        reads = sandbox.fetch_payments

        async def down(*args: Any) -> Any:
            raise base.ProviderError("the sandbox is down")

        # The provider cannot be read while the report is tried: it is parked, and it holds
        # the only reference to the charge (the answer that had it could not be read).
        monkeypatch.setattr(sandbox, "fetch_payments", down)
        await parking_processor(gateway, max_attempts=1).process_pending()
        monkeypatch.setattr(sandbox, "fetch_payments", reads)
        parked = (await gateway.client.get("/internal/v1/webhooks/parked")).json()["items"]

        refreshed = await gateway.client.get(
            f"/internal/v1/payments/{payment_id}", params={"refresh": "true"}
        )

        assert first.status_code == 502
        assert len(parked) == 1
        assert refreshed.json()["status"] == "succeeded"  # billing's reconciliation settles it
        assert (await gateway.client.get("/internal/v1/webhooks/parked")).json()["items"] == []
        charges = "SELECT count(*) FROM sandbox_charge WHERE payment_id = :id"
        assert await scalar(gateway, charges, id=payment_id) == 1
        assert await gateway.events() == [("payment.succeeded", payment_id)]

    async def test_a_batch_the_provider_could_not_be_asked_about_answers_502_per_charge(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        customer, method = await saved_method(gateway, "4242424242424242")
        sandbox = gateway.app.state.sandbox
        answer = sandbox.charge_off_session_many

        async def unreachable(*args: Any) -> Any:
            raise base.ProviderError("the sandbox could not be reached")

        monkeypatch.setattr(sandbox, "charge_off_session_many", unreachable)
        charges = [charge(customer, method), charge(customer, method, amount=10000)]
        first = await gateway.client.post(BATCH_URL, json={"charges": charges})
        monkeypatch.setattr(sandbox, "charge_off_session_many", answer)
        again = await gateway.client.post(BATCH_URL, json={"charges": charges})

        assert first.status_code == 200
        assert [r["status_code"] for r in first.json()["results"]] == [502, 502]
        # Nothing was asked: the calls are not left "in flight" (a report would wait on them).
        for item in charges:
            assert await call_states(gateway, str(item["payment_id"])) == [
                ("charge_off_session", "refused"),
                ("charge_off_session", "answered"),
            ]
        assert [r["status_code"] for r in again.json()["results"]] == [201, 201]


class TestReportBeforeCommit:
    async def test_a_report_that_arrives_before_the_payment_is_committed_is_kept_for_it(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        customer, method = await saved_method(gateway, "4242424242424242")
        hold_deliveries(gateway)
        sandbox = gateway.app.state.sandbox
        answer = sandbox.charge_off_session
        seen_meanwhile: list[tuple[bool, str | None]] = []

        async def reports_at_once(request: Any) -> Any:
            await answer(request)
            # The provider's webhook arrives and is processed while this request (and the
            # payment it inserted) is not committed yet; then the answer cannot be read.
            await deliver_queued(gateway, "charge.succeeded", wait=False)
            await processor(gateway).process_pending()
            seen_meanwhile.extend(await stored(gateway, request.payment_id))
            raise KeyError("status")

        monkeypatch.setattr(sandbox, "charge_off_session", reports_at_once)
        body = payment_body(
            customer={"id": customer}, mode="off_session", payment_method_ref=method
        )

        response = await gateway.client.post("/internal/v1/payments", json=body)
        paid = await wait_for_status(gateway.client, str(body["payment_id"]), "succeeded")

        assert response.status_code == 502
        assert seen_meanwhile == [(False, NOT_KNOWN_YET)]
        assert paid["provider_ref"] is not None
        assert await gateway.events() == [("payment.succeeded", str(body["payment_id"]))]


async def stored(gateway: Gateway, payment_id: object) -> list[tuple[bool, str | None]]:
    """(processed, outcome) of the webhooks stored about one payment."""
    async with gateway.app.state.resources.engine.connect() as conn:
        found = await conn.execute(
            sa.text(
                "SELECT processed_at IS NOT NULL, outcome FROM webhook_event WHERE payment_id = :id"
            ),
            {"id": payment_id},
        )
        return [(bool(row[0]), row[1]) for row in found]


class TestCheckout:
    async def test_a_checkout_whose_answer_cannot_be_read_is_opened_once_and_keeps_the_customer(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        sandbox = gateway.app.state.sandbox
        answer = sandbox.create_checkout
        monkeypatch.setattr(
            sandbox, "create_checkout", unreadable(answer, AttributeError("expires_at"))
        )
        body = payment_body()
        customer = body["customer"]["id"]  # type: ignore[index]

        first = await gateway.client.post("/internal/v1/payments", json=body)
        kept_customer = await scalar(
            gateway, "SELECT customer_ref FROM provider_customer WHERE user_id = :id", id=customer
        )
        monkeypatch.setattr(sandbox, "create_checkout", answer)
        again = await gateway.client.post("/internal/v1/payments", json=body)

        assert (first.status_code, first.json()["error"]) == (502, "ProviderUnavailable")
        assert kept_customer == f"cus_sb_{customer.replace('-', '')}"
        assert again.status_code == 200
        sessions = "SELECT count(*) FROM sandbox_session WHERE payment_id = :id"
        assert await scalar(gateway, sessions, id=body["payment_id"]) == 1
        paid = await gateway.pay(str(again.json()["checkout_url"]))
        assert paid.status_code == 200
        await wait_for_status(gateway.client, str(body["payment_id"]), "succeeded")

    async def test_a_checkout_in_doubt_asked_again_after_its_expiry_is_expired_not_opened(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        sandbox = gateway.app.state.sandbox
        answer = sandbox.create_checkout

        async def lost(*args: Any) -> Any:  # nothing opened, and the answer cannot be read
            raise KeyError("url")

        monkeypatch.setattr(sandbox, "create_checkout", lost)
        body = payment_body()
        first = await gateway.client.post("/internal/v1/payments", json=body)
        monkeypatch.setattr(sandbox, "create_checkout", answer)
        # The gateway comes back after a long outage; the checkout's time (60 min) is over.
        with clock.frozen(clock.now() + timedelta(hours=2)):
            again = await gateway.client.post("/internal/v1/payments", json=body)
            refreshed = await gateway.client.get(
                f"/internal/v1/payments/{body['payment_id']}", params={"refresh": "true"}
            )

        assert first.status_code == 502
        assert again.status_code == 200
        # Never a page that is dead before anyone opens it.
        assert (again.json()["status"], again.json()["checkout_url"]) == ("expired", None)
        assert refreshed.json()["status"] == "expired"
        sessions = "SELECT count(*) FROM sandbox_session WHERE payment_id = :id"
        assert await scalar(gateway, sessions, id=body["payment_id"]) == 0
        assert await gateway.events() == [("payment.expired", str(body["payment_id"]))]

    async def test_a_checkout_in_doubt_past_its_expiry_is_expired_by_a_refresh(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        sandbox = gateway.app.state.sandbox

        async def lost(*args: Any) -> Any:
            raise KeyError("url")

        monkeypatch.setattr(sandbox, "create_checkout", lost)
        body = payment_body()
        first = await gateway.client.post("/internal/v1/payments", json=body)
        url = f"/internal/v1/payments/{body['payment_id']}"
        still = await gateway.client.get(url, params={"refresh": "true"})
        with clock.frozen(clock.now() + timedelta(hours=2)):
            refreshed = await gateway.client.get(url, params={"refresh": "true"})

        assert first.status_code == 502
        assert still.json()["status"] == "pending"  # may still be opened by a retry
        assert refreshed.json()["status"] == "expired"  # billing's reconciliation settles it
        assert await gateway.events() == [("payment.expired", str(body["payment_id"]))]


class TestRefresh:
    async def test_a_refresh_whose_answer_cannot_be_read_is_a_502_and_changes_nothing(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        payment_id = await paid_payment(gateway)
        sandbox = gateway.app.state.sandbox

        async def broken(provider_ref: str) -> Any:
            raise KeyError("status")

        monkeypatch.setattr(sandbox, "fetch_payment", broken)
        refreshed = await gateway.client.get(
            f"/internal/v1/payments/{payment_id}", params={"refresh": "true"}
        )

        assert (refreshed.status_code, refreshed.json()["error"]) == (502, "ProviderUnavailable")
        stored = (await gateway.client.get(f"/internal/v1/payments/{payment_id}")).json()
        assert stored["status"] == "succeeded"


class TestRefund:
    async def test_a_refund_whose_answer_cannot_be_read_stays_pending_until_the_provider_says(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        payment_id = await paid_payment(gateway, amount=5000)
        hold_deliveries(gateway)
        sandbox = gateway.app.state.sandbox
        answer = sandbox.refund
        monkeypatch.setattr(sandbox, "refund", unreadable(answer, ValueError("amount")))
        refund_id = str(uuid4())

        response = await refund(gateway, payment_id, 5000, refund_id)
        monkeypatch.setattr(sandbox, "refund", answer)
        pending = (await gateway.client.get(f"/internal/v1/refunds/{refund_id}")).json()
        more = await refund(gateway, payment_id, 1)
        await deliver_queued(gateway, "refund.succeeded")
        settled = (await gateway.client.get(f"/internal/v1/refunds/{refund_id}")).json()

        assert (response.status_code, response.json()["error"]) == (502, "ProviderUnavailable")
        assert pending["status"] == "pending"
        assert more.status_code == 409  # the whole amount is held by the refund in doubt
        assert (settled["status"], settled["payment_status"]) == ("succeeded", "refunded")
        refunds = "SELECT count(*) FROM sandbox_refund"
        assert await scalar(gateway, refunds) == 1
        assert [kind for kind, _ in await gateway.events()] == ["refund.succeeded"]

    async def test_a_refund_in_doubt_its_provider_never_made_is_made_by_a_refresh_once(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        payment_id = await paid_payment(gateway, amount=5000)
        hold_deliveries(gateway)
        refund_id, response = await refund_lost_on_the_way(gateway, payment_id, monkeypatch)
        url = f"/internal/v1/refunds/{refund_id}"
        pending = (await gateway.client.get(url)).json()
        made = (await gateway.client.get(url, params={"refresh": "true"})).json()
        again = (await gateway.client.get(url, params={"refresh": "true"})).json()
        await deliver_queued(gateway, "refund.succeeded")  # the provider's report, late

        assert response.status_code == 502
        assert pending["status"] == "pending"
        assert (made["status"], made["payment_status"]) == ("succeeded", "refunded")
        assert again == made
        assert await scalar(gateway, "SELECT count(*) FROM sandbox_refund") == 1
        assert [kind for kind, _ in await gateway.events()] == ["refund.succeeded"]

    async def test_a_refund_in_doubt_its_provider_made_is_read_not_made_again_by_a_refresh(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        payment_id = await paid_payment(gateway, amount=5000)
        hold_deliveries(gateway)
        sandbox = gateway.app.state.sandbox
        answer = sandbox.refund
        monkeypatch.setattr(sandbox, "refund", unreadable(answer, ValueError("amount")))
        asked_again: list[object] = []

        async def counted(*args: Any) -> Any:
            asked_again.append(args)
            return await answer(*args)

        refund_id = str(uuid4())
        await refund(gateway, payment_id, 5000, refund_id)
        monkeypatch.setattr(sandbox, "refund", counted)
        made = (
            await gateway.client.get(f"/internal/v1/refunds/{refund_id}", params={"refresh": "1"})
        ).json()

        assert (made["status"], made["payment_status"]) == ("succeeded", "refunded")
        assert asked_again == []
        assert await scalar(gateway, "SELECT count(*) FROM sandbox_refund") == 1

    async def test_a_refund_in_doubt_the_provider_still_does_not_list_next_day_fails(
        self, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        payment_id = await paid_payment(gateway, amount=5000)
        refund_id, _ = await refund_lost_on_the_way(gateway, payment_id, monkeypatch)
        with clock.frozen(clock.now() + timedelta(hours=21)):
            kept = (
                await gateway.client.get(
                    f"/internal/v1/refunds/{refund_id}", params={"refresh": "true"}
                )
            ).json()

        again = await refund(gateway, payment_id, 5000)

        assert (kept["status"], kept["payment_status"]) == ("failed", "succeeded")
        assert "never made" in kept["failure_message"]
        assert [kind for kind, _ in await gateway.events()] == ["refund.failed", "refund.succeeded"]
        assert again.status_code == 201, again.text  # its amount is refundable again
        assert await scalar(gateway, "SELECT count(*) FROM sandbox_refund") == 1
