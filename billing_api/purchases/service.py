"""Buying or renting one movie: same checkout and payment path as subscriptions."""

from __future__ import annotations

from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.catalog.service import MovieNotFound
from billing_api.customers import Customer
from billing_api.models import Movie, Payment, Purchase, PurchaseStatus
from billing_api.payments import pending
from billing_api.payments import service as payments
from billing_api.purchases.schemas import PurchaseIn, PurchaseOut
from shared.errors import Conflict
from shared.pagination import newest_first, page_of


class MovieNotForSale(Conflict):
    default_detail = "this movie cannot be bought this way"


async def purchase_out(session: AsyncSession, purchase: Purchase) -> PurchaseOut:
    latest = (
        await session.get(Payment, purchase.latest_payment_id)
        if purchase.latest_payment_id
        else None
    )
    return _purchase_out(purchase, latest)


def _purchase_out(purchase: Purchase, latest: Payment | None) -> PurchaseOut:
    return PurchaseOut(
        id=purchase.id,
        movie_id=purchase.movie_id,
        kind=purchase.kind,
        status=purchase.status,
        valid_until=purchase.valid_until,
        latest_payment=payments.brief(latest),
        created_at=purchase.created_at,
    )


async def buy(
    session: AsyncSession, customer: Customer, request: PurchaseIn
) -> tuple[Purchase, bool]:
    """Buy or rent a movie; returns ``(purchase, created)``. A pending purchase of the same movie
    and kind is returned with its payment instead of a second one; a card payment is left for the
    route to open at the gateway after the commit."""
    movie = await session.get(Movie, request.movie_id)
    if movie is None:
        raise MovieNotFound(f"movie {request.movie_id} not found")
    price = movie.purchase_amount if request.kind == "buy" else movie.rent_amount
    if not movie.on_sale or price is None:
        raise MovieNotForSale(
            f"{movie.title!r} cannot be {'bought' if request.kind == 'buy' else 'rented'}"
        )

    async def order(purchase: Purchase) -> payments.Order:
        return payments.Order(
            purpose="purchase",
            description=(
                f"{movie.title} (rent, {movie.rent_hours} h)"
                if request.kind == "rent"
                else f"{movie.title} (buy)"
            ),
            amount=price,
            base_amount=price,
            currency=movie.currency,
            purchase_id=purchase.id,
        )

    return await pending.start_or_reuse(
        session,
        customer,
        Purchase,
        insert=insert(Purchase)
        .values(
            id=uuid4(),
            user_id=customer.id,
            email=customer.email,
            movie_id=movie.id,
            kind=request.kind,
            status=PurchaseStatus.PENDING,
        )
        .on_conflict_do_nothing(
            index_elements=[Purchase.user_id, Purchase.movie_id, Purchase.kind],
            # A literal predicate: a bound parameter stops matching the partial index once
            # PostgreSQL plans the prepared statement generically (after five runs).
            index_where=sa.text("status = 'pending'"),
        )
        .returning(Purchase.id),
        pending=sa.select(Purchase).where(
            Purchase.user_id == customer.id,
            Purchase.movie_id == movie.id,
            Purchase.kind == request.kind,
            Purchase.status == PurchaseStatus.PENDING,
        ),
        order=order,
        method=request.payment_method,
    )


async def list_purchases(
    session: AsyncSession, user_id: UUID, *, cursor: str | None, limit: int
) -> tuple[list[PurchaseOut], str | None]:
    query = sa.select(Purchase).where(Purchase.user_id == user_id)
    rows = (
        await session.scalars(newest_first(query, Purchase.created_at, Purchase.id, cursor, limit))
    ).all()
    items, next_cursor = page_of(rows, limit)
    latest = await payments.by_id(session, [p.latest_payment_id for p in items])
    return [_purchase_out(p, latest.get(p.latest_payment_id)) for p in items], next_cursor
