"""The purchase story, step by step, against a running suite.

Everything goes through the clients generated from the services' OpenAPI documents
(:mod:`demo.clients`). What differs between ``make demo`` and the e2e test is injected: how a
checkout page is paid (a real browser or the sandbox's JSON twin), how the scheduled jobs are run
at a moment in the future, and what extra witnesses exist (the test's SMTP server and auth
stand-in); each step prints what it did and what the services answered.
"""

from __future__ import annotations

import asyncio
import calendar
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from demo.clients import Api
from shared.auth import AuthSettings, mint_service_token, mint_user_token

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
FAILS_LATER_CARD = "4000000000000341"
"""Saves fine at the checkout; every later off-session charge is declined."""
PROMO = "WELCOME15"

Pay = Callable[[str, str], Awaitable[None]]
"""Pay a checkout URL with a card number."""
RunJobs = Callable[[datetime], Awaitable[None]]
"""Run billing's scheduled jobs once, as if it were that moment."""


class StoryFailed(AssertionError):
    """The suite did not behave as the story says."""


async def within(
    seconds: float, check: Callable[[], Awaitable[bool]], what: str, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise StoryFailed(f"not within {seconds:.0f} s: {what}")
        await asyncio.sleep(interval)


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise StoryFailed(what)


@dataclass
class Person:
    name: str
    id: uuid.UUID
    email: str
    token: str
    billing: Api
    access: Api


@dataclass
class Story:
    urls: dict[str, str]
    pay: Pay
    run_jobs: RunJobs
    say: Callable[[str], None] = print
    auth: AuthSettings = field(default_factory=AuthSettings)
    wait_seconds: float = 20.0
    source_url: str | None = None
    """The movie admin's database the ETL reads; its films must reach billing's catalog."""
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    def __post_init__(self) -> None:
        service = mint_service_token(self.auth, "demo", ttl_seconds=3600)
        admin = mint_user_token(self.auth, uuid.uuid4(), roles=["admin"], ttl_seconds=3600)
        self.public = Api("billing", self.urls["billing"])
        self.gateway = Api("gateway", self.urls["gateway"])
        self.notifier = Api("notifier", self.urls["notifier"], service)
        self.admin_billing = Api("billing", self.urls["billing"], admin)

    def step(self, title: str) -> None:
        self.say(f"\n== {title}")

    def person(self, name: str) -> Person:
        user_id = uuid.uuid4()
        email = f"{name.lower()}.{self.run}@example.com"
        token = mint_user_token(self.auth, user_id, email=email, ttl_seconds=3600)
        self.say(f"   {name}: user {user_id} <{email}>")
        return Person(
            name,
            user_id,
            email,
            token,
            Api("billing", self.urls["billing"], token),
            Api("access", self.urls["access"], token),
        )

    # --- the catalog -----------------------------------------------------------------------

    async def plans(self) -> dict[str, Any]:
        self.step("GET /api/v1/plans")
        page = await self.public.call("catalog.list_plans")
        plans = {plan.code: plan for plan in page.items}
        for plan in page.items:
            self.say(
                f"   {plan.code:10} {plan.name:14}"
                f" {plan.price.amount / 100:>8.2f} {plan.price.currency}"
            )
        expect({"basic", "premium"} <= set(plans), f"the demo plans are listed: {sorted(plans)}")
        return plans

    async def plan_movies(self, plan_id: uuid.UUID) -> list[uuid.UUID]:
        detail = await self.public.call("catalog.get_plan", plan_id)
        return list(detail.movie_ids)

    # --- access ----------------------------------------------------------------------------

    async def allowed(self, who: Person, movie_id: uuid.UUID) -> bool:
        answer = await who.access.call("access.check", who.id, movie_id)
        return bool(answer.allowed)

    async def access_becomes(self, who: Person, movie_id: uuid.UUID, allowed: bool) -> None:
        async def now_so() -> bool:
            return await self.allowed(who, movie_id) == allowed

        started = time.monotonic()
        await within(self.wait_seconds, now_so, f"access of {who.name} becomes {allowed}")
        self.say(
            f"   access {who.name} -> movie {movie_id}: {'YES' if allowed else 'no'}"
            f" (after {time.monotonic() - started:.1f} s)"
        )

    # --- billing ---------------------------------------------------------------------------

    async def subscribe(
        self, who: Person, plan: Any, *, promo: str | None = None, months: int = 1
    ) -> Any:
        body = who.billing.model("SubscriptionIn")(plan_id=plan.id, months=months)
        if promo is not None:
            body.promo_code = promo
        subscription = await who.billing.call("subscriptions.subscribe", body=body, expect=201)
        payment = subscription.latest_payment
        self.say(
            f"   {who.name}: subscription {subscription.id} {subscription.status},"
            f" {payment.amount.amount / 100:.2f} {payment.amount.currency} to pay"
        )
        self.say(f"   checkout URL: {payment.checkout_url}")
        return subscription

    async def subscription(self, who: Person, subscription_id: uuid.UUID) -> Any:
        return await who.billing.call("subscriptions.get_subscription", subscription_id)

    async def status_becomes(self, who: Person, subscription_id: uuid.UUID, status: str) -> Any:
        found: list[Any] = []

        async def reached() -> bool:
            found[:] = [await self.subscription(who, subscription_id)]
            return bool(found[0].status == status)

        await within(self.wait_seconds, reached, f"subscription of {who.name} becomes {status}")
        self.say(f"   {who.name}: subscription {status}, period ends {found[0].current_period_end}")
        return found[0]

    async def notifications(self, who: Person) -> list[Any]:
        page = await self.notifier.call("notifications.list_notifications", user_id=who.id)
        return list(page.items)

    async def notified(self, who: Person, event_type: str) -> Any:
        found: list[Any] = []

        async def sent() -> bool:
            found[:] = [
                n
                for n in await self.notifications(who)
                if n.event_type == event_type and n.status == "sent"
            ]
            return bool(found)

        await within(self.wait_seconds, sent, f"{who.name} is sent {event_type}")
        self.say(f"   notifier: sent {event_type} to {found[0].recipient}: {found[0].subject!r}")
        return found[0]

    # --- the story -------------------------------------------------------------------------

    async def etl_loaded(self) -> None:
        if self.source_url is None:
            return
        self.step("The ETL copies the movie admin's films into billing's catalog")
        engine = create_async_engine(self.source_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    sa.text("SELECT id, title FROM content.film_work WHERE type = 'movie'")
                )
                films = {row.id: row.title for row in rows}
        finally:
            await engine.dispose()

        async def all_there() -> bool:
            return set(films) <= set(await self.admin_movies())

        await within(self.wait_seconds, all_there, "the ETL loads every film into billing")
        self.say(f"   {len(films)} films of the movie admin are in billing's catalog")

    async def tell(self) -> dict[str, Any]:
        """Every step in order; what the e2e test checks further is returned."""
        await self.etl_loaded()
        plans = await self.plans()
        basic = plans["basic"]
        basic_movies = await self.plan_movies(basic.id)
        movie = basic_movies[0]
        self.say(f"   basic covers {len(basic_movies)} movies")

        self.step("Ann: a token, and no access yet to a movie of the basic plan")
        ann = self.person("Ann")
        await self.access_becomes(ann, movie, False)

        self.step(f"Ann subscribes to basic with the promo code {PROMO}")
        quote = await ann.billing.call(
            "pricing.get_quote", plan_id=basic.id, months=1, promo_code=PROMO
        )
        self.say(
            f"   quote: base {quote.base.amount / 100:.2f}, total {quote.total.amount / 100:.2f}"
            f" {quote.total.currency}"
        )
        subscription = await self.subscribe(ann, basic, promo=PROMO)
        payment = subscription.latest_payment
        expect(
            payment.amount.amount == quote.total.amount < basic.price.amount,
            "checkout charges the discounted quote",
        )

        self.step(f"Ann pays the checkout page with {GOOD_CARD}")
        await self.pay(payment.checkout_url, GOOD_CARD)
        await self.status_becomes(ann, subscription.id, "active")
        await self.access_becomes(ann, movie, True)
        grants = await ann.access.call("access.grants", ann.id)
        self.say(f"   access grants: plans {grants.plan_codes}, roles {grants.roles}")
        expect(basic.code in grants.plan_codes, "the grant names the plan")
        outside = [m for m in await self.admin_movies() if m not in basic_movies]
        if outside:
            expect(not await self.allowed(ann, outside[0]), "basic does not open other movies")
            self.say(f"   a movie outside basic ({outside[0]}): no")
        await self.notified(ann, "subscription.activated")

        self.step("Ann asks for her money back within the refund window")
        refund_quote = await ann.billing.call("refunds.get_refund_quote", payment.id)
        self.say(
            f"   refund quote: {refund_quote.refundable_amount.amount / 100:.2f}"
            f" ({refund_quote.rule})"
        )
        expect(refund_quote.refundable_amount.amount == payment.amount.amount, "a full refund")
        refund = await ann.billing.call(
            "refunds.refund_payment",
            payment.id,
            body=ann.billing.model("RefundIn")(reason="changed my mind"),
            expect=201,
        )
        self.say(f"   refund {refund.id}: {refund.status}, {refund.amount.amount / 100:.2f}")
        await self.access_becomes(ann, movie, False)
        await self.notified(ann, "refund.completed")
        statement = await ann.billing.call("wallet.get_statement")
        kinds = [entry.kind for entry in statement.items]
        self.say(f"   statement: {kinds}")
        for entry in statement.items:
            debit = sum(line.amount.amount for line in entry.lines if line.side == "debit")
            credit = sum(line.amount.amount for line in entry.lines if line.side == "credit")
            expect(debit == credit, f"ledger transaction {entry.id} balances")
        self.say("   every ledger transaction balances (debits = credits)")

        self.step(f"Bob pays with a declined card ({DECLINED_CARD})")
        bob = self.person("Bob")
        declined = await self.subscribe(bob, basic)
        await self.pay(declined.latest_payment.checkout_url, DECLINED_CARD)

        async def payment_failed() -> bool:
            current = await self.subscription(bob, declined.id)
            return bool(current.latest_payment.status == "failed")

        await within(self.wait_seconds, payment_failed, "Bob's payment is failed")
        expect(not await self.allowed(bob, movie), "a declined card opens nothing")
        self.say("   payment failed; access: no")

        self.step("Cat buys one movie")
        cat = self.person("Cat")
        bought, other = basic_movies[1], basic_movies[2]
        purchase = await cat.billing.call(
            "purchases.buy",
            body=cat.billing.model("PurchaseIn")(movie_id=bought),
            expect=201,
        )
        self.say(f"   purchase {purchase.id}: checkout URL {purchase.latest_payment.checkout_url}")
        await self.pay(purchase.latest_payment.checkout_url, GOOD_CARD)
        await self.access_becomes(cat, bought, True)
        expect(not await self.allowed(cat, other), "a purchase opens that movie only")
        self.say(f"   another movie ({other}): no")

        self.step("Dan subscribes; the renewal and the end happen when the jobs run later")
        dan = self.person("Dan")
        renewing = await self.subscribe(dan, basic)
        await self.pay(renewing.latest_payment.checkout_url, GOOD_CARD)
        active = await self.status_becomes(dan, renewing.id, "active")
        first_end = active.current_period_end
        await self.jobs_at(first_end - timedelta(minutes=10))

        async def renewed() -> bool:
            current = await self.subscription(dan, renewing.id)
            return bool(current.current_period_end > first_end)

        await within(self.wait_seconds, renewed, "Dan's subscription is renewed")
        current = await self.subscription(dan, renewing.id)
        self.say(f"   renewed off-session: period now ends {current.current_period_end}")
        await dan.billing.call(
            "subscriptions.cancel",
            renewing.id,
            body=dan.billing.model("CancelIn")(at_period_end=True),
        )
        self.say("   Dan cancels at the period end")
        await self.jobs_at(current.current_period_end + timedelta(minutes=1))
        await self.status_becomes(dan, renewing.id, "expired")
        await self.access_becomes(dan, movie, False)

        eve = await self.card_fails_and_is_replaced(basic, movie)
        await self.portal_link(eve, basic)
        fay, gus = await self.household(plans["premium"], movie)
        ida, hal = await self.gift_given_and_redeemed(basic, movie)

        return {
            "ann": ann,
            "bob": bob,
            "cat": cat,
            "dan": dan,
            "eve": eve,
            "fay": fay,
            "gus": gus,
            "ida": ida,
            "hal": hal,
            "roles": list(grants.roles),
        }

    async def gift_given_and_redeemed(self, plan: Any, movie: uuid.UUID) -> tuple[Person, Person]:
        """Ida gives Hal a month of ``plan``: Hal is emailed the code, redeems it once and may
        watch; the same code a second time is refused; Ida is told it was redeemed."""
        self.step(f"Ida gives Hal a month of {plan.code}; Hal redeems the code and may watch")
        ida, hal = self.person("Ida"), self.person("Hal")
        await self.access_becomes(hal, movie, False)
        body = ida.billing.model("GiftIn")(
            plan_id=plan.id, months=1, recipient_email=hal.email, message="Enjoy the films!"
        )
        gift = await ida.billing.call("gifts.buy_gift", body=body, expect=201)
        self.say(
            f"   gift {gift.id}: {gift.status}, checkout URL {gift.latest_payment.checkout_url}"
        )
        await self.pay(gift.latest_payment.checkout_url, GOOD_CARD)
        found: list[Any] = []

        async def paid() -> bool:
            found[:] = [await ida.billing.call("gifts.get_gift", gift.id)]
            return bool(found[0].status == "paid")

        await within(self.wait_seconds, paid, "Ida's gift is paid")
        code = found[0].code
        self.say(f"   paid: code {code} (shown to Ida in GET /api/v1/gifts)")
        delivered = await self.notified(ida, "gift.delivered")
        expect(delivered.recipient == hal.email, "the gift email goes to the recipient")
        redeem = hal.billing.model("RedeemIn")(code=code)
        redeemed = await hal.billing.call("gifts.redeem_gift", body=redeem)
        self.say(
            f"   Hal redeems it: subscription {redeemed.subscription_id},"
            f" until {redeemed.current_period_end}"
        )
        await self.access_becomes(hal, movie, True)
        await hal.billing.call("gifts.redeem_gift", body=redeem, expect=409)
        self.say("   the same code again: 409")
        await self.notified(ida, "gift.redeemed")

        self.step("Ida gives Hal another month, then takes it back before Hal redeems it")
        second = await ida.billing.call("gifts.buy_gift", body=body, expect=201)
        await self.pay(second.latest_payment.checkout_url, GOOD_CARD)

        async def second_paid() -> bool:
            found[:] = [await ida.billing.call("gifts.get_gift", second.id)]
            return bool(found[0].status == "paid")

        await within(self.wait_seconds, second_paid, "Ida's second gift is paid")
        refund = await ida.billing.call(
            "refunds.refund_payment",
            second.latest_payment.id,
            body=ida.billing.model("RefundIn")(reason="changed my mind"),
            expect=201,
        )
        self.say(f"   refund {refund.id}: {refund.status}, {refund.amount.amount / 100:.2f}")

        async def voided() -> bool:
            current = await ida.billing.call("gifts.get_gift", second.id)
            return bool(current.status == "refunded")

        await within(self.wait_seconds, voided, "Ida's second gift is refunded")
        late = hal.billing.model("RedeemIn")(code=found[0].code)
        await hal.billing.call("gifts.redeem_gift", body=late, expect=409)
        self.say("   the refunded gift's code: 409; Hal keeps the first gift's month")
        expect(await self.allowed(hal, movie), "Hal still may watch")
        return ida, hal

    async def portal_link(self, who: Person, plan: Any) -> None:
        """The app asks for a single-use portal link: opened once it shows the subscription; a
        second, fresh link is printed for whoever runs the demo to open in a browser."""
        self.step(f"{who.name} opens her billing page: POST /api/v1/portal-sessions")
        body = who.billing.model("PortalSessionIn")(locale="en")
        link = await who.billing.call("portal.create_portal_session", body=body, expect=201)
        async with httpx.AsyncClient(timeout=10) as browser:
            entered = await browser.get(link.url, follow_redirects=True)
            expect(entered.status_code == 200, "the portal link opens the portal")
            expect(plan.name in entered.text, "the portal shows the subscription's plan")
            again = await browser.get(link.url)
            expect(again.status_code == 410, "a portal link opens once")
        self.say(f"   {link.url} opened once: it shows her {plan.name} plan; a second time: 410")
        fresh = await who.billing.call("portal.create_portal_session", body=body, expect=201)
        self.say(f"   open {who.name}'s portal in a browser (once, until {fresh.expires_at}):")
        self.say(f"   {fresh.url}")

    async def card_fails_and_is_replaced(self, basic: Any, movie: uuid.UUID) -> Person:
        """Eve's card saves fine but declines her renewal; she replaces it and keeps watching."""
        self.step(f"Eve subscribes with a card that saves but fails later ({FAILS_LATER_CARD})")
        eve = self.person("Eve")
        subscribed = await self.subscribe(eve, basic)
        await self.pay(subscribed.latest_payment.checkout_url, FAILS_LATER_CARD)
        active = await self.status_becomes(eve, subscribed.id, "active")
        await self.access_becomes(eve, movie, True)
        old_end = active.current_period_end

        self.step("Eve's renewal is declined at the renewal window")
        await self.jobs_at(old_end - timedelta(minutes=10))
        await self.notified(eve, "subscription.renewal_failed")
        expect(await self.allowed(eve, movie), "a declined renewal keeps the paid period open")
        self.say("   access: YES until the period ends")

        self.step("The period ends unpaid: grace, Eve still watches")
        await self.jobs_at(old_end + timedelta(minutes=1))
        await self.status_becomes(eve, subscribed.id, "grace")
        expect(await self.allowed(eve, movie), "grace keeps access open")
        self.say("   access in grace: YES")

        self.step(f"Eve replaces her card and pays what is due with {GOOD_CARD}")
        update = await eve.billing.call(
            "subscriptions.update_payment_method",
            subscribed.id,
            body=eve.billing.model("PaymentMethodIn")(payment_method="card"),
            expect=201,
        )
        self.say(
            f"   POST /subscriptions/{subscribed.id}/payment-method: {update.purpose},"
            f" {update.amount.amount / 100:.2f} {update.amount.currency} due"
        )
        self.say(f"   checkout URL: {update.checkout_url}")
        expect(
            update.purpose == "renewal" and update.amount.amount == basic.price.amount,
            "the update checkout pays the renewal due",
        )
        await self.pay(update.checkout_url, GOOD_CARD)
        renewed = await self.status_becomes(eve, subscribed.id, "active")
        expect(
            renewed.current_period_end == months_later(old_end, 1),
            "the period runs on from the old end",
        )
        card = renewed.payment_method
        expect(card is not None and card.last4 == "4242", f"the new card is saved: {card}")
        self.say(f"   saved card: {card.brand} *{card.last4}")
        expect(await self.allowed(eve, movie), "Eve watches on")
        self.say("   access: YES")

        self.step("The next renewal charges the new card")
        new_end = renewed.current_period_end
        await self.jobs_at(new_end - timedelta(minutes=10))

        async def charged() -> bool:
            current = await self.subscription(eve, subscribed.id)
            return bool(current.current_period_end > new_end)

        await within(self.wait_seconds, charged, "Eve's subscription is renewed with the new card")
        current = await self.subscription(eve, subscribed.id)
        expect(current.status == "active", f"Eve is active: {current.status}")
        self.say(f"   renewed off-session: period now ends {current.current_period_end}")
        return eve

    async def household(self, premium: Any, movie: uuid.UUID) -> tuple[Person, Person]:
        """Fay shares Premium with Gus: he joins with the emailed code, watches through her
        subscription, and loses access the moment she removes him."""
        self.step(f"Fay subscribes to premium ({premium.household_seats} household seats)")
        fay, gus = self.person("Fay"), self.person("Gus")
        subscribed = await self.subscribe(fay, premium)
        await self.pay(subscribed.latest_payment.checkout_url, GOOD_CARD)
        await self.status_becomes(fay, subscribed.id, "active")

        self.step("Fay invites Gus: POST /api/v1/subscriptions/{id}/members")
        invited = await fay.billing.call(
            "households.invite_member",
            subscribed.id,
            body=fay.billing.model("MemberInviteIn")(email=gus.email),
            expect=201,
        )
        self.say(f"   member {invited.id}: {invited.status}, code {invited.code}")
        await self.notified(fay, "household.invited")  # sent to Gus's address

        self.step("Gus joins with the code: POST /api/v1/households/join")
        joined = await gus.billing.call(
            "households.join_household",
            body=gus.billing.model("JoinIn")(code=invited.code),
        )
        self.say(f"   Gus: {joined.status} household of subscription {joined.subscription_id}")
        await self.access_becomes(gus, movie, True)
        grants = await gus.access.call("access.grants", gus.id)
        self.say(f"   Gus's access grants: plans {grants.plan_codes}")
        listed = await fay.billing.call("households.list_members", subscribed.id)
        self.say(f"   Fay's household: {listed.seats_taken} of {listed.seats} seats taken")

        self.step("Fay removes Gus: DELETE /api/v1/subscriptions/{id}/members/{member_id}")
        await fay.billing.call("households.remove_member", subscribed.id, invited.id, expect=204)
        await self.access_becomes(gus, movie, False)
        await self.notified(gus, "household.removed")
        return fay, gus

    async def jobs_at(self, moment: datetime) -> None:
        self.say(f"   cinema billing run-jobs --now {moment.isoformat()}")
        await self.run_jobs(moment)

    async def admin_movies(self) -> list[uuid.UUID]:
        page = await self.admin_billing.call("admin_movies.list_movies", limit=1000)
        return [movie.id for movie in page.items]


def months_later(moment: datetime, months: int) -> datetime:
    """The same day ``months`` later, clamped to the month's last day, as billing counts."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(
        year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1])
    )


def session_id(checkout_url: str) -> str:
    return urlsplit(checkout_url).path.rstrip("/").rsplit("/", 1)[-1]


def pay_with_json(gateway: Api, say: Callable[[str], None] = print) -> Pay:
    """Pay through the sandbox's JSON twin of its checkout page."""

    async def pay(checkout_url: str, card_number: str) -> None:
        body = gateway.model("PayIn")(card_number=card_number)
        answer = await gateway.call("sandbox.pay_json", session_id(checkout_url), body=body)
        say(f"   sandbox: {answer.status} {answer.failure_code or ''}")

    return pay
