"""Renewal charges: claim what is due, charge it at the gateway, settle what the gateway said.

A renewal is charged in three steps so that no crash and no second worker can charge twice:

1. **Claim** (one transaction per batch): due subscriptions are locked with ``FOR UPDATE SKIP
   LOCKED``, each gets its renewal payment (a pending one left by an earlier run is reused, so
   its id, the gateway's idempotency key, stays the same) and a lease (``next_renewal_at``) so
   other runs skip it while it is charged. The payments are committed before any charge.
2. **Charge**: the gateway is asked to charge the batch's payments ``CHARGE_CHUNK`` to a
   request (its bulk endpoint, each charge idempotent on its payment id), ``CHARGE_CONCURRENCY``
   requests at a time. No database connection is held meanwhile: what the gateway needs was read
   at the claim. A request that fails leaves its payments pending, as a single charge would.
3. **Settle**: the answers are applied exactly as the gateway's ``payment.succeeded`` /
   ``payment.failed`` events would be (both paths are idempotent on the payment's status).

A claimed renewal whose charge still waits for the cardholder's confirmation (3-D Secure) is
cancelled at the gateway in step 2 instead of charged, and the answer settled in step 3
(:mod:`billing_api.lifecycle.unconfirmed`, :mod:`billing_api.activation.confirmations`).

Design decisions, for throughput (``make bench-renewals``) without giving up any of the above:

* A batch costs a handful of statements to claim (one query for the due rows, one for pending
  payments, one multi-row insert, one lease update) instead of several per subscription.
* Answers are settled ``SETTLE_GROUP`` to a transaction: the group's subscriptions and then its
  payments are locked, each in one statement in id order (billing's lock order, as the event
  consumer does; should anything still deadlock, PostgreSQL's abort sends the losing group
  down the one-at-a-time path); if a group fails, each of its payments is settled on
  its own, and every later group is settled all the same, so one bad payment holds back no other.
  The failures are raised together once the whole run is done. A payment left unsettled by a
  crash stays pending: the next run after the lease charges it again with the same id (the
  gateway answers with the first charge) and settles it, and so would the gateway's event or
  reconciliation.
* Each payment is still settled by the functions its event uses
  (:func:`~billing_api.activation.service.complete_payment` / ``fail_payment``): they are the
  one home of what an outcome does, and their status checks under the payment's lock are what
  make this run and the gateway's own event exclusive, whichever comes first or waits for the
  other. What a group shares is read once instead: its plans, the payments that paid for the
  running periods, and its users' entitlement snapshots (all users locked by one statement in
  user-id order, then one read per kind of grant: ``entitlements.publish_snapshots``).
* What a group writes is written once too, so a group costs the same number of statements
  whatever its size (17 for a group of 50 renewals, half paid and half declined, as for a
  group of 4; it was 263, and 30 for the 4; ``TestGroupCost`` holds it): the rows locked by
  the group's two locking statements are not locked and read again by each settlement
  (:func:`billing_api.locks.lock_all`), the ledger postings are written by one statement per
  table (:func:`billing_api.ledger.service.collected`), the events by one INSERT in the order
  they were added (:func:`shared.outbox.collected`), and the changed rows by one UPDATE per
  table and outcome (the payments are settled outcome by outcome, each followed by a flush:
  the unit of work batches rows that changed the same columns only when they are neighbours
  in key order). Nothing of this changes what a settlement decides or in what order locks
  are taken; a rarer settlement (refunding an unused renewal) costs its own statements.
* A batch is charged in a couple of gateway requests instead of one per payment; a lone charge
  goes to the single endpoint (the same answer, no batch to build).
* While one batch is settled the next one is claimed and charged: the gateway is never idle
  waiting for our commits. At most one settlement is in flight, so memory and connections stay
  bounded (a run holds at most two pooled connections).

What a renewal costs is decided at the claim (:mod:`billing_api.lifecycle.renewal_claims`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Collection, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api import entitlements, locks
from billing_api.gateway import (
    GatewayPayment,
    GatewayRefused,
    GatewayUnavailable,
    OffSessionCharge,
)
from billing_api.ledger import service as ledger
from billing_api.lifecycle import wallet_renewals
from billing_api.lifecycle.renewal_claims import RenewalCharge, claim_renewals
from billing_api.lifecycle.service import JobContext, apply_gateway_result
from billing_api.lifecycle.unconfirmed import cancel_unconfirmed
from billing_api.models import Payment, PaymentStatus, Plan, Subscription
from shared import outbox

logger = logging.getLogger(__name__)

# Charges per gateway request (the gateway takes up to MAX_CHARGES_PER_REQUEST), and requests
# in flight at once per run: each only waits on the gateway (no connection held).
CHARGE_CHUNK = 100
CHARGE_CONCURRENCY = 2
# Gateway answers applied per transaction.
SETTLE_GROUP = 50


async def renew_due(ctx: JobContext) -> int:
    """Charge every subscription whose renewal (or next dunning retry) is due, batch by batch;
    returns how many charges succeeded (counted by the charge, not by who applied it: the
    gateway's event may have got there first)."""
    succeeded = 0
    settlements: list[asyncio.Task[list[Exception]]] = []
    async with asyncio.TaskGroup() as group:
        while batch := await claim_renewals(ctx):
            results = await charge_all(ctx, batch)
            succeeded += sum(result.status == PaymentStatus.SUCCEEDED for result in results)
            if settlements:
                await settlements[-1]  # one settlement in flight at a time
            settlements.append(group.create_task(settle(ctx, results)))
    failures = [failure for task in settlements for failure in task.result()]
    if failures:
        raise ExceptionGroup("renewals charged but not settled by this run", failures)
    return succeeded


# --- 2. charge ----------------------------------------------------------------------------------


async def charge_all(ctx: JobContext, batch: Sequence[RenewalCharge]) -> list[GatewayPayment]:
    """The gateway's answer for each charge it could be asked about (others wait for the next
    run, after the lease)."""
    answers = [_settled_here(renewal) for renewal in batch if renewal.free]
    answers += _settled_from_wallets(batch)
    # Charged already, waiting for the cardholder: cancelled, never charged again.
    answers += await cancel_unconfirmed(ctx, [r for r in batch if r.confirming])
    paid = [r for r in batch if not (r.free or r.confirming) and r.wallet is None]
    chunks = [paid[start : start + CHARGE_CHUNK] for start in range(0, len(paid), CHARGE_CHUNK)]
    limit = asyncio.Semaphore(CHARGE_CONCURRENCY)

    async def charge(chunk: Sequence[RenewalCharge]) -> list[GatewayPayment]:
        async with limit:
            return await _charge_chunk(ctx, chunk)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(charge(chunk)) for chunk in chunks]
    return answers + [answer for task in tasks for answer in task.result()]


