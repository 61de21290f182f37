"""Back-office edits of plans and movies; every change goes through the catalog service (which
publishes ``plan.changed``) and leaves an audit row.

Plans are archived, never deleted. **Archiving stops selling the plan; people already subscribed
keep their access until their subscription ends.** The plan leaves ``GET /api/v1/plans`` and
cannot be checked out, but while it still has subscriptions in status ``active``/``grace`` (or
live complimentary grants, or live subscriptions with a downgrade to it scheduled) the
``plan.changed`` snapshot says ``active=true``, because access_api reads ``active=false`` as
"this plan grants nothing"; see :func:`billing_api.catalog.service.plan_grants_access`. Archiving
never cancels a scheduled downgrade: the user chose the cheaper plan, and renewals never charge
for a plan published as granting nothing (:mod:`billing_api.lifecycle.renewals`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from billing_api.admin import audit
from billing_api.admin.schemas import AdminPlanOut, MovieChangesIn, MovieIn, PlanChangesIn, PlanIn
from billing_api.catalog import service as catalog
from billing_api.catalog.service import PlanSpec
from billing_api.entitlements import LIVE_SUBSCRIPTION
from billing_api.models import Movie, Plan, Subscription
from shared.errors import Conflict, UnprocessableEntity
from shared.money import Money


class PlanCodeTaken(Conflict):
    default_detail = "a plan with this code exists already"


class UnknownMovies(UnprocessableEntity):
    default_detail = "some movie ids are not in the catalog"


class MovieExists(Conflict):
    default_detail = "a movie with this id exists already"


class InvalidChange(UnprocessableEntity):
    default_detail = "the change is not valid"


# --- plans -----------------------------------------------------------------------------------


def _spec_of(plan: Plan, movie_ids: list[UUID]) -> PlanSpec:
    return PlanSpec(
        code=plan.code,
        name=plan.name,
        price_amount=plan.price_amount,
        currency=plan.currency,
        description=plan.description,
        period_unit=plan.period_unit,
        period_days=plan.period_days,
        max_months=plan.max_months,
        all_movies=plan.all_movies,
        movie_ids=tuple(movie_ids),
        role=plan.role,
        grace_days=plan.grace_days,
        trial_days=plan.trial_days,
        refund_window_minutes=plan.refund_window_minutes,
        refund_policy=plan.refund_policy,
        active=plan.active,
    )


NOT_NULLABLE = frozenset(PlanChangesIn.model_fields) - {"role"}


def _apply(spec: PlanSpec, changes: dict[str, Any]) -> PlanSpec:
    """``spec`` with the sent fields of a :class:`PlanChangesIn` (``exclude_unset`` dump)."""
    cleared = sorted(key for key, value in changes.items() if value is None and key in NOT_NULLABLE)
    if cleared:
        raise InvalidChange(f"these fields cannot be null: {', '.join(cleared)}")
    fields: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "price":
            fields["price_amount"], fields["currency"] = value["amount"], value["currency"]
        elif key == "period":
            month = value == "month"
            fields["period_unit"], fields["period_days"] = (
                ("month", None) if month else ("day", value)
            )
        elif key == "movie_ids":
            fields["movie_ids"] = tuple(dict.fromkeys(value))
        else:
            fields[key] = value
    spec = replace(spec, **fields)
    if spec.all_movies and spec.movie_ids:
        raise InvalidChange("a plan covers all movies or a list of movies, not both")
    return spec


async def _check_movies(session: AsyncSession, movie_ids: tuple[UUID, ...]) -> None:
    if not movie_ids:
        return
    known = set(await session.scalars(sa.select(Movie.id).where(Movie.id.in_(movie_ids))))
    missing = [str(movie_id) for movie_id in movie_ids if movie_id not in known]
    if missing:
        raise UnknownMovies(f"unknown movie ids: {', '.join(missing[:20])}")


async def admin_plan_out(session: AsyncSession, plan: Plan) -> AdminPlanOut:
    movie_ids = [] if plan.all_movies else await catalog.plan_movie_ids(session, plan.id)
    live = await session.scalar(
        sa.select(sa.func.count())
        .select_from(Subscription)
        .where(Subscription.plan_id == plan.id, Subscription.status.in_(LIVE_SUBSCRIPTION))
    )
    return AdminPlanOut(
        **catalog.plan_out(plan).model_dump(),
        movie_ids=movie_ids,
        role=plan.role,
        version=plan.version,
        live_subscriptions=int(live or 0),
    )


async def _save(
    session: AsyncSession,
    actor: str,
    action: str,
    before: dict[str, Any] | None,
    spec: PlanSpec,
) -> AdminPlanOut:
    await _check_movies(session, spec.movie_ids)
    plan, changed = await catalog.save_plan(session, spec)
    out = await admin_plan_out(session, plan)
    if changed:
        after = audit.snapshot(plan, movie_ids=out.movie_ids)
        await audit.record(session, actor, action, "plan", plan.id, before=before, after=after)
    return out


async def _plan_json(session: AsyncSession, plan: Plan) -> dict[str, Any]:
    return audit.snapshot(plan, movie_ids=await catalog.plan_movie_ids(session, plan.id))


async def create_plan(session: AsyncSession, actor: str, body: PlanIn) -> AdminPlanOut:
    taken = await session.scalar(sa.select(Plan.id).where(Plan.code == body.code))
    if taken is not None:
        raise PlanCodeTaken(f"plan code {body.code!r} is taken")
    base = PlanSpec(code=body.code, name=body.name, price_amount=0, currency="RUB")
    spec = _apply(base, body.model_dump(exclude_unset=True, exclude={"code"}))
    return await _save(session, actor, "plan.create", None, spec)


async def _locked_plan(session: AsyncSession, plan_id: UUID) -> Plan:
    plan = await catalog.load_plan(session, plan_id, active_only=False)
    await session.refresh(plan, with_for_update=True)
    return plan


async def update_plan(
    session: AsyncSession, actor: str, plan_id: UUID, body: PlanChangesIn
) -> AdminPlanOut:
    """Change a plan; a new price applies to new purchases and to renewals after this period."""
    plan = await _locked_plan(session, plan_id)
    before = await _plan_json(session, plan)
    spec = _spec_of(plan, await catalog.plan_movie_ids(session, plan.id))
    spec = _apply(spec, body.model_dump(exclude_unset=True))
    return await _save(session, actor, "plan.update", before, spec)


async def set_plan_active(
    session: AsyncSession, actor: str, plan_id: UUID, *, active: bool
) -> AdminPlanOut:
    """Archive (stop selling) or restore a plan."""
    plan = await _locked_plan(session, plan_id)
    before = await _plan_json(session, plan)
    spec = replace(_spec_of(plan, await catalog.plan_movie_ids(session, plan.id)), active=active)
    return await _save(session, actor, "plan.restore" if active else "plan.archive", before, spec)


async def list_plans(session: AsyncSession, *, active: bool | None) -> list[AdminPlanOut]:
    query = sa.select(Plan).order_by(Plan.active.desc(), Plan.price_amount, Plan.code)
    if active is not None:
        query = query.where(Plan.active.is_(active))
    return [await admin_plan_out(session, plan) for plan in await session.scalars(query)]


async def get_plan(session: AsyncSession, plan_id: UUID) -> AdminPlanOut:
    return await admin_plan_out(
        session, await catalog.load_plan(session, plan_id, active_only=False)
    )


# --- movies ----------------------------------------------------------------------------------


def _movie_fields(movie: Movie | None, changes: dict[str, Any]) -> dict[str, Any]:
    """Column values for the sent fields of a :class:`MovieChangesIn`, checked for consistency."""
    for key in ("title", "available"):
        if key in changes and changes[key] is None:
            raise InvalidChange(f"{key} cannot be null")
    fields = {k: v for k, v in changes.items() if k in ("title", "description", "available")}
    if fields.get("description", "") is None:
        fields["description"] = ""
    currencies = set()
    for key, column in (("purchase_price", "purchase_amount"), ("rent_price", "rent_amount")):
        if key in changes:
            price = changes[key]
            fields[column] = None if price is None else price["amount"]
            if price is not None:
                currencies.add(price["currency"])
    if "rent_hours" in changes:
        fields["rent_hours"] = changes["rent_hours"]
    merged = {
        column: fields.get(column, getattr(movie, column) if movie else None)
        for column in ("purchase_amount", "rent_amount", "rent_hours")
    }
    if merged["purchase_amount"] is not None and merged["purchase_amount"] <= 0:
        raise InvalidChange("purchase_price must be positive")
    if (merged["rent_amount"] is None) != (merged["rent_hours"] is None):
        raise InvalidChange("rent_price and rent_hours go together (both set, or both null)")
    if merged["rent_amount"] is not None and merged["rent_amount"] <= 0:
        raise InvalidChange("rent_price must be positive")
    if len(currencies) > 1:
        raise InvalidChange("purchase_price and rent_price must be in the same currency")
    if currencies:
        currency = currencies.pop()
        other_set = movie is not None and any(
            merged[c] is not None and c not in fields for c in ("purchase_amount", "rent_amount")
        )
        if other_set and movie is not None and movie.currency != currency:
            raise InvalidChange(f"the movie's other price is in {movie.currency}")
        fields["currency"] = currency
    return fields


async def create_movie(
    session: AsyncSession, actor: str, body: MovieIn, *, default_currency: str
) -> Movie:
    if await session.get(Movie, body.id) is not None:
        raise MovieExists(f"movie {body.id} exists already")
    fields = _movie_fields(None, body.model_dump(exclude_unset=True, exclude={"id"}))
    movie = Movie(id=body.id, currency=default_currency, description="", available=True)
    for key, value in fields.items():
        setattr(movie, key, value)
    session.add(movie)
    await session.flush()
    await audit.record(
        session, actor, "movie.create", "movie", movie.id, after=audit.snapshot(movie)
    )
    return movie


async def update_movie(
    session: AsyncSession, actor: str, movie_id: UUID, body: MovieChangesIn
) -> Movie:
    """Edit a movie: its catalog fields and the prices it is bought or rented for."""
    movie = await session.get(Movie, movie_id, with_for_update=True)
    if movie is None:
        raise catalog.MovieNotFound(f"movie {movie_id} not found")
    before = audit.snapshot(movie)
    for key, value in _movie_fields(movie, body.model_dump(exclude_unset=True)).items():
        setattr(movie, key, value)
    await session.flush()
    after = audit.snapshot(movie)
    if after != before:
        await audit.record(
            session, actor, "movie.update", "movie", movie.id, before=before, after=after
        )
    return movie


async def get_movie(session: AsyncSession, movie_id: UUID) -> Movie:
    movie = await session.get(Movie, movie_id)
    if movie is None:
        raise catalog.MovieNotFound(f"movie {movie_id} not found")
    return movie


def money(amount: int | None, currency: str) -> Money | None:
    return None if amount is None else Money(amount=amount, currency=currency)
