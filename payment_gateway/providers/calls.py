"""The ``provider_call`` journal and the kept provider customers.

Each write is its own transaction, committed before it returns, so what it records outlives the
request that made the call: a call is recorded before it is made (:meth:`ProviderCalls.start`)
and marked after (:meth:`ProviderCalls.finish`), and a new provider customer is kept the moment
it exists (:meth:`ProviderCalls.keep_customer`). Used by :mod:`.guard` and :mod:`.registry`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment_gateway.models import ProviderCall, ProviderCallState, ProviderCustomer
from payment_gateway.providers.base import ProviderError
from shared import clock

logger = logging.getLogger(__name__)

DETAIL_LIMIT = 500


class ProviderCalls:
    """The ``provider_call`` journal and the kept customers, each write its own transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def start(
        self,
        provider: str,
        operation: str,
        subjects: Sequence[Mapping[str, Any]],
    ) -> list[int]:
        """Record calls about to be made (one per subject: ``payment_id``, ``refund_id``,
        ``customer_id``, ``provider_ref``); committed before this returns."""
        moment = clock.now()
        rows = [
            {
                "provider": provider,
                "operation": operation,
                "payment_id": subject.get("payment_id"),
                "refund_id": subject.get("refund_id"),
                "customer_id": subject.get("customer_id"),
                "provider_ref": subject.get("provider_ref"),
                "state": ProviderCallState.STARTED,
                "started_at": moment,
            }
            for subject in subjects
        ]
        try:
            async with self.sessions() as session, session.begin():
                ids = await session.scalars(
                    insert(ProviderCall).values(rows).returning(ProviderCall.id)
                )
                return list(ids)
        except Exception as exc:
            # Nothing is asked of a provider that could not be recorded first.
            raise ProviderError(f"the call to {provider} could not be recorded: {exc}") from exc

    async def finish(
        self,
        ids: Sequence[int],
        states: Sequence[tuple[ProviderCallState, str | None, str | None]],
    ) -> None:
        """Mark each call (state, provider_ref learned, detail); a failure here is logged only:
        the call then stays ``started``, which reads as "in doubt", the safe side."""
        moment = clock.now()
        try:
            async with self.sessions() as session, session.begin():
                for call_id, (state, provider_ref, detail) in zip(ids, states, strict=True):
                    values: dict[str, Any] = {"state": state, "finished_at": moment}
                    if provider_ref is not None:
                        values["provider_ref"] = provider_ref
                    if detail is not None:
                        values["detail"] = detail[:DETAIL_LIMIT]
                    await session.execute(
                        sa.update(ProviderCall).where(ProviderCall.id == call_id).values(**values)
                    )
        except Exception:
            logger.exception("could not mark provider calls %s", list(ids))

    async def keep_customer(self, provider: str, user_id: UUID, customer_ref: str) -> str:
        """Keep the user's new customer at once (committed), so a retry reuses it; answers the
        customer kept (an earlier one, if another request kept one first)."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                insert(ProviderCustomer)
                .values(provider=provider, user_id=user_id, customer_ref=customer_ref)
                .on_conflict_do_nothing(index_elements=["provider", "user_id"])
            )
            kept = await session.scalar(
                sa.select(ProviderCustomer.customer_ref).where(
                    ProviderCustomer.provider == provider, ProviderCustomer.user_id == user_id
                )
            )
        assert kept is not None
        return kept
