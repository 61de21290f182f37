"""Stored webhook events processed in batches: one transaction and one provider read for many.

A batch claims up to :data:`BATCH_SIZE` unprocessed events in id order with ``FOR UPDATE SKIP
LOCKED``, so processors in several replicas share the work and never take the same event. Its
payments are found and locked with one query, in payment id order (two batches that share a
payment wait for each other instead of deadlocking), re-read at their provider with one
``fetch_payments`` per provider (one query for the whole batch in the sandbox), and each
snapshot is applied once however many of the batch's events are about that payment. The events
are then marked processed with their outcome, and the batch commits once.

An event that names no payment of ours by id (a Stripe refund made in the dashboard, a dispute:
found by their PaymentIntent only) and whose reference matches none is not called unknown at
once while it is younger than :data:`UNKNOWN_GRACE`: the payment may be one whose first success
another batch is processing right now, its charge reference not committed yet, and that batch
re-read the provider before this event's change. It stays unprocessed and is looked at again
after the processor's backoff, by when the reference is known.

A batch that fails is rolled back whole and its events are processed again one per transaction,
so one bad event never holds the others back. An event that fails alone stays unprocessed for a
later run, its ``outcome`` saying why, its ``attempts`` counted in its row and its next try not
before ``next_attempt_at`` (1 s, 2 s, 4 s … at most :attr:`RetryPolicy.max_backoff`, counted
from the failure); at :attr:`RetryPolicy.max_attempts` failures it is parked (``parked_at``,
metric ``gateway_webhook_events_parked_total``) and no longer claimed: a refresh of its payment
settles it, or an operator sends it back (:mod:`.parking`). Being in the row, the count and the
wait hold across restarts and replicas. :func:`~payment_gateway.payments.reconcile.apply_snapshot`
derives every change from what is already recorded, so an event delivered twice, events out of
order, or several events about one payment still change each thing once.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import defer

from payment_gateway.models import (
    Payment,
    PaymentStatus,
    ProviderCall,
    ProviderCallState,
    WebhookEvent,
)
from payment_gateway.payments.reconcile import apply_snapshot
from payment_gateway.payments.state import OPEN
from payment_gateway.providers.base import ProviderError, ProviderPayment
from payment_gateway.providers.registry import Providers
from payment_gateway.webhooks import parking
from shared import clock

logger = logging.getLogger(__name__)

BATCH_SIZE = 100
UNKNOWN_PAYMENT = "unknown payment"
NOT_KNOWN_YET = "no payment with this reference yet; looked for again later"
UNKNOWN_GRACE = timedelta(minutes=10)
# How soon an event whose payment is not known yet is looked at again (not a failure).
NOT_KNOWN_YET_RECHECK = timedelta(seconds=2)


@dataclass
class BatchResult:
    claimed: int = 0
    processed: int = 0
    failed: dict[int, str] = field(default_factory=dict)  # event id → why, left for a retry
    parked: list[int] = field(default_factory=list)  # of those, the ones parked now


async def process_batch(
    sessions: async_sessionmaker[AsyncSession],
    providers: Providers,
    *,
    limit: int = BATCH_SIZE,
    skip: Collection[int] = (),
    policy: parking.RetryPolicy = parking.DEFAULT_POLICY,
) -> BatchResult:
    """Claim up to ``limit`` due, unparked, unprocessed events (but those in ``skip``) and
    process them."""
    ids: list[int] = []
    left: list[int] = []
    try:
        async with sessions() as session, session.begin():
            events = await _claim(session, limit=limit, skip=skip)
            ids = [event.id for event in events]
            if events:
                left = await apply_events(session, providers, events)
        return BatchResult(
            claimed=len(ids),
            processed=len(ids) - len(left),
            failed=dict.fromkeys(left, NOT_KNOWN_YET),
        )
    except Exception:
        if not ids:
            raise  # not even claimed: nothing to fall back to
        logger.warning("webhook batch failed; its events are processed one by one", exc_info=True)
    result = BatchResult(claimed=len(ids))
    for event_id in ids:
        processed, why, parked = await _process_alone(sessions, providers, event_id, policy)
        result.processed += processed
        if why is not None:
            result.failed[event_id] = why
        if parked:
            result.parked.append(event_id)
    return result


async def _process_alone(
    sessions: async_sessionmaker[AsyncSession],
    providers: Providers,
    event_id: int,
    policy: parking.RetryPolicy,
) -> tuple[bool, str | None, bool]:
    """Process one event in its own transaction: (processed here, why it failed, parked)."""
    try:
        async with sessions() as session, session.begin():
            # Another processor may have taken it since the batch let it go: then it is theirs.
            events = await _claim(session, limit=1, only=event_id)
            left = await apply_events(session, providers, events)
        return (False, NOT_KNOWN_YET, False) if left else (bool(events), None, False)
    except Exception as exc:
        logger.exception("webhook processing failed; will retry", extra={"row": event_id})
        why = f"failed: {type(exc).__name__}: {exc}"[:200]
    try:
        parked = await parking.count_failure(sessions, event_id, why, policy)
    except Exception:
        logger.exception("could not record why a webhook failed", extra={"row": event_id})
        parked = False
    return False, why, parked


async def _claim(
    session: AsyncSession, *, limit: int, skip: Collection[int] = (), only: int | None = None
) -> list[WebhookEvent]:
    query = (
        sa.select(WebhookEvent)
        .options(defer(WebhookEvent.payload))
        .where(
            WebhookEvent.processed_at.is_(None),
            WebhookEvent.parked_at.is_(None),
            sa.or_(
                WebhookEvent.next_attempt_at.is_(None),
                WebhookEvent.next_attempt_at <= clock.now(),
            ),
        )
        .order_by(WebhookEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if only is not None:
        query = query.where(WebhookEvent.id == only)
    if skip:
        query = query.where(WebhookEvent.id.not_in(sorted(skip)))
    return list(await session.scalars(query))


async def apply_events(
    session: AsyncSession, providers: Providers, events: Sequence[WebhookEvent]
) -> list[int]:
    """Re-read the payments of claimed ``events``, apply what the providers say, mark them.

    Returns the ids of the events left unprocessed to be looked at again (see the module).
    """
    payments = await _lock_payments(session, events)
    by_id = {payment.id: payment for payment in payments}
    by_ref: dict[tuple[str, str], Payment] = {}
    for payment in payments:
        for ref in (payment.provider_ref, payment.charge_ref):
            if ref is not None:
                by_ref.setdefault((payment.provider, ref), payment)
    matched = {event.id: _payment_of(event, by_id, by_ref) for event in events}
    concerned = {payment.id for payment in matched.values() if payment is not None}
    to_apply = [payment for payment in payments if payment.id in concerned]  # in id order

    for payment in to_apply:
        if payment.provider_ref is None:
            _adopt_reference(payment, events)
    snapshots = await _fetch(providers, to_apply)
    for payment in to_apply:
        if payment.provider_ref is None:
            # Refused before the provider made anything (a decline without a PaymentIntent):
            # settled already, with nothing to re-read.
            continue
        snapshot = snapshots.get((payment.provider, payment.provider_ref))
        if snapshot is None:
            raise ProviderError(f"{payment.provider} does not know payment {payment.provider_ref}")
        await apply_snapshot(session, payment, snapshot)

    moment = clock.now()
    called = await _called_about(
        session, {e.payment_id for e in events if e.payment_id and matched[e.id] is None}
    )
    left: list[int] = []
    for event in events:
        found = matched[event.id]
        if found is None and _may_be_ours_soon(event, moment, called):
            event.outcome = NOT_KNOWN_YET
            event.next_attempt_at = moment + NOT_KNOWN_YET_RECHECK
            left.append(event.id)
            continue
        if found is None:
            logger.warning(
                "webhook for a payment we do not know",
                extra={"provider": event.provider, "event_id": event.provider_event_id},
            )
        event.outcome = UNKNOWN_PAYMENT if found is None else f"payment {found.status}"
        event.processed_at = moment
    await session.flush()
    return left


def _may_be_ours_soon(event: WebhookEvent, moment: datetime, called: set[UUID]) -> bool:
    """Young enough that its payment may still be committing: found by reference only, or
    naming by id a payment whose provider call is in flight or was answered unreadably (the
    call is recorded before it is made, so a provider that reports at once, before the request
    that asked commits its payment, is not taken for a stranger; that report may be the only
    one of a charge whose answer could not be read)."""
    if event.received_at <= moment - UNKNOWN_GRACE:
        return False
    if event.payment_id is not None:
        return event.payment_id in called
    return event.provider_ref is not None


async def _called_about(session: AsyncSession, payment_ids: set[UUID]) -> set[UUID]:
    """Those of ``payment_ids`` with a provider call whose outcome is unknown (still in flight,
    or answered unreadably): their payment is, or is about to be, committed. A call the provider
    refused left no payment behind; its id is a stranger until it is sent again."""
    if not payment_ids:
        return set()
    found = await session.scalars(
        sa.select(ProviderCall.payment_id)
        .where(
            ProviderCall.payment_id.in_(sorted(payment_ids)),
            ProviderCall.state.in_([ProviderCallState.STARTED, ProviderCallState.UNREADABLE]),
        )
        .distinct()
    )
    return {payment_id for payment_id in found if payment_id is not None}


def _adopt_reference(payment: Payment, events: Sequence[WebhookEvent]) -> None:
    """A payment kept without the provider's reference (the answer to the call that made it
    could not be read) takes the one a verified event about it names by our id."""
    for event in events:
        if event.payment_id == payment.id and event.provider_ref is not None:
            logger.warning(
                "payment takes its provider reference from a webhook",
                extra={"payment_id": str(payment.id), "provider_ref": event.provider_ref},
            )
            payment.provider_ref = event.provider_ref
            return


async def _fetch(
    providers: Providers, payments: Sequence[Payment]
) -> dict[tuple[str, str], ProviderPayment]:
    """Each payment's snapshot, asked of its provider in one call per provider."""
    refs: dict[str, list[str]] = {}
    for payment in payments:
        if payment.provider_ref is None:
            if PaymentStatus(payment.status) not in OPEN:
                continue  # settled without a reference: nothing to re-read
            # Created at the provider but not recorded yet: a later run finds it.
            raise ProviderError(f"payment {payment.id} has no provider reference yet")
        refs.setdefault(payment.provider, []).append(payment.provider_ref)
    snapshots: dict[tuple[str, str], ProviderPayment] = {}
    for name, wanted in refs.items():
        found = await providers.get(name).fetch_payments(list(dict.fromkeys(wanted)))
        snapshots.update(((name, ref), snapshot) for ref, snapshot in found.items())
    return snapshots


