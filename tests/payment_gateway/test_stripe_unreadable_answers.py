"""What the gateway does when Stripe (here, the local stand-in) answers something the adapter
cannot read, declines before making a PaymentIntent, or fails a checkout after making the
customer: a 502, never a 500; what may have happened at Stripe stays on record; nothing is
charged, refunded or created twice."""

# ruff: noqa: F811  (the fixtures imported from test_stripe_gateway are parameters here)
from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import uuid4

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from payment_gateway.webhooks.processor import WebhookProcessor
from shared import events
from tests import support
from tests.payment_gateway.conftest import payment_body, webhooks_processed
from tests.payment_gateway.stripe_standin import StripeStandin, sign_webhook, webhook_body
from tests.payment_gateway.test_stripe_gateway import SECRET, client, standin  # noqa: F401
from tests.shared.messaging import Probe

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

Client = tuple[httpx.AsyncClient, Probe]


async def deliver(
    http: httpx.AsyncClient, event_type: str, obj: dict[str, Any], event_id: str
) -> None:
    body = webhook_body(event_type, obj, event_id=event_id)
    response = await http.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign_webhook(body, SECRET, int(time.time()))},
    )
    assert response.status_code == 200


async def rows(http: httpx.AsyncClient, query: str, **params: object) -> list[tuple[Any, ...]]:
    async with http.app.state.resources.engine.connect() as conn:  # type: ignore[attr-defined]
        return [tuple(row) for row in await conn.execute(sa.text(query), params)]


async def calls(http: httpx.AsyncClient) -> list[tuple[str, str, str | None]]:
    """(operation, state, payment id) of every recorded provider call, in order."""
    found = await rows(http, "SELECT operation, state, payment_id FROM provider_call ORDER BY id")
    return [(str(op), str(state), str(pid) if pid else None) for op, state, pid in found]


async def published(http: httpx.AsyncClient, probe: Probe) -> list[tuple[str, str]]:
    await support.outbox_published(http.app.state.resources.engine)  # type: ignore[attr-defined]
    return [(e.type, str(e.data.payment_id)) for e in await probe.drain()]  # type: ignore[attr-defined]


def off_session(**overrides: object) -> dict[str, object]:
    return payment_body(mode="off_session", payment_method_ref="pm_card_visa", **overrides)


class TestUnreadableCharge:
    async def test_charge_answer_without_amount_is_a_502_and_its_webhook_settles_it_once(
        self, client: Client, standin: StripeStandin
    ) -> None:
        http, probe = client
        standin.drop_answer_field("POST", "/v1/payment_intents", "amount")
        body = off_session()
        payment_id = str(body["payment_id"])

        first = await http.post("/internal/v1/payments", json=body)

        assert first.status_code == 502
        assert first.json()["error"] == "ProviderUnavailable"
        kept = (await http.get(f"/internal/v1/payments/{payment_id}")).json()
        assert (kept["status"], kept["provider_ref"]) == ("pending", None)
        assert await calls(http) == [("charge_off_session", "unreadable", payment_id)]

        # billing retries the same id: the stored payment answers, Stripe is not asked again
        standin.restore_answers()
        again = await http.post("/internal/v1/payments", json=body)
        assert (again.status_code, again.json()["status"]) == (200, "pending")
        assert len(standin.requests_to("POST", "/v1/payment_intents")) == 1

        # Stripe reports the charge it made: the payment takes its reference and succeeds
        [intent] = standin.objects_of("payment_intent")
        await deliver(http, "payment_intent.succeeded", intent, "evt_unreadable_ok")
        await webhooks_processed(http.app)  # type: ignore[attr-defined]
        paid = (await http.get(f"/internal/v1/payments/{payment_id}")).json()
        assert (paid["status"], paid["provider_ref"]) == ("succeeded", intent["id"])
        assert await published(http, probe) == [("payment.succeeded", payment_id)]

    async def test_charge_answered_with_a_body_that_is_not_json_is_a_502_that_keeps_it(
        self, client: Client, standin: StripeStandin
    ) -> None:
        http, probe = client
        standin.garble_answers("POST", "/v1/payment_intents")
        body = off_session()

        response = await http.post("/internal/v1/payments", json=body)

        assert (response.status_code, response.json()["error"]) == (502, "ProviderUnavailable")
        kept = (await http.get(f"/internal/v1/payments/{body['payment_id']}")).json()
        assert kept["status"] == "pending"
        assert await calls(http) == [("charge_off_session", "unreadable", body["payment_id"])]
        assert len(standin.objects_of("payment_intent")) == 1  # Stripe did charge
        assert await published(http, probe) == []

    async def test_batch_charge_answer_without_currency_is_a_502_for_that_charge_only(
        self, client: Client, standin: StripeStandin
    ) -> None:
        http, _ = client
        standin.drop_answer_field("POST", "/v1/payment_intents", "currency")
        charges = [{k: v for k, v in off_session().items() if k in BATCH_FIELDS} for _ in range(2)]

        response = await http.post(
            "/internal/v1/payments/off-session/batch", json={"charges": charges}
        )

        assert response.status_code == 200
        results = response.json()["results"]
        assert [r["status_code"] for r in results] == [502, 502]
        assert {r["error"]["error"] for r in results} == {"ProviderUnavailable"}
        again = await http.post(
            "/internal/v1/payments/off-session/batch", json={"charges": charges}
        )
        assert [r["status_code"] for r in again.json()["results"]] == [200, 200]
        assert [r["payment"]["status"] for r in again.json()["results"]] == ["pending"] * 2
        assert len(standin.requests_to("POST", "/v1/payment_intents")) == 2  # once each


