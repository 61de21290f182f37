"""The notifier on the real database and broker, a real SMTP server and a webhook stand-in.

* :class:`SmtpServer` is aiosmtpd on a free port keeping every message it accepts; it can refuse
  the next N messages (``451``) or be stopped and started again (connection refused meanwhile).
* :class:`WebhookReceiver` is a small Starlette app served over real HTTP that records every
  request (it can answer 500 to the next N).
* ``notifier`` runs the notifier app's lifespan (consumer, senders, API) with a fast retry
  schedule, and publishes events to the broker the way billing's relay does.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from uuid import UUID, uuid4

import httpx
import orjson
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from notifier.app import create_app
from notifier.config import NotifierSettings
from notifier.handlers import CONSUMER
from notifier.models import Notification
from shared import events
from shared.auth import AuthSettings, mint_service_token, mint_user_token
from shared.broker import Broker, ConsumerQueues
from shared.consumer import DEFAULT_RETRY_DELAYS
from shared.money import Money
from shared.settings import ServiceSettings
from tests import support

NOTIFIER_TABLES = ("notification", "inbox", "outbox")
WEBHOOK_SECRET = "whsec_notifier_tests"
MAX_ATTEMPTS = 3
BASE_URL = "http://notifier.test"


# --- SMTP -------------------------------------------------------------------------------------


class Mailbox:
    """aiosmtpd handler: keeps what it accepts, refuses on demand (runs in aiosmtpd's thread)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse_next = 0
        self.refused = 0

    async def handle_DATA(  # noqa: N802 (the name aiosmtpd calls)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.refuse_next > 0:
            self.refuse_next -= 1
            self.refused += 1
            return "451 4.3.0 mailbox busy, try again later"
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 2.0.0 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.mailbox = Mailbox()
        self._controller: Controller | None = None

    async def start(self) -> None:
        # A stopped Controller cannot start again: a new one on the same port is "back up".
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        await asyncio.to_thread(self._controller.start)

    async def stop(self) -> None:
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def reset(self) -> None:
        self.mailbox.messages.clear()
        self.mailbox.refuse_next = self.mailbox.refused = 0


@pytest.fixture(scope="session")
async def smtp() -> AsyncIterator[SmtpServer]:
    server = SmtpServer(support.free_port())
    await server.start()
    yield server
    await server.stop()


# --- webhook stand-in -------------------------------------------------------------------------


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class WebhookReceiver:
    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    fail_next: int = 0

    def app(self) -> Starlette:
        async def receive(request: Request) -> JSONResponse:
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"error": "down for maintenance"}, status_code=500)
            self.deliveries.append(Delivery(dict(request.headers), await request.body()))
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/notifications", receive, methods=["POST"])])

    def for_user(self, user_id: UUID) -> list[Delivery]:
        return [d for d in self.deliveries if d.json()["user_id"] == str(user_id)]

    def reset(self) -> None:
        self.deliveries.clear()
        self.fail_next = 0


@pytest.fixture(scope="session")
async def webhook() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    async with support.served(receiver.app(), support.free_port()) as base_url:
        receiver.url = f"{base_url}/notifications"
        yield receiver


# --- the notifier -----------------------------------------------------------------------------


def service_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_service_token(AuthSettings(), 'cinema-ops')}"}


def admin_headers() -> dict[str, str]:
    token = mint_user_token(AuthSettings(), uuid4(), email="ops@example.com", roles=["admin"])
    return {"Authorization": f"Bearer {token}"}


def user_headers(user_id: UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_user_token(AuthSettings(), user_id)}"}


@dataclass
class Notifier:
    app: FastAPI
    http: httpx.AsyncClient  # no token: tests choose theirs
    broker: Broker
    smtp: SmtpServer
    webhook: WebhookReceiver

    async def publish(
        self, payload: events.EventPayload, *, event_id: UUID | None = None, times: int = 1
    ) -> UUID:
        """Publish one event (``times`` deliveries of the very same envelope); its id."""
        envelope = events.wrap(payload, producer="billing_api", event_id=event_id)
        for _ in range(times):
            await self.broker.publish(
                events.encode(envelope), routing_key=envelope.type, message_id=str(envelope.id)
            )
        return envelope.id

    async def rows(self, event_id: UUID) -> dict[str, Notification]:
        """The event's notifications by channel."""
        async with self.app.state.session_factory() as session:
            found = await session.scalars(
                sa.select(Notification).where(Notification.event_id == event_id)
            )
            return {row.channel: row for row in found}

    async def wait_for(self, event_id: UUID, **statuses: str) -> dict[str, Notification]:
        """Wait until each named channel's row has the given status (``email="sent"``)."""
        found: dict[str, Notification] = {}

        async def reached() -> bool:
            nonlocal found
            found = await self.rows(event_id)
            return all(
                channel in found and found[channel].status == status
                for channel, status in statuses.items()
            )

        try:
            await support.eventually(reached, timeout=15.0)
        except TimeoutError:
            pytest.fail(f"notifications of {event_id} never reached {statuses}: {found}")
        return found