async def _charge_chunk(ctx: JobContext, chunk: Sequence[RenewalCharge]) -> list[GatewayPayment]:
    """One request for the whole chunk; a charge the gateway could not be asked about, or
    refused, stays pending (the gateway's event or the next run after the lease settles it)."""
    if len(chunk) == 1:  # one charge: the single endpoint, with the same answer
        one = await _charge_one(ctx, chunk[0])
        return [] if one is None else [one]
    try:
        answers = await ctx.gateway.charge_off_session_many([_request(r) for r in chunk])
    except GatewayRefused as exc:  # billing and the gateway disagree: a bug, not an outage
        logger.error("%d renewal charges refused; retried on the next run: %s", len(chunk), exc)
        return []
    except GatewayUnavailable as exc:
        logger.warning("%d renewal charges not made; retried on the next run: %s", len(chunk), exc)
        return []
    results: list[GatewayPayment] = []
    for answer in answers:
        if isinstance(answer, GatewayRefused):
            logger.error(
                "renewal charge refused by the gateway; retried on the next run: %s", answer
            )
        elif isinstance(answer, GatewayUnavailable):
            logger.warning("renewal charge not made; retried on the next run: %s", answer)
        else:
            results.append(answer)
    return results


def _request(renewal: RenewalCharge) -> OffSessionCharge:
    assert renewal.payment_method_ref is not None
    return OffSessionCharge(
        payment_id=renewal.payment_id,
        user_id=renewal.user_id,
        email=renewal.email,
        amount=renewal.amount,
        currency=renewal.currency,
        description=renewal.description,
        payment_method_ref=renewal.payment_method_ref,
        metadata={"purpose": "renewal", "subscription_id": str(renewal.subscription_id)},
    )


async def _charge_one(ctx: JobContext, renewal: RenewalCharge) -> GatewayPayment | None:
    request = _request(renewal)
    try:
        return await ctx.gateway.charge_off_session(
            payment_id=request.payment_id,
            user_id=request.user_id,
            email=request.email,
            amount=request.amount,
            currency=request.currency,
            description=request.description,
            payment_method_ref=request.payment_method_ref,
            metadata=request.metadata,
        )
    except GatewayRefused as exc:  # billing and the gateway disagree: a bug, not an outage
        logger.error("renewal charge refused by the gateway; retried on the next run: %s", exc)
    except GatewayUnavailable as exc:
        logger.warning("renewal charge not made; retried on the next run: %s", exc)
    return None