BATCH_FIELDS = (
    "payment_id",
    "customer",
    "amount",
    "currency",
    "description",
    "payment_method_ref",
    "metadata",
)


class TestUnreadableCheckout:
    async def test_checkout_answer_without_expiry_is_a_502_and_the_retry_gets_the_same_session(
        self, client: Client, standin: StripeStandin
    ) -> None:
        http, _ = client
        standin.drop_answer_field("POST", "/v1/checkout/sessions", "expires_at")
        body = payment_body()

        first = await http.post("/internal/v1/payments", json=body)

        assert (first.status_code, first.json()["error"]) == (502, "ProviderUnavailable")
        kept = (await http.get(f"/internal/v1/payments/{body['payment_id']}")).json()
        assert (kept["status"], kept["checkout_url"]) == ("pending", None)
        standin.restore_answers()
        again = await http.post("/internal/v1/payments", json=body)
        [session] = standin.objects_of("checkout.session")
        assert again.status_code == 200
        assert (again.json()["provider_ref"], again.json()["checkout_url"]) == (
            session["id"],
            session["url"],
        )
        assert [c[:2] for c in await calls(http)] == [
            ("create_customer", "answered"),
            ("create_checkout", "unreadable"),
            ("create_checkout", "answered"),
        ]


class TestUnreadableRead:
    async def test_refresh_whose_answer_lacks_the_status_is_a_502_and_changes_nothing(
        self, client: Client, standin: StripeStandin
    ) -> None:
        http, _ = client
        created = (await http.post("/internal/v1/payments", json=payment_body())).json()
        standin.complete_session(created["provider_ref"])
        path = f"/v1/checkout/sessions/{created['provider_ref']}"
        standin.drop_answer_field("GET", path, "status")

        refreshed = await http.get(
            f"/internal/v1/payments/{created['payment_id']}", params={"refresh": "true"}
        )
        standin.restore_answers()
        again = await http.get(
            f"/internal/v1/payments/{created['payment_id']}", params={"refresh": "true"}
        )

        assert (refreshed.status_code, refreshed.json()["error"]) == (502, "ProviderUnavailable")
        assert (again.status_code, again.json()["status"]) == (200, "succeeded")


class TestUnreadableRefund:
    async def test_refund_answer_without_amount_keeps_the_refund_pending_until_stripe_says(
        self, client: Client, standin: StripeStandin
    ) -> None:
        http, _ = client
        created = (await http.post("/internal/v1/payments", json=payment_body(amount=5000))).json()
        payment_id = created["payment_id"]
        standin.complete_session(created["provider_ref"])
        await http.get(f"/internal/v1/payments/{payment_id}", params={"refresh": "true"})
        standin.drop_answer_field("POST", "/v1/refunds", "amount")
        refund = {"refund_id": str(uuid4()), "payment_id": payment_id, "amount": 5000}

        response = await http.post("/internal/v1/refunds", json=refund)

        assert (response.status_code, response.json()["error"]) == (502, "ProviderUnavailable")
        kept = (await http.get(f"/internal/v1/refunds/{refund['refund_id']}")).json()
        assert kept["status"] == "pending"
        # its amount stays held: the money may already be on its way back
        another = {**refund, "refund_id": str(uuid4())}
        assert (await http.post("/internal/v1/refunds", json=another)).status_code == 409
        assert len(standin.objects_of("refund")) == 1

        settled = (
            await http.get(
                f"/internal/v1/refunds/{refund['refund_id']}", params={"refresh": "true"}
            )
        ).json()
        assert (settled["status"], settled["payment_status"]) == ("succeeded", "refunded")
        outbox = await rows(http, "SELECT event_type FROM outbox")
        assert sorted(row[0] for row in outbox) == ["payment.succeeded", "refund.succeeded"]


