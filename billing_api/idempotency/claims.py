"""An Idempotency-Key's row in ``idempotency_key``: claiming it for a request, fencing each commit
of the request's transaction, storing its response or releasing the claim, and deleting the
keys that expired. Claim, store and release are each a short transaction of their own; only the
fence is part of the route's transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_api.models import IdempotencyKey, IdempotencyKeyStatus
from shared import clock
from shared.errors import Conflict

# The caller's credentials (401, 403) or a limit's window (429), not the request, decided these:
# a retry with the same key once the window has freed runs the request.
_NOT_STORED = frozenset({401, 403, 429})

SessionFactory = async_sessionmaker[AsyncSession]


class IdempotencyKeyTakenOver(Conflict):
    default_detail = (
        "a retry with this Idempotency-Key took it over while this request ran: nothing of this "
        "request was committed; the retry's response is replayed once stored"
    )


@dataclass(slots=True)
class Claim:
    subject: str
    key: str
    owner: UUID  # identifies this claim: a takeover sets a new one
    rerunnable: bool = False  # a failed answer releases the key even after a commit

    async def fence(self, session: AsyncSession) -> None:
        """In the request's transaction, right before each commit: mark the claim's effect
        committed, as its owner, or refuse the commit (:class:`IdempotencyKeyTakenOver`) when
        a retry took the claim over. The row stays locked until the commit, so a takeover
        waits for it and then sees the effect committed. It is the transaction's last lock, and
        the transactions that take it first (claim, store, release) take no other: no cycle."""
        table = IdempotencyKey
        owned = await session.scalar(
            sa.update(table)
            .where(table.subject == self.subject, table.key == self.key, table.owner == self.owner)
            .values(effect_committed_at=sa.func.coalesce(table.effect_committed_at, clock.now()))
            .returning(table.key)
            .execution_options(synchronize_session=False)
        )
        if owned is None:
            raise IdempotencyKeyTakenOver()


@dataclass(slots=True)
class CapturedResponse:
    """The response as the route sent it, kept to be stored under the claim."""

    status: int | None = None
    content_type: str | None = None
    chunks: list[bytes] = field(default_factory=list)
    complete: bool = False

    def storable(self) -> bool:
        status = self.status
        return self.complete and status is not None and status < 500 and status not in _NOT_STORED


async def claim_key(
    sessions: SessionFactory,
    subject: str,
    key: str,
    *,
    method: str,
    path: str,
    request_hash: str,
    ttl: timedelta,
    locked: bool,
) -> Claim | IdempotencyKey | None:
    """Claim the key (new, expired, or left by a request that is gone before committing), or
    return its row as it stands (``None``: no row that has not expired) for the caller to say
    why not. Only the holder of the key's lock (``locked``) may claim."""
    now, owner = clock.now(), uuid4()
    table = IdempotencyKey
    fresh = {
        "method": method,
        "path": path[:500],
        "request_hash": request_hash,
        "status": IdempotencyKeyStatus.IN_PROGRESS,
        "created_at": now,
        "expires_at": now + ttl,
        "owner": owner,
        "effect_committed_at": None,
    }
    row = insert(table).values(subject=subject, key=key, **fresh)
    # We hold the key's lock, so a claim still in progress was left by a request that is
    # gone -- or whose lock session was cut while it runs: the takeover then waits for its
    # transaction's fence (the row lock) and is refused once its effect is committed.
    abandoned = sa.and_(
        table.status == IdempotencyKeyStatus.IN_PROGRESS,
        table.request_hash == request_hash,
        table.effect_committed_at.is_(None),
    )
    cleared = {"response_status": None, "response_body": None, "response_content_type": None}
    upsert = row.on_conflict_do_update(
        index_elements=[table.subject, table.key],
        set_={**fresh, **cleared},
        where=sa.or_(table.expires_at <= now, abandoned),
    ).returning(table.created_at)
    current = sa.select(table).where(table.subject == subject, table.key == key)
    async with sessions() as session, session.begin():
        if not locked:  # a running request holds the key: answer from its row, never claim
            existing = await session.scalar(current)
            if existing is not None and existing.expires_at <= now:
                existing = None
        elif await session.scalar(upsert) is not None:
            return Claim(subject, key, owner)
        else:
            # Not claimed: the upsert locked the existing row, so it is still there.
            existing = await session.scalar(current)
    return existing


async def settle(sessions: SessionFactory, claim: Claim, captured: CapturedResponse) -> None:
    """Store a complete, storable response under our claim; otherwise release the claim --
    unless the request committed its effect (and its route did not say a rerun finds it)."""
    ours = sa.and_(
        IdempotencyKey.subject == claim.subject,
        IdempotencyKey.key == claim.key,
        IdempotencyKey.status == IdempotencyKeyStatus.IN_PROGRESS,
        IdempotencyKey.owner == claim.owner,  # not taken over meanwhile
    )
    if captured.storable():
        statement: sa.Executable = (
            sa.update(IdempotencyKey)
            .where(ours)
            .values(
                status=IdempotencyKeyStatus.DONE,
                response_status=captured.status,
                response_body=b"".join(captured.chunks),
                response_content_type=captured.content_type,
            )
        )
    elif captured.complete and claim.rerunnable:  # a failed answer; a rerun finds the effect
        statement = sa.delete(IdempotencyKey).where(ours)
    else:  # a failed answer or none (cancelled, a bug): an effect committed must not run again
        statement = sa.delete(IdempotencyKey).where(
            ours, IdempotencyKey.effect_committed_at.is_(None)
        )
    async with sessions() as session, session.begin():
        await session.execute(statement)


async def delete_expired(sessions: SessionFactory, now: datetime, *, limit: int = 1000) -> int:
    """Delete up to ``limit`` keys expired at ``now`` (skipping locked ones) in one transaction of
    its own; the number deleted."""
    table = IdempotencyKey
    batch = (
        sa.select(table.subject, table.key)
        .where(table.expires_at <= now)
        .order_by(table.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    async with sessions() as session, session.begin():
        result = await session.execute(
            sa.delete(table).where(sa.tuple_(table.subject, table.key).in_(batch))
        )
    return int(result.rowcount)  # type: ignore[attr-defined]