def notifier_settings(
    service_settings: ServiceSettings, smtp: SmtpServer, webhook: WebhookReceiver, **overrides: Any
) -> NotifierSettings:
    values: dict[str, Any] = {
        **service_settings.model_dump(),
        "smtp_port": smtp.port,
        "smtp_timeout_seconds": 2.0,
        "webhook_url": webhook.url,
        "webhook_secret": WEBHOOK_SECRET,
        "retry_delays_seconds": (0.05, 0.1),
        "max_attempts": MAX_ATTEMPTS,
        "sender_interval_seconds": 0.05,
        **overrides,
    }
    return NotifierSettings(**values)


async def truncate(app: FastAPI) -> None:
    await support.truncate(app.state.resources.engine, ", ".join(NOTIFIER_TABLES))


@pytest.fixture
def notifier_overrides() -> dict[str, Any]:
    """Settings a test changes: ``@pytest.mark.parametrize("notifier_overrides", [{...}])``."""
    return {}


@pytest.fixture
async def notifier(
    service_settings: ServiceSettings,
    broker: Broker,
    smtp: SmtpServer,
    webhook: WebhookReceiver,
    notifier_overrides: dict[str, Any],
) -> AsyncIterator[Notifier]:
    queues = ConsumerQueues(broker.prefix, CONSUMER, DEFAULT_RETRY_DELAYS)
    # Other tests (billing's) may have left events in the notifier's queue: start from empty.
    await support.delete_consumer_queues(broker, queues)
    smtp.reset()
    webhook.reset()
    app = create_app(notifier_settings(service_settings, smtp, webhook, **notifier_overrides))
    async with app.router.lifespan_context(app):
        await truncate(app)
        async with asyncio.timeout(20):
            await app.state.consuming.wait()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL) as http:
            yield Notifier(app, http, broker, smtp, webhook)
    await support.delete_consumer_queues(broker, queues)
    if not smtp.running:  # a test that stopped the server must not break the next one
        await smtp.start()


# --- events -----------------------------------------------------------------------------------

RUB = Money(amount=152745, currency="RUB")
MOMENT = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)
ACCOUNT_URL = "https://cinema.example/account"
ACTION_URL = "https://bank.example/3ds/confirm?session=abc&step=1"


def person(**overrides: Any) -> dict[str, Any]:
    user_id = uuid4()
    values: dict[str, Any] = {
        "user_id": user_id,
        "email": f"viewer-{user_id.hex[:12]}@example.com",
        "timezone": "Europe/Moscow",
    }
    values.update(overrides)
    return values


def plan() -> events.PlanSummary:
    return events.PlanSummary(plan_id=uuid4(), code="premium", name="Premium")