def _payment_of(
    event: WebhookEvent,
    by_id: dict[UUID, Payment],
    by_ref: dict[tuple[str, str], Payment],
) -> Payment | None:
    if event.payment_id is not None:
        return by_id.get(event.payment_id)
    if event.provider_ref is not None:
        return by_ref.get((event.provider, event.provider_ref))
    return None


async def _lock_payments(session: AsyncSession, events: Sequence[WebhookEvent]) -> list[Payment]:
    """The payments the events are about, locked in id order, with one query."""
    ids = sorted({event.payment_id for event in events if event.payment_id is not None})
    refs: dict[str, set[str]] = {}
    for event in events:
        if event.payment_id is None and event.provider_ref is not None:
            refs.setdefault(event.provider, set()).add(event.provider_ref)
    conditions: list[sa.ColumnElement[bool]] = []
    if ids:
        conditions.append(Payment.id.in_(ids))
    for provider, wanted in refs.items():
        conditions.append(
            sa.and_(
                Payment.provider == provider,
                sa.or_(
                    Payment.provider_ref.in_(sorted(wanted)), Payment.charge_ref.in_(sorted(wanted))
                ),
            )
        )
    if not conditions:
        return []
    # Rows are locked as the sorted result is read, so in id order.
    query = sa.select(Payment).where(sa.or_(*conditions)).order_by(Payment.id).with_for_update()
    return list(await session.scalars(query))
