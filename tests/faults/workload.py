"""What the users do during a fault run, through the public APIs of the real processes.

Every user buys something (a monthly subscription or a film), pays on the sandbox's JSON twin
(or on the confirmation page of the YooKassa stand-in, when it is the provider),
and then maybe refunds or cancels; some fill a basket: a subscription and several films paid all
at once, then a refund, a cancel and one more film at the same moment; some share a Premium
subscription with a household: four invited people join at once for its three seats (exactly
three get in), and the owner sometimes refunds, which must take every member's access with it;
some give a month of the basic plan to a second person, who redeems the code (a second redeem
of it is refused). Renewals run as ``cinema billing run-jobs --now`` processes, two at once. A
client retries a failed call the way a real one would: the same ``Idempotency-Key``, another
replica, until a bounded deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from billing_api import demo
from billing_api.lifecycle.service import LEASE as RENEWAL_LEASE
from shared.auth import AuthSettings, mint_service_token, mint_user_token
from tests.faults.harness import CINEMA, CommandFailed, System

GOOD = "4242424242424242"
DECLINED = "4000000000000002"
FAILS_LATER = "4000000000000341"
CALL_DEADLINE = 90.0  # a user gives up on one operation after this long
RETRIED = {409, 500, 502, 503, 504}
# A basket: this many films and a subscription paid at once, then one more film while a film is
# refunded and the subscription canceled (several changes of one user's access settling together).
BASKET_FILMS = 3
# A household: this many people invited to the demo's Premium plan (three seats) join at once.
HOUSEHOLD_INVITED = 4
HOUSEHOLD_PLAN = "premium"
ALL_MOVIES = [str(demo.movie_id(title)) for title, _, _ in demo.MOVIES]  # `seed-demo`'s catalog


CHECKOUTS = ("/api/v1/subscriptions", "/api/v1/purchases", "/api/v1/gifts")


def _error(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


class GaveUp(Exception):
    pass


@dataclass
class Stats:
    attempted: Counter[str] = field(default_factory=Counter)
    succeeded: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    replays: int = 0
    server_errors: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Customer:
    id: uuid.UUID
    email: str
    headers: dict[str, str]
    story: str
    subscription_id: str | None = None
    first_period_end: datetime | None = None
    purchase_movie: str | None = None
    films: set[str] = field(default_factory=set)  # bought, paid and kept (a basket's)
    payment_ids: list[str] = field(default_factory=list)
    refunded: bool = False
    cancelled: bool = False
    # A household owner's invited people (each a Customer with story "member"); a member's
    # owner, and whether their join was accepted.
    members: list[Customer] = field(default_factory=list)
    household_of: Customer | None = None
    joined: bool = False
    # A gift story's recipient (a customer of their own, checked like the others), and for the
    # recipient whether the gift's months reached them.
    recipient: Customer | None = None
    gifted: bool = False


class Client:
    def __init__(self, system: System, stats: Stats) -> None:
        self.system = system
        self.stats = stats
        self.http = httpx.AsyncClient(timeout=15.0)
        self._billing = itertools.cycle(system.urls("billing-api"))
        self._gateway = itertools.cycle(system.urls("gateway-api"))
        self._access = itertools.cycle(system.urls("access-api"))

    @property
    def service_headers(self) -> dict[str, str]:
        """A fresh service token per call: a slow run outlives a token's five minutes."""
        return {"Authorization": f"Bearer {mint_service_token(AuthSettings(), 'fault-suite')}"}

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        json: Any = None,
        ok: tuple[int, ...] = (200, 201),
        done: str | None = None,
    ) -> httpx.Response:
        """One logical call: retried on 5xx/409/transport errors with the same key.

        ``done`` is a path to read when a retry is refused with a 409: a request whose
        transaction was rolled back after the gateway took its refund has its effect recorded
        by the provider's event instead (README: money moved at the provider), so a retry is
        told "already canceled" or "nothing left to refund". A real client then reads the
        resource, as the fault suite does: the call is done when that read shows the effect
        (``status`` canceled or refunded); the invariants check the money either way."""
        replicas = {"billing": self._billing, "gateway": self._gateway, "access": self._access}
        if method == "POST" and service == "billing":
            headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
        deadline = time.monotonic() + CALL_DEADLINE
        delay = 0.2
        while True:
            base = next(replicas[service])
            try:
                response = await self.http.request(method, base + path, headers=headers, json=json)
            except httpx.TransportError as exc:
                status, text = 0, f"{type(exc).__name__}"
            else:
                status, text = response.status_code, response.text[:300]
                self.stats.statuses[status] += 1
                if response.headers.get("Idempotent-Replayed") == "true":
                    self.stats.replays += 1
                if status == 500:
                    self.stats.server_errors.append(f"{method} {base}{path}: {text}")
                if status in ok or status not in RETRIED:
                    return response
                if status == 409 and done is not None and await self._shows_done(done, headers):
                    self.stats.notes["done before the retry"] = (
                        self.stats.notes.get("done before the retry", 0) + 1
                    )
                    return response
                if status == 409 and _error(response) == "IdempotentRequestCompleted":
                    # The first try's effect committed but its answer was lost: do what the
                    # answer says, as a real client would. A checkout starts over with a new key
                    # (billing hands back the open checkout of the same plan or film, or the gift
                    # whose checkout never opened); anything else is done, and the caller's next
                    # read shows its effect.
                    self.stats.notes["completed_without_answer"] = (
                        self.stats.notes.get("completed_without_answer", 0) + 1
                    )
                    if path not in CHECKOUTS:
                        return response
                    headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
            if time.monotonic() > deadline:
                raise GaveUp(f"{method} {path}: last answer {status} {text}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)

    async def _shows_done(self, path: str, headers: dict[str, str]) -> bool:
        read = {k: v for k, v in headers.items() if k != "Idempotency-Key"}
        try:
            response = await self.http.get(next(self._billing) + path, headers=read)
        except httpx.TransportError:
            return False
        if response.status_code != 200:
            return False
        return response.json().get("status") in ("canceled", "refunded")


# Each story's share of the customers.
STORIES = {
    "keep": 26,
    "refund": 13,
    "cancel": 13,
    "fails_later": 10,
    "declined": 10,
    "buy_movie": 13,
    "basket": 6,
    "household": 4,
    "household_refund": 4,
    "gift": 5,
}
# With YooKassa, no households: their plan (Premium) starts with a free trial, a checkout of 0
# that saves the card without charging it, which YooKassa cannot do (README: YooKassa).
YOOKASSA_STORIES = {
    story: weight for story, weight in STORIES.items() if not story.startswith("household")
}


def new_customer(rng: random.Random, stories: dict[str, int] = STORIES) -> Customer:
    user_id = uuid.uuid4()
    email = f"fault-{user_id.hex[:12]}@example.com"
    token = mint_user_token(AuthSettings(), user_id, email=email)
    story = rng.choices(list(stories), weights=list(stories.values()))[0]
    customer = Customer(user_id, email, {"Authorization": f"Bearer {token}"}, story)
    if story == "gift":
        recipient_id = uuid.uuid4()
        recipient_email = f"fault-{recipient_id.hex[:12]}@example.com"
        recipient_token = mint_user_token(AuthSettings(), recipient_id, email=recipient_email)
        customer.recipient = Customer(
            recipient_id,
            recipient_email,
            {"Authorization": f"Bearer {recipient_token}"},
            "gift_recipient",
        )
    return customer


def with_recipients(customers: list[Customer]) -> list[Customer]:
    """The customers and the recipients of their gifts (each a user to check)."""
    return [*customers, *(c.recipient for c in customers if c.recipient is not None)]


def new_member(owner: Customer) -> Customer:
    """A person a household owner invites (not one of the run's paying customers)."""
    user_id = uuid.uuid4()
    email = f"member-{user_id.hex[:12]}@example.com"
    token = mint_user_token(AuthSettings(), user_id, email=email)
    return Customer(
        user_id, email, {"Authorization": f"Bearer {token}"}, "member", household_of=owner
    )


def members_of(customers: list[Customer]) -> list[Customer]:
    return [member for customer in customers for member in customer.members]


async def _pay(client: Client, checkout_url: str, card: str) -> None:
    if client.system.standin is not None:
        await _confirm_on_yookassa(client, checkout_url, card)
        return
    session_id = checkout_url.split("?", 1)[0].rsplit("/", 1)[1]
    await client.call(
        "gateway",
        "POST",
        f"/sandbox/checkout/{session_id}/pay",
        headers={},
        json={"card_number": card},
    )


async def _confirm_on_yookassa(client: Client, confirmation_url: str, card: str) -> None:
    """The payer enters the card on YooKassa's confirmation page and is sent back to us."""
    deadline = time.monotonic() + CALL_DEADLINE
    while True:
        try:
            response = await client.http.post(confirmation_url, data={"card": card})
        except httpx.TransportError as exc:
            status, text = 0, type(exc).__name__
        else:
            if response.status_code == 302:
                return
            status, text = response.status_code, response.text[:300]
        if time.monotonic() > deadline:
            raise GaveUp(f"confirming {confirmation_url}: last answer {status} {text}")
        await asyncio.sleep(0.5)


async def _wait(
    client: Client, customer: Customer, path: str, statuses: set[str], timeout: float = 90.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.call("billing", "GET", path, headers=customer.headers)
        body: dict[str, Any] = response.json()
        if body.get("status") in statuses:
            return body
        if time.monotonic() > deadline:
            raise GaveUp(f"{path} stayed {body.get('status')}, wanted {statuses}")
        await asyncio.sleep(0.5)


async def act(
    client: Client, customer: Customer, plan_id: str, movies: list[str], household_plan_id: str
) -> None:
    """One user's story; counts what was attempted and what succeeded."""
    stats = client.stats
    if customer.story in ("household", "household_refund"):
        await _household(client, customer, household_plan_id)
        return
    if customer.story == "basket":
        await _basket(client, customer, plan_id)
        return
    if customer.story == "gift":
        await _gift(client, customer, plan_id)
        return
    if customer.story == "buy_movie":
        stats.attempted["purchase"] += 1
        customer.purchase_movie = random.choice(movies)
        created = (
            await client.call(
                "billing",
                "POST",
                "/api/v1/purchases",
                headers=customer.headers,
                json={"movie_id": customer.purchase_movie, "kind": "buy"},
            )
        ).json()
        payment = created["latest_payment"]
        customer.payment_ids.append(payment["id"])
        await _pay(client, payment["checkout_url"], GOOD)
        await _wait(client, customer, f"/api/v1/payments/{payment['id']}", {"succeeded"})
        stats.succeeded["purchase"] += 1
        return

    stats.attempted["subscribe"] += 1
    created = (
        await client.call(
            "billing",
            "POST",
            "/api/v1/subscriptions",
            headers=customer.headers,
            json={"plan_id": plan_id},
        )
    ).json()
    customer.subscription_id = created["id"]
    payment = created["latest_payment"]
    customer.payment_ids.append(payment["id"])
    card = {"declined": DECLINED, "fails_later": FAILS_LATER}.get(customer.story, GOOD)
    await _pay(client, payment["checkout_url"], card)
    if customer.story == "declined":
        await _wait(client, customer, f"/api/v1/payments/{payment['id']}", {"failed"})
        stats.succeeded["subscribe"] += 1  # declined as the card says: the expected outcome
        return
    active = await _wait(client, customer, f"/api/v1/subscriptions/{created['id']}", {"active"})
    customer.first_period_end = datetime.fromisoformat(active["current_period_end"])
    stats.succeeded["subscribe"] += 1

    if customer.story == "refund":
        await _refund(client, customer, payment["id"], f"/api/v1/subscriptions/{created['id']}")
    elif customer.story == "cancel":
        stats.attempted["cancel"] += 1
        await client.call(
            "billing",
            "POST",
            f"/api/v1/subscriptions/{created['id']}/cancel",
            headers=customer.headers,
            json={},
            done=f"/api/v1/subscriptions/{created['id']}",
        )
        customer.cancelled = True
        stats.succeeded["cancel"] += 1


async def _refund(client: Client, customer: Customer, payment_id: str, ended: str) -> None:
    """Refund a payment in full; then what it paid for (``ended``) reads canceled or refunded.

    A refund whose provider call ended in doubt (the provider's database connection was cut
    mid-call, say) is answered ``pending``: the provider may never have made it, and then only
    reconciliation settles it, after ``BILLING_RECONCILE_AFTER_MINUTES`` -- in the renewal
    passes, whose clock is a month on. The user does not wait for it; the invariants hold the
    refund, the subscription and the access to the same end afterwards."""
    stats = client.stats
    stats.attempted["refund"] += 1
    answer = await client.call(
        "billing",
        "POST",
        f"/api/v1/payments/{payment_id}/refund",
        headers=customer.headers,
        json={},
        done=f"/api/v1/payments/{payment_id}",
    )
    if answer.status_code == 201:
        pending = answer.json().get("status") == "pending"
    else:  # done before the retry, or done but its answer lost: the payment shows which
        paid = await client.call(
            "billing", "GET", f"/api/v1/payments/{payment_id}", headers=customer.headers
        )
        body = paid.json()
        pending = body["status"] != "refunded" and body["refunded"]["amount"] > 0  # reserved
    if pending:
        stats.notes["refunds left to reconciliation"] = (
            stats.notes.get("refunds left to reconciliation", 0) + 1
        )
    else:
        await _wait(client, customer, ended, {"canceled", "refunded"})
    customer.refunded = True
    stats.succeeded["refund"] += 1


async def _gift(client: Client, customer: Customer, plan_id: str) -> None:
    """Buy a month of the plan for the recipient, pay it, let the recipient redeem the code;
    then the buyer tries the same code and is refused."""
    recipient = customer.recipient
    assert recipient is not None
    stats = client.stats
    stats.attempted["gift"] += 1
    response = await client.call(
        "billing",
        "POST",
        "/api/v1/gifts",
        headers=customer.headers,
        json={"plan_id": plan_id, "recipient_email": recipient.email},
    )
    if response.status_code != 201:
        raise GaveUp(f"POST /api/v1/gifts: {response.status_code} {response.text[:200]}")
    gift: dict[str, Any] = response.json()
    payment = gift["latest_payment"]
    customer.payment_ids.append(payment["id"])
    await _pay(client, payment["checkout_url"], GOOD)
    paid = await _wait(client, customer, f"/api/v1/gifts/{gift['id']}", {"paid"})
    stats.succeeded["gift"] += 1

    stats.attempted["redeem"] += 1
    await client.call(
        "billing",
        "POST",
        "/api/v1/gifts/redeem",
        headers=recipient.headers,
        json={"code": paid["code"]},
        # A 409 is retried like any other (IdempotencyKeyInProgress: the first try still runs);
        # one whose first try committed without an answer (IdempotentRequestCompleted) is done,
        # and the read below tells.
    )
    subscriptions = await client.call(
        "billing", "GET", "/api/v1/subscriptions", headers=recipient.headers
    )
    if not any(s["status"] == "active" for s in subscriptions.json()["items"]):
        raise GaveUp(f"gift {gift['id']} redeemed, but the recipient has no subscription")
    recipient.gifted = True
    stats.succeeded["redeem"] += 1
    again = await client.call(
        "billing",
        "POST",
        "/api/v1/gifts/redeem",
        headers=customer.headers,
        json={"code": paid["code"]},
        ok=(200, 409),
    )
    if again.status_code != 409:
        raise GaveUp(f"gift {gift['id']}: a second redeem answered {again.status_code}")


async def _open_purchase(client: Client, customer: Customer, movie: str) -> dict[str, Any]:
    client.stats.attempted["purchase"] += 1
    response = await client.call(
        "billing",
        "POST",
        "/api/v1/purchases",
        headers=customer.headers,
        json={"movie_id": movie, "kind": "buy"},
    )
    payment: dict[str, Any] = response.json()["latest_payment"]
    customer.payment_ids.append(payment["id"])
    return payment


async def _paid(client: Client, customer: Customer, payment: dict[str, Any]) -> None:
    await _wait(client, customer, f"/api/v1/payments/{payment['id']}", {"succeeded"})


async def _buy_films(client: Client, customer: Customer, movies: list[str]) -> list[str]:
    """Open a purchase of each film, pay them all at once, wait until each is paid; returns
    the films' payment ids."""
    payments = await asyncio.gather(*(_open_purchase(client, customer, m) for m in movies))
    await asyncio.gather(*(_pay(client, p["checkout_url"], GOOD) for p in payments))
    await asyncio.gather(*(_paid(client, customer, p) for p in payments))
    customer.films |= set(movies)
    client.stats.succeeded["purchase"] += len(movies)
    return [str(p["id"]) for p in payments]


async def _basket(client: Client, customer: Customer, plan_id: str) -> None:
    """A subscription and several films paid at once; then, at the same moment, one film
    refunded, the subscription canceled now and one more film bought."""
    stats = client.stats
    films = random.sample(ALL_MOVIES, BASKET_FILMS + 1)
    stats.attempted["subscribe"] += 1
    created = (
        await client.call(
            "billing",
            "POST",
            "/api/v1/subscriptions",
            headers=customer.headers,
            json={"plan_id": plan_id},
        )
    ).json()
    customer.subscription_id = created["id"]
    customer.payment_ids.append(created["latest_payment"]["id"])

    async def subscribed() -> None:
        await _pay(client, created["latest_payment"]["checkout_url"], GOOD)
        path = f"/api/v1/subscriptions/{created['id']}"
        active = await _wait(client, customer, path, {"active"})
        customer.first_period_end = datetime.fromisoformat(active["current_period_end"])
        stats.succeeded["subscribe"] += 1

    _, paid = await asyncio.gather(subscribed(), _buy_films(client, customer, films[:BASKET_FILMS]))
    refunded, refund_payment = films[0], paid[0]

    async def refund() -> None:
        await _refund(client, customer, refund_payment, f"/api/v1/payments/{refund_payment}")
        customer.films.discard(refunded)

    async def cancel() -> None:
        stats.attempted["cancel"] += 1
        await client.call(
            "billing",
            "POST",
            f"/api/v1/subscriptions/{created['id']}/cancel",
            headers=customer.headers,
            json={"at_period_end": False},
            done=f"/api/v1/subscriptions/{created['id']}",
        )
        customer.cancelled = True
        stats.succeeded["cancel"] += 1

    await asyncio.gather(refund(), cancel(), _buy_films(client, customer, films[BASKET_FILMS:]))


async def _household(client: Client, customer: Customer, plan_id: str) -> None:
    """Premium shared with a household: four invited people join at once for three seats
    (exactly three must get in); ``household_refund`` then refunds the owner's payment, which
    must end every member's access with the owner's."""
    stats = client.stats
    stats.attempted["subscribe"] += 1
    created = (
        await client.call(
            "billing",
            "POST",
            "/api/v1/subscriptions",
            headers=customer.headers,
            json={"plan_id": plan_id},
        )
    ).json()
    customer.subscription_id = created["id"]
    payment = created["latest_payment"]
    customer.payment_ids.append(payment["id"])
    await _pay(client, payment["checkout_url"], GOOD)
    active = await _wait(client, customer, f"/api/v1/subscriptions/{created['id']}", {"active"})
    customer.first_period_end = datetime.fromisoformat(active["current_period_end"])
    stats.succeeded["subscribe"] += 1

    customer.members = [new_member(customer) for _ in range(HOUSEHOLD_INVITED)]
    codes = []
    for member in customer.members:
        stats.attempted["household invite"] += 1
        invited = await client.call(
            "billing",
            "POST",
            f"/api/v1/subscriptions/{created['id']}/members",
            headers=customer.headers,
            json={"email": member.email},
            ok=(201,),
        )
        if invited.status_code != 201:
            raise GaveUp(f"invite: {invited.status_code} {invited.text[:200]}")
        codes.append(invited.json()["code"])
        stats.succeeded["household invite"] += 1

    async def join(member: Customer, code: str) -> None:
        stats.attempted["household join"] += 1
        # "HouseholdFull" is an answer, not a reason to retry. Any other 409 (the first try
        # committed and its answer was lost, a key taken over) is asked again with a new key:
        # joining again with the same code answers the same membership.
        deadline = time.monotonic() + CALL_DEADLINE
        while True:
            answer = await client.call(
                "billing",
                "POST",
                "/api/v1/households/join",
                headers=member.headers,
                json={"code": code},
                ok=(200, 409),
            )
            if answer.status_code == 200:
                member.joined = True
                stats.succeeded["household join"] += 1
                return
            if _error(answer) == "HouseholdFull":
                stats.succeeded["household join"] += 1  # refused as the seats say: expected
                stats.notes["household joins refused: full"] = (
                    stats.notes.get("household joins refused: full", 0) + 1
                )
                return
            if answer.status_code != 409 or time.monotonic() > deadline:
                raise GaveUp(f"join: {answer.status_code} {answer.text[:200]}")
            await asyncio.sleep(0.5)

    await asyncio.gather(
        *(join(member, code) for member, code in zip(customer.members, codes, strict=True))
    )
    if customer.story == "household_refund":
        await _refund(client, customer, payment["id"], f"/api/v1/subscriptions/{created['id']}")


async def renew(
    system: System,
    stats: Stats,
    customers: list[Customer],
    *,
    kill_midway: AsyncEngine | None = None,
) -> None:
    """Two ``run-jobs`` processes at once, at a moment every new subscription is due, then the
    worker's next tick after the renewal lease; with ``kill_midway`` a first pass is SIGKILLed
    as soon as it has committed renewal payments, before it could charge them all."""
    ends = [c.first_period_end for c in customers if c.first_period_end is not None]
    if not ends:
        return
    at = max(ends) - timedelta(minutes=30)
    if kill_midway is not None:
        stats.notes["renewal pass SIGKILLed with (payments, charged)"] = await _killed_midway(
            system, kill_midway, customers, at
        )

    async def one_pass(at: datetime = at) -> None:
        # A pass whose job failed (the database refused a connection…) is run again, as the
        # worker's next tick would: every job is safe to run twice.
        stats.attempted["renewal pass"] += 1
        for attempt in range(3):
            try:
                await system.cinema("billing", "run-jobs", "--now", at.isoformat())
            except CommandFailed:
                if attempt == 2:
                    raise
                await asyncio.sleep(2.0)
            else:
                stats.succeeded["renewal pass"] += 1
                return

    await asyncio.gather(one_pass(), one_pass())
    await one_pass(at + RENEWAL_LEASE + timedelta(minutes=1))


async def _killed_midway(
    system: System, engine: AsyncEngine, customers: list[Customer], at: datetime
) -> tuple[int, int]:
    process = await asyncio.create_subprocess_exec(
        CINEMA,
        "billing",
        "run-jobs",
        "--now",
        at.isoformat(),
        env=system.environment("billing-worker", "a"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    query = sa.text(
        "SELECT count(*) FROM billing.payment WHERE purpose = 'renewal' AND user_id = ANY(:users)"
    )
    try:
        async with asyncio.timeout(90):
            while process.returncode is None:
                async with engine.connect() as conn:
                    started = await conn.scalar(query, {"users": [c.id for c in customers]})
                if started:
                    break
                await asyncio.sleep(0.05)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        await process.wait()
    async with engine.connect() as conn:
        payments = await conn.scalar(query, {"users": [c.id for c in customers]})
        charged = await conn.scalar(
            sa.text(
                "SELECT count(*) FROM gateway.payment"
                " WHERE mode = 'off_session' AND customer_id = ANY(:users)"
            ),
            {"users": [c.id for c in customers]},
        )
    return int(payments or 0), int(charged or 0)


async def run_users(
    client: Client, customers: list[Customer], *, concurrency: int = 24
) -> list[str]:
    """Every customer's story; returns the stories that gave up (each a failure to explain)."""
    catalog = (await client.call("billing", "GET", "/api/v1/plans", headers={})).json()["items"]
    plan_id = next(p["id"] for p in catalog if p["code"] == "basic")
    detail = (await client.call("billing", "GET", f"/api/v1/plans/{plan_id}", headers={})).json()
    basic_movies = [str(m) for m in detail["movie_ids"]]
    assert set(basic_movies) <= set(ALL_MOVIES), "the run is seeded with the demo catalog"
    household = next(p for p in catalog if p["code"] == HOUSEHOLD_PLAN)
    assert household["household_seats"] == 3, "seed-demo gives Premium three household seats"
    gate = asyncio.Semaphore(concurrency)
    failures: list[str] = []

    async def one(customer: Customer) -> None:
        async with gate:
            try:
                await act(client, customer, plan_id, basic_movies, household["id"])
            except GaveUp as exc:
                failures.append(f"{customer.id} ({customer.story}): {exc}")

    await asyncio.gather(*(one(c) for c in customers))
    return failures