def notice(event_type: str, **overrides: Any) -> events.UserNotice:
    """One business event of ``event_type`` for a fresh person, amounts of 1 527,45 ₽."""
    who = person(**overrides)
    subscription: dict[str, Any] = {"subscription_id": uuid4(), "plan": plan()}
    gift: dict[str, Any] = {"gift_id": uuid4(), "plan": plan(), "months": 3}
    builders: dict[str, Any] = {
        "subscription.activated": lambda: events.SubscriptionActivated(
            **who, **subscription, amount=RUB, current_period_end=MOMENT
        ),
        "subscription.renewed": lambda: events.SubscriptionRenewed(
            **who, **subscription, amount=RUB, current_period_end=MOMENT
        ),
        "subscription.plan_changed": lambda: events.SubscriptionPlanChanged(
            **who,
            **subscription,
            previous_plan=events.PlanSummary(plan_id=uuid4(), code="basic", name="Basic"),
            amount=RUB,
            credit=RUB,
            current_period_end=MOMENT,
        ),
        "subscription.renewal_failed": lambda: events.SubscriptionRenewalFailed(
            **who,
            **subscription,
            amount=RUB,
            next_attempt_at=MOMENT,
            reason="card declined",
            update_url=f"{ACCOUNT_URL}?subscription_id={subscription['subscription_id']}",
        ),
        "subscription.expiring": lambda: events.SubscriptionExpiring(
            **who, **subscription, current_period_end=MOMENT
        ),
        "subscription.grace_started": lambda: events.SubscriptionGraceStarted(
            **who,
            **subscription,
            amount_due=RUB,
            grace_until=MOMENT,
            update_url=f"{ACCOUNT_URL}?subscription_id={subscription['subscription_id']}",
        ),
        "subscription.expired": lambda: events.SubscriptionExpired(
            **who, **subscription, expired_at=MOMENT
        ),
        "subscription.canceled": lambda: events.SubscriptionCanceled(
            **who, **subscription, canceled_at=MOMENT, access_until=MOMENT, refund_amount=RUB
        ),
        "purchase.completed": lambda: events.PurchaseCompleted(
            **who,
            purchase_id=uuid4(),
            movie_id=uuid4(),
            movie_title="Brother",
            kind="rent",
            amount=RUB,
            valid_until=MOMENT,
        ),
        "refund.completed": lambda: events.RefundCompleted(
            **who, refund_id=uuid4(), payment_id=uuid4(), amount=RUB
        ),
        "wallet.topped_up": lambda: events.WalletToppedUp(**who, amount=RUB, balance=RUB),
        "subscription.payment_action_required": lambda: events.SubscriptionPaymentActionRequired(
            **who,
            **subscription,
            payment_id=uuid4(),
            amount=RUB,
            action_url=ACTION_URL,
            confirm_by=MOMENT,
        ),
        "subscription.payment_method_required": lambda: events.SubscriptionPaymentMethodRequired(
            **who,
            **subscription,
            amount_due=RUB,
            reason="card reported lost",
            grace_until=MOMENT,
            update_url=f"{ACCOUNT_URL}?subscription_id={subscription['subscription_id']}",
        ),
        "payment_method.expiring": lambda: events.PaymentMethodExpiring(
            **who,
            **subscription,
            card=events.CardSummary(brand="visa", last4="4242", exp_month=1, exp_year=2027),
            next_renewal_at=MOMENT,
            update_url=f"{ACCOUNT_URL}?subscription_id={subscription['subscription_id']}",
        ),
        "subscription.paused": lambda: events.SubscriptionPaused(
            **who, **subscription, starts_at=MOMENT, resumes_at=MOMENT + timedelta(days=30)
        ),
        "subscription.resumed": lambda: events.SubscriptionResumed(
            **who, **subscription, resumed_at=MOMENT, current_period_end=MOMENT + timedelta(days=30)
        ),
        "household.invited": lambda: events.HouseholdInvited(
            **who,
            **subscription,
            member_id=uuid4(),
            owner_email="owner@example.com",
            code="hh_Xy12AbCdEfGhIjKlMnOpQr",
            join_url=f"{ACCOUNT_URL}/household?code=hh_Xy12AbCdEfGhIjKlMnOpQr",
        ),
        "household.joined": lambda: events.HouseholdJoined(
            **who, **subscription, member_id=uuid4(), owner_email="owner@example.com"
        ),
        "household.removed": lambda: events.HouseholdRemoved(
            **who, **subscription, member_id=uuid4(), reason="seats_reduced"
        ),
        "gift.purchased": lambda: events.GiftPurchased(
            **who,
            **gift,
            amount=RUB,
            code=GIFT_CODE,
            recipient_email="friend@example.com",
            deliver_at=MOMENT,
            expires_at=MOMENT + timedelta(days=365),
        ),
        "gift.delivered": lambda: events.GiftDelivered(
            **who,
            **gift,
            code=GIFT_CODE,
            redeem_url=f"{ACCOUNT_URL}/gifts?code={GIFT_CODE}",
            message="Happy birthday!",
            from_email="buyer@example.com",
            expires_at=MOMENT,
        ),
        "gift.redeemed": lambda: events.GiftRedeemed(
            **who, **gift, recipient_email="friend@example.com", redeemed_at=MOMENT
        ),
        "gift.expiring": lambda: events.GiftExpiring(
            **who,
            **gift,
            code=GIFT_CODE,
            recipient_email="friend@example.com",
            expires_at=MOMENT,
        ),
    }
    built: events.UserNotice = builders[event_type]()
    return built


EVENT_TYPES = (
    "subscription.activated",
    "subscription.renewed",
    "subscription.plan_changed",
    "subscription.renewal_failed",
    "subscription.expiring",
    "subscription.grace_started",
    "subscription.expired",
    "subscription.canceled",
    "purchase.completed",
    "refund.completed",
    "wallet.topped_up",
    "subscription.payment_action_required",
    "subscription.payment_method_required",
    "payment_method.expiring",
    "subscription.paused",
    "subscription.resumed",
    "household.invited",
    "household.joined",
    "household.removed",
    "gift.purchased",
    "gift.delivered",
    "gift.redeemed",
    "gift.expiring",
)

GIFT_CODE = "ABCD-EFGH-JKMN-PQRS"

LINKED = {
    "subscription.payment_action_required": "action_url",
    "subscription.payment_method_required": "update_url",
    "payment_method.expiring": "update_url",
    "subscription.renewal_failed": "update_url",
    "subscription.grace_started": "update_url",
    "household.invited": "join_url",
    "gift.delivered": "redeem_url",
}
"""The events that say where to put things right, and the field with the address."""