class TestDeclineWithoutIntent:
    async def test_is_failed_without_a_reference_and_refresh_answers_it(
        self, client: Client, standin: StripeStandin
    ) -> None:
        http, probe = client
        standin.declining_without_intent["pm_card_visa"] = "do_not_honor"
        body = off_session()

        charged = await http.post("/internal/v1/payments", json=body)
        refreshed = await http.get(
            f"/internal/v1/payments/{body['payment_id']}", params={"refresh": "true"}
        )

        assert charged.status_code == 201
        assert (charged.json()["status"], charged.json()["provider_ref"]) == ("failed", None)
        assert charged.json()["failure_code"] == "do_not_honor"
        assert (refreshed.status_code, refreshed.json()["status"]) == (200, "failed")
        [event] = await _drained(http, probe)
        assert isinstance(event.data, events.PaymentFailed)

    async def test_a_webhook_naming_it_that_cannot_be_reread_is_parked_not_retried_forever(
        self, client: Client, standin: StripeStandin
    ) -> None:
        http, _ = client
        app = http.app  # type: ignore[attr-defined]
        [task] = [t for t in app.state.resources.tasks if t.get_name() == "webhook-processor"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        standin.declining_without_intent["pm_card_visa"] = "do_not_honor"
        body = off_session()
        await http.post("/internal/v1/payments", json=body)
        ghost = {
            "id": "pi_ghost",
            "object": "payment_intent",
            "metadata": {"payment_id": body["payment_id"]},
        }
        await deliver(http, "payment_intent.payment_failed", ghost, "evt_ghost")
        parked_before = _parked_metric("stripe")
        run = WebhookProcessor(
            app.state.resources.session_factory,
            app.state.providers,
            max_attempts=3,
            max_backoff=0.05,
        )

        for _ in range(10):
            await run.process_pending()
            await asyncio.sleep(0.1)

        [(attempts, parked, processed, outcome)] = await rows(
            http, "SELECT attempts, parked_at IS NOT NULL, processed_at, outcome FROM webhook_event"
        )
        assert (attempts, parked, processed) == (3, True, None)
        assert str(outcome).startswith("parked after 3 attempts; failed: ProviderError")
        assert _parked_metric("stripe") == parked_before + 1
        # each attempt reads it twice (in its batch, then alone); nothing after parking
        reads = standin.requests_to("GET", "/v1/payment_intents/pi_ghost")
        assert len(reads) == 2 * 3
        await run.process_pending()
        assert len(standin.requests_to("GET", "/v1/payment_intents/pi_ghost")) == len(reads)
        payment = (await http.get(f"/internal/v1/payments/{body['payment_id']}")).json()
        assert (payment["status"], payment["provider_ref"]) == ("failed", None)


class TestCustomerKept:
    async def test_checkout_failing_after_the_customer_was_made_reuses_it_on_the_retry(
        self, client: Client, standin: StripeStandin
    ) -> None:
        http, _ = client
        standin.ignore_idempotency_keys = True  # as localstripe, and Stripe after 24 hours
        standin.fail_sessions_after_customer = True
        body = payment_body()

        first = await http.post("/internal/v1/payments", json=body)
        standin.fail_sessions_after_customer = False
        again = await http.post("/internal/v1/payments", json=body)
        later = await http.post(
            "/internal/v1/payments", json=payment_body(customer=body["customer"])
        )

        assert (first.status_code, first.json()["error"]) == (502, "ProviderUnavailable")
        assert (again.status_code, later.status_code) == (201, 201)
        [customer] = standin.objects_of("customer")
        sessions = standin.objects_of("checkout.session")
        assert [s["customer"] for s in sessions] == [customer["id"], customer["id"]]
        kept = await rows(http, "SELECT provider, customer_ref FROM provider_customer")
        assert kept == [("stripe", customer["id"])]


def _parked_metric(provider: str) -> float:
    value = REGISTRY.get_sample_value("gateway_webhook_events_parked_total", {"provider": provider})
    return float(value or 0.0)


async def _drained(
    http: httpx.AsyncClient, probe: Probe
) -> list[events.Envelope[events.EventPayload]]:
    await support.outbox_published(http.app.state.resources.engine)  # type: ignore[attr-defined]
    return list(await probe.drain())
