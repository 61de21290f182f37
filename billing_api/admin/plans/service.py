"""Back-office edits of plans; every change goes through the catalog service (which publishes
``plan.changed``) and leaves an audit row.

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

from billing_api.admin.audit import service as audit
from billing_api.admin.plans.schemas import AdminPlanOut, PlanChangesIn, PlanIn
from billing_api.catalog import service as catalog
from billing_api.catalog.service import PlanSpec
from billing_api.entitlements import LIVE_SUBSCRIPTION
from billing_api.models import Movie, Plan, Subscription
from shared.errors import Conflict, UnprocessableEntity


class PlanCodeTaken(Conflict):
    default_detail = "a plan with this code exists already"


class UnknownMovies(UnprocessableEntity):
    default_detail = "some movie ids are not in the catalog"


class InvalidChange(UnprocessableEntity):
    default_detail = "the change is not valid"


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
        household_seats=plan.household_seats,
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
