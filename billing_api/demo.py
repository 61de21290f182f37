"""Demo catalog loaded by ``make run``: a few movies, three plans, month tiers and a promo code.

Idempotent: ids are derived from names, plans are saved by code, so running it again changes
nothing (and emits no ``plan.changed``).
"""

from __future__ import annotations

import uuid

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.catalog.service import MovieSpec, PlanSpec, save_plan, upsert_movies
from billing_api.models import MonthTier, PromoCode

NAMESPACE = uuid.UUID("8a3c1f00-5f8e-4c2b-9d3e-1c0ffee0cafe")

MOVIES = [
    ("The Long Night Train", 29900, 14900),
    ("Northern Lights", 34900, 16900),
    ("A Quiet Harbour", 24900, 9900),
    ("Paper Moons", 39900, 19900),
    ("The Last Projectionist", 44900, 19900),
    ("Salt and Cedar", 19900, 7900),
]


def movie_id(title: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"movie:{title}")


async def load(session: AsyncSession) -> None:
    await upsert_movies(
        session,
        [
            MovieSpec(
                id=movie_id(title),
                title=title,
                currency="RUB",
                description=f"{title} — a demo film.",
                purchase_amount=buy,
                rent_amount=rent,
                rent_hours=48,
            )
            for title, buy, rent in MOVIES
        ],
    )
    await save_plan(
        session,
        PlanSpec(
            code="basic",
            name="Basic",
            description="Three classics, one low price.",
            price_amount=29900,
            currency="RUB",
            max_months=12,
            movie_ids=tuple(movie_id(title) for title, _, _ in MOVIES[:3]),
            role="subscriber_basic",
        ),
    )
    await save_plan(
        session,
        PlanSpec(
            code="premium",
            name="Premium",
            description="Every film in the catalogue, shared with up to three people at home.",
            price_amount=59900,
            currency="RUB",
            max_months=12,
            all_movies=True,
            role="subscriber_premium",
            trial_days=7,
            household_seats=3,
        ),
    )
    await save_plan(
        session,
        PlanSpec(
            code="pass-30",
            name="30-day pass",
            description="Everything for 30 days, no renewal surprises.",
            price_amount=69900,
            currency="RUB",
            period_unit="day",
            period_days=30,
            max_months=1,
            all_movies=True,
            role="subscriber_premium",
            refund_policy="window_only",
        ),
    )
    for min_months, percent in ((3, 5), (6, 10), (12, 20)):
        await session.execute(
            insert(MonthTier)
            .values(
                id=uuid.uuid5(NAMESPACE, f"tier:{min_months}"),
                plan_id=None,
                min_months=min_months,
                percent=percent,
            )
            .on_conflict_do_nothing()
        )
    await session.execute(
        insert(PromoCode)
        .values(
            id=uuid.uuid5(NAMESPACE, "promo:WELCOME15"),
            code="WELCOME15",
            kind="percent",
            percent=15,
            plan_id=None,
            max_redemptions=1000,
            redemptions=0,
            active=True,
        )
        .on_conflict_do_nothing()
    )
