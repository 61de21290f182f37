"""Plans and movies: what can be bought, and the ``plan.changed`` snapshots access_api keeps."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.catalog.schemas import MovieOffer, MovieOffersOut, PlanDetailOut, PlanOut
from billing_api.models import (
    ComplimentaryGrant,
    Movie,
    Plan,
    PlanMovie,
    Subscription,
    SubscriptionStatus,
)
from shared import clock, events, outbox
from shared.auth import PRIVILEGED_ROLES
from shared.errors import NotFound, UnprocessableEntity
from shared.money import Money


class PlanNotFound(NotFound):
    default_detail = "no such plan"


class PrivilegedPlanRole(UnprocessableEntity):
    default_detail = "a plan never grants the role admin or service"


class MovieNotFound(NotFound):
    default_detail = "no such movie"


def plan_out(plan: Plan) -> PlanOut:
    return PlanOut(
        id=plan.id,
        code=plan.code,
        name=plan.name,
        description=plan.description,
        price=Money(amount=plan.price_amount, currency=plan.currency),
        period="month" if plan.period_unit == "month" else int(plan.period_days or 0),
        max_months=plan.max_months,
        all_movies=plan.all_movies,
        trial_days=plan.trial_days,
        grace_days=plan.grace_days,
        refund_policy=plan.refund_policy,
        refund_window_minutes=plan.refund_window_minutes,
        active=plan.active,
        household_seats=plan.household_seats,
    )


async def list_active_plans(session: AsyncSession) -> list[PlanOut]:
    plans = await session.scalars(
        sa.select(Plan).where(Plan.active).order_by(Plan.price_amount, Plan.code)
    )
    return [plan_out(plan) for plan in plans]


async def load_plan(session: AsyncSession, plan_id: UUID, *, active_only: bool = True) -> Plan:
    plan = await session.get(Plan, plan_id)
    if plan is None or (active_only and not plan.active):
        raise PlanNotFound(f"plan {plan_id} not found")
    return plan


async def plan_movie_ids(session: AsyncSession, plan_id: UUID) -> list[UUID]:
    return list(
        await session.scalars(
            sa.select(PlanMovie.movie_id)
            .where(PlanMovie.plan_id == plan_id)
            .order_by(PlanMovie.movie_id)
        )
    )


async def get_plan(session: AsyncSession, plan_id: UUID) -> PlanDetailOut:
    plan = await load_plan(session, plan_id)
    movie_ids = [] if plan.all_movies else await plan_movie_ids(session, plan.id)
    return PlanDetailOut(**plan_out(plan).model_dump(), movie_ids=movie_ids)


async def movie_offers(session: AsyncSession, movie_id: UUID) -> MovieOffersOut:
    movie = await session.get(Movie, movie_id)
    if movie is None:
        raise MovieNotFound(f"movie {movie_id} not found")
    plans = await session.scalars(
        sa.select(Plan)
        .where(
            Plan.active,
            sa.or_(
                Plan.all_movies,
                Plan.id.in_(sa.select(PlanMovie.plan_id).where(PlanMovie.movie_id == movie_id)),
            ),
        )
        .order_by(Plan.price_amount, Plan.code)
    )
    offers = []
    if movie.on_sale and movie.purchase_amount:
        offers.append(
            MovieOffer(
                kind="buy", price=Money(amount=movie.purchase_amount, currency=movie.currency)
            )
        )
    if movie.on_sale and movie.rent_amount:
        offers.append(
            MovieOffer(
                kind="rent",
                price=Money(amount=movie.rent_amount, currency=movie.currency),
                rent_hours=movie.rent_hours,
            )
        )
    return MovieOffersOut(
        movie_id=movie.id,
        title=movie.title,
        available=movie.on_sale,
        plans=[plan_out(plan) for plan in plans],
        offers=offers,
    )


@dataclass(frozen=True)
class PlanSpec:
    """Everything a plan is made of; used by the admin API and the demo data."""

    code: str
    name: str
    price_amount: int
    currency: str
    description: str = ""
    period_unit: str = "month"
    period_days: int | None = None
    max_months: int = 12
    all_movies: bool = False
    movie_ids: tuple[UUID, ...] = ()
    role: str | None = None
    grace_days: int = 2
    trial_days: int = 0
    refund_window_minutes: int = 60
    refund_policy: str = "window_then_prorata"
    active: bool = True
    household_seats: int = 0


async def save_plan(session: AsyncSession, spec: PlanSpec) -> tuple[Plan, bool]:
    """Create the plan with ``spec.code`` or bring it in line with ``spec``.

    Emits ``plan.changed`` (with a new version) only when something changed; returns the plan
    and whether it changed. A plan never grants a role that opens something here (``admin``,
    ``service``): everyone who buys it would get it (:class:`PrivilegedPlanRole`).
    """
    if spec.role is not None and spec.role.strip().lower() in PRIVILEGED_ROLES:
        raise PrivilegedPlanRole(f"a plan never grants the role {spec.role!r}")
    plan = await session.scalar(sa.select(Plan).where(Plan.code == spec.code).with_for_update())
    fields = {k: v for k, v in vars(spec).items() if k != "movie_ids"}
    created = changed = plan is None
    if plan is None:
        plan = Plan(**fields, version=1)
        session.add(plan)
        await session.flush()
    else:
        for key, value in fields.items():
            if getattr(plan, key) != value:
                setattr(plan, key, value)
                changed = True
    wanted = set() if spec.all_movies else set(spec.movie_ids)
    current = set(await plan_movie_ids(session, plan.id))
    if wanted != current:
        changed = True
        await session.execute(
            sa.delete(PlanMovie).where(
                PlanMovie.plan_id == plan.id, PlanMovie.movie_id.in_(current - wanted)
            )
        )
        session.add_all(PlanMovie(plan_id=plan.id, movie_id=m) for m in wanted - current)
    if changed:
        if not created:
            plan.version += 1
        await session.flush()
        await publish_plan(session, plan, sorted(wanted))
    return plan, changed


async def publish_plan(session: AsyncSession, plan: Plan, movie_ids: Iterable[UUID]) -> None:
    active = plan.active or await plan_grants_access(session, plan.id)
    plan.published_active = active
    await outbox.add(
        session,
        events.PlanChanged(
            plan_id=plan.id,
            code=plan.code,
            version=plan.version,
            all_movies=plan.all_movies,
            movie_ids=tuple(movie_ids),
            role=plan.role,
            active=active,
        ),
    )


async def plan_grants_access(session: AsyncSession, plan_id: UUID) -> bool:
    """Whether an archived plan must still grant access (``plan.changed.active=true``).

    Archiving stops selling a plan; people already subscribed keep their access until their
    subscription ends. access_api reads ``active=false`` as "this plan grants nothing", so the
    snapshot stays active while the plan has subscriptions in ``active``/``grace`` or live
    complimentary grants. Each grant still carries its own ``valid_until``, so once they end the
    plan grants nothing even though the last snapshot said ``active=true``.

    A plan that live subscriptions will switch to at their next renewal (a scheduled downgrade,
    ``pending_plan_id``) counts as one they are on: the downgrade the user chose goes ahead and
    the plan it charges for grants access.
    """
    live = await session.scalar(
        sa.select(
            sa.exists().where(
                sa.or_(Subscription.plan_id == plan_id, Subscription.pending_plan_id == plan_id),
                Subscription.status.in_((SubscriptionStatus.ACTIVE, SubscriptionStatus.GRACE)),
            )
            | sa.exists().where(
                ComplimentaryGrant.plan_id == plan_id,
                ComplimentaryGrant.revoked_at.is_(None),
                ComplimentaryGrant.valid_until > clock.now(),
            )
        )
    )
    return bool(live)


@dataclass(frozen=True)
class MovieSpec:
    id: UUID
    title: str
    currency: str
    description: str = ""
    purchase_amount: int | None = None
    rent_amount: int | None = None
    rent_hours: int | None = None
    available: bool = True


async def upsert_movies(session: AsyncSession, movies: Iterable[MovieSpec]) -> int:
    """Insert or update movies by id (the movie admin's UUID); returns how many were written."""
    from sqlalchemy.dialects.postgresql import insert

    rows = [vars(movie) for movie in movies]
    if not rows:
        return 0
    statement = insert(Movie).values(rows)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[Movie.id],
            set_={key: statement.excluded[key] for key in rows[0] if key != "id"}
            | {"updated_at": sa.func.now()},
        )
    )
    return len(rows)
