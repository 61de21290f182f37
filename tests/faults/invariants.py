"""What must hold after a fault run, read from every service's own tables and APIs.

Each check adds to ``lost`` (something that happened is missing somewhere) or ``doubled``
(something happened twice, or was applied without being paid for); both must stay empty.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from billing_api.periods import add_months
from notifier.handlers import NOTICES
from shared.broker import Broker
from tests.faults.harness import System
from tests.faults.workload import HOUSEHOLD_INVITED, Client, Customer, members_of, with_recipients

PAID = ("succeeded", "partially_refunded", "refunded")
CONSUMERS = ("billing", "access", "notifier")
BUSINESS_EVENTS = [notice.event_type for notice in NOTICES]


@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    checked: Counter[str] = field(default_factory=Counter)


async def _rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(sa.text(sql), params))


async def _queue_depths(broker: Broker) -> dict[str, int]:
    channel = await broker.channel()
    depths = {}
    try:
        for consumer in CONSUMERS:
            for suffix in ("", ".dead", ".retry.0", ".retry.1", ".retry.2", ".retry.3"):
                name = broker.name(consumer + suffix)
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except Exception:
                    channel = await broker.channel()
                    continue
                depths[consumer + suffix] = int(queue.declaration_result.message_count or 0)
    finally:
        await channel.close()
    return depths


async def settled(system: System, engine: AsyncEngine, broker: Broker, timeout: float) -> None:
    """Wait (bounded) until every outbox, queue, webhook and notification has been worked off."""
    deadline = time.monotonic() + timeout
    quiet = 0
    last: dict[str, Any] = {}
    while quiet < 2:
        await system.relay.idle()
        (counts,) = await _rows(
            engine,
            """
            SELECT (SELECT count(*) FROM billing.outbox WHERE published_at IS NULL),
                   (SELECT count(*) FROM gateway.outbox WHERE published_at IS NULL),
                   (SELECT count(*) FROM gateway.webhook_event WHERE processed_at IS NULL),
                   (SELECT count(*) FROM gateway.sandbox_webhook
                     WHERE delivered_at IS NULL AND :sandbox),
                   (SELECT count(*) FROM notifier.notification WHERE status = 'pending')
            """,
            # The sandbox's webhooks wait for a sandbox sender: a YooKassa run has none (and a
            # sandbox run that failed before it settled may have left some behind).
            sandbox=system.standin is None,
        )
        depths = await _queue_depths(broker)
        busy = {k: v for k, v in depths.items() if v and not k.endswith(".dead")}
        last = {"tables": tuple(counts), "queues": busy}
        quiet = quiet + 1 if not any(counts) and not busy else 0
        if time.monotonic() > deadline:
            raise AssertionError(f"the system did not settle within {timeout:.0f}s: {last}")
        await asyncio.sleep(1.0)


async def check(
    system: System, engine: AsyncEngine, broker: Broker, client: Client, customers: list[Customer]
) -> Findings:
    found = Findings()
    customers = with_recipients(customers)
    users = [c.id for c in customers]
    await _payments(engine, users, found)
    await _ledger(engine, users, found)
    await _refunds(engine, users, found)
    await _subscriptions(engine, customers, found)
    await _entitlements(engine, client, [*customers, *members_of(customers)], found)
    await _households(engine, customers, found)
    await _plumbing(engine, broker, found)
    await _notifications(engine, system, users, found)
    _yookassa(system, found)
    return found


def _yookassa(system: System, found: Findings) -> None:
    """YooKassa took each payment's money at most once and refunded it at most once (each
    story refunds a payment in full, once); the stand-in serves only this run."""
    if system.standin is None:
        return
    for payment_id, times in system.standin.charges_of().items():
        found.checked["yookassa charges"] += 1
        if times > 1:
            found.doubled.append(f"payment {payment_id} charged {times} times by YooKassa")
    for provider_ref, times in system.standin.refunds_made().items():
        found.checked["yookassa refunds"] += 1
        if times > 1:
            found.doubled.append(f"YooKassa payment {provider_ref} refunded {times} times")


async def webhooks_stored(engine: AsyncEngine) -> int:
    (row,) = await _rows(engine, "SELECT count(*) FROM gateway.webhook_event")
    return int(row[0])


async def _payments(engine: AsyncEngine, users: list[Any], found: Findings) -> None:
    rows = await _rows(
        engine,
        """
        SELECT g.id, g.status AS gateway, b.status AS billing
        FROM gateway.payment g FULL JOIN billing.payment b ON b.id = g.id
        WHERE coalesce(g.customer_id, b.user_id) = ANY(:users)
          AND coalesce(b.method, 'card') = 'card'
        """,
        users=users,
    )
    for row in rows:
        found.checked["payments"] += 1
        if row.gateway in PAID and row.billing not in PAID:
            found.lost.append(f"payment {row.id} paid at the gateway, {row.billing} in billing")
        if row.billing in PAID and row.gateway not in PAID:
            found.doubled.append(f"payment {row.id} paid in billing, {row.gateway} at the gateway")
    renewals = await _rows(
        engine,
        """
        SELECT subscription_id, count(*) AS n FROM billing.payment
        WHERE user_id = ANY(:users) AND purpose = 'renewal' AND status IN ('succeeded')
        GROUP BY subscription_id HAVING count(*) > 1
        """,
        users=users,
    )
    found.doubled += [
        f"subscription {r.subscription_id} renewed {r.n} times in one pass" for r in renewals
    ]
    charges = await _rows(
        engine,
        """
        SELECT payment_id, count(*) AS n FROM gateway.sandbox_charge
        WHERE customer_id = ANY(:users) GROUP BY payment_id HAVING count(*) > 1
        """,
        users=users,
    )
    found.doubled += [
        f"payment {r.payment_id} charged {r.n} times by the provider" for r in charges
    ]


async def _ledger(engine: AsyncEngine, users: list[Any], found: Findings) -> None:
    rows = await _rows(
        engine,
        """
        SELECT p.id, count(t.id) AS n FROM billing.payment p
        LEFT JOIN billing.ledger_transaction t
               ON t.kind = 'payment_captured' AND t.reference = p.id::text
        WHERE p.user_id = ANY(:users) AND p.status IN ('succeeded','partially_refunded','refunded')
          AND p.method = 'card' AND p.amount > 0
        GROUP BY p.id
        """,
        users=users,
    )
    for row in rows:
        found.checked["ledger postings"] += 1
        if row.n == 0:
            found.lost.append(f"payment {row.id} is not in the ledger")
        elif row.n > 1:
            found.doubled.append(f"payment {row.id} is {row.n} times in the ledger")
    unbalanced = await _rows(
        engine,
        """
        SELECT transaction_id FROM billing.ledger_entry GROUP BY transaction_id, currency
        HAVING sum(CASE WHEN side = 'debit' THEN amount ELSE -amount END) <> 0
        """,
    )
    found.doubled += [f"ledger transaction {r.transaction_id} does not balance" for r in unbalanced]


async def _refunds(engine: AsyncEngine, users: list[Any], found: Findings) -> None:
    rows = await _rows(
        engine,
        """
        SELECT g.id, g.status AS gateway, b.status AS billing,
               (SELECT count(*) FROM billing.ledger_transaction t
                 WHERE t.kind = 'refund' AND t.reference = g.id::text) AS postings
        FROM gateway.refund g JOIN gateway.payment gp ON gp.id = g.payment_id
        LEFT JOIN billing.refund b ON b.id = g.id
        WHERE gp.customer_id = ANY(:users)
        """,
        users=users,
    )
    for row in rows:
        found.checked["refunds"] += 1
        if row.gateway == "succeeded" and (row.billing != "succeeded" or row.postings == 0):
            found.lost.append(f"refund {row.id}: {row.billing} in billing, {row.postings} postings")
        if row.postings > 1 or (row.billing == "succeeded" and row.gateway != "succeeded"):
            found.doubled.append(f"refund {row.id}: {row.gateway} at the gateway, {row.postings}")
    # A refund made while the customers acted (stamped with the real time: the renewal passes
    # run a month on), still pending after the renewal passes, whose reconciliation asked the
    # gateway about it: the customer would wait for it forever.
    waiting = await _rows(
        engine,
        """
        SELECT b.id, b.status, g.status AS gateway FROM billing.refund b
        LEFT JOIN gateway.refund g ON g.id = b.id
        WHERE b.user_id = ANY(:users) AND b.status = 'pending'
          AND b.created_at < now() + interval '1 day'
        """,
        users=users,
    )
    found.lost += [f"refund {r.id}: still pending ({r.gateway} at the gateway)" for r in waiting]
    over = await _rows(
        engine,
        """
        SELECT p.id, p.amount, p.refunded_amount,
               coalesce(sum(r.amount) FILTER (WHERE r.status = 'succeeded'), 0) AS refunded
        FROM billing.payment p LEFT JOIN billing.refund r ON r.payment_id = p.id
        WHERE p.user_id = ANY(:users) GROUP BY p.id
        HAVING coalesce(sum(r.amount) FILTER (WHERE r.status = 'succeeded'), 0) > p.amount
            OR coalesce(sum(r.amount) FILTER (WHERE r.status = 'succeeded'), 0)
               <> p.refunded_amount
        """,
        users=users,
    )
    found.doubled += [f"payment {r.id}: refunds {r.refunded} of {r.amount}" for r in over]


EXPECTED_CHARGES = {
    "keep": 2,
    "cancel": 1,
    "fails_later": 1,
    "refund": 1,
    "basket": 1,
    "household": 2,
    "household_refund": 1,
}
# Stories that end with the subscription canceled at once (a refund, or a basket's cancel now).
CANCELED_NOW = ("refund", "basket", "household_refund")
HOUSEHOLD_SEATS = 3  # the demo's Premium plan


async def _subscriptions(engine: AsyncEngine, customers: list[Customer], found: Findings) -> None:
    subscribed = [c for c in customers if c.first_period_end is not None]
    rows = {
        str(r.id): r
        for r in await _rows(
            engine,
            """
            SELECT s.id, s.status, s.current_period_end,
                   (SELECT count(*) FROM billing.payment p WHERE p.subscription_id = s.id
                      AND p.status IN ('succeeded','partially_refunded','refunded')) AS charges
            FROM billing.subscription s WHERE s.id = ANY(:ids)
            """,
            ids=[c.subscription_id for c in subscribed],
        )
    }
    for customer in subscribed:
        found.checked["subscriptions"] += 1
        assert customer.subscription_id is not None and customer.first_period_end is not None
        row = rows[customer.subscription_id]
        expected = EXPECTED_CHARGES[customer.story]
        if row.charges < expected:
            found.lost.append(f"subscription {row.id}: {row.charges} charges, {expected} expected")
        elif row.charges > expected:
            found.doubled.append(f"subscription {row.id}: {row.charges} charges for {expected}")
        want_status = "canceled" if customer.story in CANCELED_NOW else "active"
        if row.status != want_status:
            found.lost.append(f"subscription {row.id} is {row.status}, not {want_status}")
        if customer.story not in ("refund", "household_refund"):
            periods = add_months(customer.first_period_end, int(row.charges) - 1)
            if row.current_period_end != periods:
                found.doubled.append(
                    f"subscription {row.id} ends {row.current_period_end}, "
                    f"{row.charges} charges mean {periods}"
                )


def _expected_sources(customer: Customer) -> set[str]:
    if customer.story == "member":  # through the owner's subscription, while it lives
        owner = customer.household_of
        kept = owner is not None and "subscription" in _expected_sources(owner)
        return {"household"} if customer.joined and kept else set()
    if customer.story == "gift_recipient":
        return {"subscription"} if customer.gifted else set()
    if customer.story == "buy_movie" and customer.purchase_movie is not None:
        return {"purchase"}
    if customer.story == "basket":
        return {"purchase"} if customer.films else set()
    if customer.first_period_end is not None and customer.story not in CANCELED_NOW:
        return {"subscription"}
    return set()


def _expected_films(customer: Customer, basic: set[str], every: set[str]) -> set[str]:
    """The films the user's story paid for and kept (a household's plan, Premium, has all)."""
    if customer.story in ("household", "member"):
        return every if _expected_sources(customer) else set()
    if customer.story == "basket":
        return set(customer.films)
    want = _expected_sources(customer)
    if "subscription" in want:
        return basic
    if "purchase" in want and customer.purchase_movie is not None:
        return {customer.purchase_movie}
    return set()


async def _billing_allows(engine: AsyncEngine, users: list[Any]) -> dict[Any, set[str]]:
    """Per user, every film billing's own tables grant now: completed purchases still valid,
    and every film of the plan of a live subscription (until its period end, plus grace unless
    the user stopped it) or of a live complimentary grant."""
    rows = await _rows(
        engine,
        """
        SELECT pu.user_id, pu.movie_id::text AS movie FROM billing.purchase pu
        WHERE pu.user_id = ANY(:users) AND pu.status = 'completed'
          AND (pu.valid_until IS NULL OR pu.valid_until > now())
        UNION
        SELECT g.user_id, m.id::text
        FROM (
            SELECT s.user_id, s.plan_id FROM billing.subscription s
            JOIN billing.plan p ON p.id = s.plan_id
            WHERE s.user_id = ANY(:users) AND s.status IN ('active', 'grace')
              AND s.current_period_end
                  + CASE WHEN s.cancel_at_period_end OR NOT s.auto_renew THEN interval '0'
                         ELSE make_interval(days => p.grace_days) END > now()
            UNION
            SELECT c.user_id, c.plan_id FROM billing.complimentary_grant c
            WHERE c.user_id = ANY(:users) AND c.revoked_at IS NULL AND c.valid_until > now()
            UNION
            SELECT h.user_id, s.plan_id FROM billing.household_member h
            JOIN billing.subscription s ON s.id = h.subscription_id
            JOIN billing.plan p ON p.id = s.plan_id
            WHERE h.user_id = ANY(:users) AND h.status = 'joined'
              AND s.status IN ('active', 'grace')
              AND s.current_period_end
                  + CASE WHEN s.cancel_at_period_end OR NOT s.auto_renew THEN interval '0'
                         ELSE make_interval(days => p.grace_days) END > now()
        ) g
        JOIN billing.plan p ON p.id = g.plan_id
        JOIN billing.movie m ON p.all_movies OR EXISTS (
            SELECT 1 FROM billing.plan_movie pm WHERE pm.plan_id = p.id AND pm.movie_id = m.id
        )
        """,
        users=users,
    )
    allows: dict[Any, set[str]] = {}
    for row in rows:
        allows.setdefault(row.user_id, set()).add(row.movie)
    return allows


async def _entitlements(
    engine: AsyncEngine, client: Client, customers: list[Customer], found: Findings
) -> None:
    rows = {
        r.user_id: r.grants
        for r in await _rows(
            engine,
            "SELECT user_id, grants FROM access.user_grants WHERE user_id = ANY(:users)",
            users=[c.id for c in customers],
        )
    }
    movies = [str(r.id) for r in await _rows(engine, "SELECT id FROM billing.movie ORDER BY id")]
    basic = {
        str(r.movie_id)
        for r in await _rows(
            engine,
            "SELECT movie_id FROM billing.plan_movie JOIN billing.plan p ON p.id = plan_id"
            " WHERE p.code = 'basic'",
        )
    }
    billing_allows = await _billing_allows(engine, [c.id for c in customers])
    gate = asyncio.Semaphore(16)

    async def one(customer: Customer) -> None:
        found.checked["entitlements"] += 1
        grants = rows.get(customer.id, [])
        sources = Counter(g["source_id"] for g in grants)
        kinds = {g["source"] for g in grants}
        if any(n > 1 for n in sources.values()):
            found.doubled.append(f"user {customer.id}: a grant twice in access: {grants}")
        want = _expected_sources(customer)
        if want - kinds:
            found.lost.append(f"user {customer.id}: no {want - kinds} grant in access")
        if kinds - want:
            found.doubled.append(f"user {customer.id}: unpaid {kinds - want} grant in access")
        allowed = _expected_films(customer, basic, set(movies))
        async with gate:
            answer = await client.call(
                "access",
                "POST",
                f"/api/v1/access/{customer.id}/movies",
                headers=client.service_headers,
                json={"movie_ids": movies},
            )
        assert answer.status_code == 200, f"access answered {answer.status_code}: {answer.text}"
        results = answer.json()["results"]
        says = {movie for movie, result in results.items() if result["allowed"]}
        if allowed - says:
            found.lost.append(f"user {customer.id}: access API denies {allowed - says}")
        if says - allowed:
            found.doubled.append(f"user {customer.id}: access API allows {says - allowed}")
        # Access agrees with billing for every user and film, whatever the story did.
        billing = billing_allows.get(customer.id, set())
        found.checked["films access and billing agree on"] += len(movies)
        if billing - says:
            found.lost.append(f"user {customer.id}: billing grants, access denies {billing - says}")
        if says - billing:
            found.doubled.append(
                f"user {customer.id}: access allows, billing does not grant {says - billing}"
            )

    await asyncio.gather(*(one(c) for c in customers))


async def _households(engine: AsyncEngine, customers: list[Customer], found: Findings) -> None:
    """Seats are never exceeded; exactly the joins the users were told succeeded are members
    (removed with the owner's refund); every invited person got one answer."""
    owners = [c for c in customers if c.members]
    rows = await _rows(
        engine,
        """
        SELECT subscription_id::text AS subscription_id, user_id, status, removed_reason
        FROM billing.household_member WHERE subscription_id::text = ANY(:ids)
        """,
        ids=[c.subscription_id for c in owners],
    )
    by_subscription: dict[str, list[Any]] = {}
    for row in rows:
        by_subscription.setdefault(row.subscription_id, []).append(row)
    for owner in owners:
        found.checked["households"] += 1
        seats = by_subscription.get(str(owner.subscription_id), [])
        in_db = {row.user_id for row in seats if row.user_id is not None}
        told = {member.id for member in owner.members if member.joined}
        if len(in_db) > HOUSEHOLD_SEATS or len(told) > HOUSEHOLD_SEATS:
            found.doubled.append(f"household {owner.subscription_id}: {len(in_db)} seats taken")
        if len(told) < min(HOUSEHOLD_SEATS, HOUSEHOLD_INVITED):
            found.lost.append(f"household {owner.subscription_id}: only {len(told)} joined")
        if told - in_db:
            found.lost.append(f"household {owner.subscription_id}: joins lost {told - in_db}")
        if in_db - told:
            found.doubled.append(f"household {owner.subscription_id}: unseen joins {in_db - told}")
        want = "removed" if owner.story == "household_refund" else "joined"
        wrong = [row for row in seats if row.user_id is not None and row.status != want]
        if wrong:
            found.lost.append(f"household {owner.subscription_id}: members {wrong}, not {want}")


async def _plumbing(engine: AsyncEngine, broker: Broker, found: Findings) -> None:
    schemas = await _rows(
        engine,
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox'",
    )
    for (schema,) in schemas:
        (left,) = await _rows(
            engine, f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"
        )
        found.checked["outboxes"] += 1
        if left[0]:
            found.lost.append(f"{left[0]} {schema} outbox rows never published")
    for queue, depth in (await _queue_depths(broker)).items():
        if queue.endswith(".dead") and depth:
            found.lost.append(f"{depth} messages in dead-letter queue {queue}")


async def _notifications(
    engine: AsyncEngine, system: System, users: list[Any], found: Findings
) -> None:
    rows = await _rows(
        engine,
        """
        SELECT o.id, o.event_type,
               array_remove(array_agg(n.id::text), NULL) AS notifications,
               array_remove(array_agg(n.status), NULL) AS statuses
        FROM billing.outbox o
        LEFT JOIN notifier.notification n ON n.event_id = o.id AND n.channel = 'email'
        WHERE o.event_type = ANY(:types)
          AND (convert_from(o.payload, 'UTF8')::jsonb -> 'data' ->> 'user_id')::uuid = ANY(:users)
        GROUP BY o.id, o.event_type
        """,
        types=BUSINESS_EVENTS,
        users=users,
    )
    for row in rows:
        found.checked["emails"] += 1
        sent = sum(system.mail.message_ids[n] for n in row.notifications)
        if sent == 0 or "sent" not in row.statuses:
            found.lost.append(f"{row.event_type} {row.id}: no email ({row.statuses})")
        elif sent > 1 or len(row.notifications) > 1:
            found.doubled.append(f"{row.event_type} {row.id}: {sent} emails")
