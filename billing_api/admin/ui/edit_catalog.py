"""The admin UI's plan and movie editors: they run the admin plans and movies services."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqladmin.filters import BooleanFilter
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from wtforms import Form, SelectMultipleField  # type: ignore[import-untyped]

from billing_api.admin.movies import service as movies
from billing_api.admin.movies.schemas import MovieChangesIn, MovieIn
from billing_api.admin.plans import service as plans
from billing_api.admin.plans.schemas import PlanChangesIn, PlanIn
from billing_api.admin.ui.edit import ServiceBackedView, actor, reloaded, sent
from billing_api.catalog import service as catalog_service
from billing_api.models import Movie, Plan

PLAN_FIELDS = (
    "name",
    "description",
    "max_months",
    "all_movies",
    "role",
    "grace_days",
    "trial_days",
    "refund_window_minutes",
    "refund_policy",
    "household_seats",
)


def _plan_changes(data: dict[str, Any]) -> dict[str, Any]:
    fields = sent(data, *PLAN_FIELDS)
    fields["description"] = fields["description"] or ""
    fields["price"] = {"amount": data.get("price_amount"), "currency": data.get("currency")}
    days = data.get("period_days")
    fields["period"] = "month" if data.get("period_unit", "month") == "month" else days
    fields["movie_ids"] = [] if fields["all_movies"] else list(data.get("movie_ids") or [])
    return fields


class PlanView(ServiceBackedView, model=Plan):
    name_plural = "Plans"
    icon = "fa-solid fa-film"
    column_list = [Plan.code, Plan.name, Plan.price_amount, Plan.currency, Plan.active]
    column_searchable_list = [Plan.code, Plan.name]
    column_filters = [BooleanFilter(Plan.active)]
    form_columns = [
        Plan.code,
        Plan.name,
        Plan.description,
        Plan.price_amount,
        Plan.currency,
        Plan.period_unit,
        Plan.period_days,
        Plan.max_months,
        Plan.all_movies,
        Plan.role,
        Plan.grace_days,
        Plan.trial_days,
        Plan.refund_window_minutes,
        Plan.refund_policy,
        Plan.active,
        Plan.household_seats,
    ]
    form_args = {
        "price_amount": {"label": "Price per period (minor units, e.g. kopecks)"},
        "period_unit": {"description": "month, or day (then set period days)"},
        "active": {"label": "Active (untick to archive: stop selling)"},
        "household_seats": {
            "label": "Household seats (people a subscriber may share it with, 0-6)"
        },
    }

    async def scaffold_form(self, rules: list[str] | None = None) -> type[Form]:
        base = await super().scaffold_form(rules)
        movies = await self._run_query(sa.select(Movie).order_by(Movie.title))

        class PlanForm(base):  # type: ignore[valid-type,misc]
            movie_ids = SelectMultipleField(
                "Movies (ignored when the plan covers all movies)",
                choices=[(str(movie.id), movie.title) for movie in movies],
            )

        return PlanForm

    async def get_form_data_for_edit(self, obj: Any) -> dict[str, Any]:
        data = await super().get_form_data_for_edit(obj)
        async with self.session_maker() as session:
            movie_ids = await catalog_service.plan_movie_ids(session, obj.id)
        data["movie_ids"] = [str(movie_id) for movie_id in movie_ids]
        return data

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        body = PlanIn.model_validate({"code": data.get("code"), **_plan_changes(data)})

        async def work(session: AsyncSession) -> Plan:
            out = await plans.create_plan(session, actor(request), body)
            return await reloaded(session, Plan, out.id)

        plan = await self._run(work)
        if data.get("active") is False:
            await self._run(
                lambda s: plans.set_plan_active(s, actor(request), plan.id, active=False)
            )
        return plan

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        body = PlanChangesIn.model_validate(_plan_changes(data))

        async def work(session: AsyncSession) -> Plan:
            plan_id = UUID(pk)
            current = await reloaded(session, Plan, plan_id)
            if data.get("code") not in (None, current.code):
                raise plans.InvalidChange("a plan's code cannot change")
            await plans.update_plan(session, actor(request), plan_id, body)
            if data.get("active") is not None and data["active"] != current.active:
                await plans.set_plan_active(
                    session, actor(request), plan_id, active=bool(data["active"])
                )
            return await reloaded(session, Plan, plan_id)

        return await self._run(work)


def _movie_changes(data: dict[str, Any]) -> dict[str, Any]:
    fields = sent(data, "title", "description", "available", "rent_hours")
    currency = data.get("currency") or "RUB"
    for name, column in (("purchase_price", "purchase_amount"), ("rent_price", "rent_amount")):
        amount = data.get(column)
        fields[name] = None if amount in (None, "") else {"amount": amount, "currency": currency}
    return fields


class MovieView(ServiceBackedView, model=Movie):
    name_plural = "Movies"
    icon = "fa-solid fa-video"
    column_list = [
        Movie.title,
        Movie.available,
        Movie.in_source,
        Movie.purchase_amount,
        Movie.rent_amount,
        Movie.rent_hours,
        Movie.currency,
    ]
    column_labels = {"available": "Sold by staff", "in_source": "In the movie admin"}
    column_searchable_list = [Movie.title, Movie.id]
    column_filters = [BooleanFilter(Movie.available), BooleanFilter(Movie.in_source)]
    form_columns = [
        Movie.title,
        Movie.description,
        Movie.available,
        Movie.purchase_amount,
        Movie.rent_amount,
        Movie.rent_hours,
        Movie.currency,
    ]

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        body = MovieIn.model_validate({"id": uuid4(), **_movie_changes(data)})

        async def work(session: AsyncSession) -> Movie:
            currency = str(data.get("currency") or "RUB")
            movie: Movie = await movies.create_movie(
                session, actor(request), body, default_currency=currency
            )
            return movie

        return await self._run(work)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        body = MovieChangesIn.model_validate(_movie_changes(data))

        async def work(session: AsyncSession) -> Movie:
            movie: Movie = await movies.update_movie(session, actor(request), UUID(pk), body)
            return movie

        return await self._run(work)