def _settled_here(renewal: RenewalCharge) -> GatewayPayment:
    """A free renewal's outcome without the gateway: succeeded, as a free order is at checkout.
    It is settled like any charge's answer (no provider: a free payment moves no money)."""
    return GatewayPayment(
        payment_id=renewal.payment_id,
        status=PaymentStatus.SUCCEEDED,
        provider="",
        checkout_url=None,
        expires_at=None,
        payment_method_ref=None,
        failure_code=None,
        failure_message=None,
    )


def _settled_from_wallets(batch: Sequence[RenewalCharge]) -> list[GatewayPayment]:
    """The outcomes of the renewals the claim paid from the wallet (or failed for want of it):
    no gateway, settled like a free one (:mod:`billing_api.lifecycle.wallet_renewals`)."""
    return [
        wallet_renewals.settled_here(renewal.payment_id, renewal.wallet)
        for renewal in batch
        if renewal.wallet is not None
    ]


# --- 3. settle ----------------------------------------------------------------------------------


async def settle(ctx: JobContext, results: Sequence[GatewayPayment]) -> list[Exception]:
    """Apply the gateway's answers, ``SETTLE_GROUP`` per transaction; returns what failed (each
    such payment stays pending for the gateway's event, or the next run after the lease)."""
    failures: list[Exception] = []
    ordered = sorted(results, key=lambda result: result.payment_id)
    for start in range(0, len(ordered), SETTLE_GROUP):
        group = ordered[start : start + SETTLE_GROUP]
        try:
            await _settle_group(ctx, group)
        except Exception as failure:
            if len(group) == 1:
                failures.append(failure)
                continue
            logger.exception("settling %d renewals together failed; one at a time", len(group))
            for result in group:
                try:
                    await _settle_group(ctx, [result])
                except Exception as single:
                    failures.append(single)
    return failures


async def _settle_group(ctx: JobContext, group: Sequence[GatewayPayment]) -> None:
    async with ctx.sessions() as session, session.begin():
        # billing's lock order: the subscriptions (in id order), then their payments (in id
        # order), as an upgrade paid meanwhile takes them when it voids a pending renewal.
        # Read under their locks, the rows are held by this transaction: each settlement's own
        # lock of them is then a no-op (no statement).
        ids = [result.payment_id for result in group]
        subscriptions = await locks.lock_all(
            session,
            Subscription,
            Subscription.id.in_(sa.select(Payment.subscription_id).where(Payment.id.in_(ids))),
        )
        payments = {
            payment.id: payment
            for payment in await locks.lock_all(session, Payment, Payment.id.in_(ids))
        }
        # The session holds unchanged objects weakly: kept referenced here, the plans and the
        # payments that paid for the running periods are loaded once for the group instead of
        # once per payment by each settlement (which finds them in the session).
        plans = await _plans_of(session, payments.values())
        latest = await _latest_payments_of(session, payments.values())
        # What each settlement writes is written once for the group: its ledger postings (one
        # statement per table), the rows it changed (one UPDATE per table and set of columns,
        # at the flush before the snapshots), and its events (one INSERT, in order, after
        # every user's entitlement lock is taken, last and in user-id order).
        async with (
            outbox.collected(session),
            entitlements.deferred_snapshots(session),
            ledger.collected(session),
        ):
            # Outcome by outcome: the unit of work batches an UPDATE only over neighbouring
            # rows (in key order) that changed the same columns, so each outcome's rows are
            # written by their own flush, whatever order the outcomes came in.
            by_outcome = sorted(group, key=lambda result: result.status)
            for _, alike in itertools.groupby(by_outcome, key=lambda result: result.status):
                for result in alike:
                    await apply_gateway_result(
                        session,
                        payments[result.payment_id],
                        result,
                        dunning=ctx.settings.dunning_offsets,
                        account_url=ctx.settings.account_url,
                    )
                await session.flush()
        del subscriptions, plans, latest


async def _plans_of(session: AsyncSession, payments: Collection[Payment]) -> list[Plan]:
    """The plans the payments buy and the plans their subscriptions are on now."""
    plan_ids = {payment.plan_id for payment in payments if payment.plan_id is not None}
    subscription_ids = [p.subscription_id for p in payments if p.subscription_id is not None]
    current = sa.select(Subscription.plan_id).where(Subscription.id.in_(subscription_ids))
    return list(
        await session.scalars(
            sa.select(Plan).where(sa.or_(Plan.id.in_(plan_ids), Plan.id.in_(current)))
        )
    )


async def _latest_payments_of(
    session: AsyncSession, payments: Collection[Payment]
) -> list[Payment]:
    """The payments that paid for the running periods of the payments' subscriptions, read as
    a renewal's settlement reads them (unlocked)."""
    subscription_ids = [p.subscription_id for p in payments if p.subscription_id is not None]
    latest = sa.select(Subscription.latest_payment_id).where(Subscription.id.in_(subscription_ids))
    return list(await session.scalars(sa.select(Payment).where(Payment.id.in_(latest))))
