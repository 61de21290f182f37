"""The admin UI's editable views: every create, edit and delete runs the admin service the API
uses, in a transaction of its own, so events and audit rows are written the same way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID, uuid4

import sqlalchemy as sa
from pydantic import ValidationError as PydanticValidationError
from sqladmin import ModelView
from sqladmin.filters import AllUniqueStringValuesFilter, BooleanFilter
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from wtforms import Form, SelectMultipleField  # type: ignore[import-untyped]
from wtforms.validators import InputRequired  # type: ignore[import-untyped]

from billing_api.admin import catalog as admin_catalog
from billing_api.admin import discounts
from billing_api.admin.schemas import (
    MonthTierChangesIn,
    MonthTierIn,
    MovieChangesIn,
    MovieIn,
    PersonalDiscountIn,
    PlanChangesIn,
    PlanIn,
    PromoCodeChangesIn,
    PromoCodeIn,
)
from billing_api.catalog import service as catalog_service
from billing_api.models import MonthTier, Movie, PersonalDiscount, Plan, PromoCode
from shared.errors import AppError, Conflict

T = TypeVar("T")


def actor(request: Request) -> str:
    return str(request.session.get("actor", "ui:unknown"))


# --- editable views: every change goes through the admin services ---------------------------


class ServiceBackedView(ModelView):
    """A view whose create/edit/delete run an admin service in one transaction of their own."""

    can_export = False
    can_delete = False

    async def _run(self, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        try:
            async with self.session_maker() as session, session.begin():
                return await work(session)
        except PydanticValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            raise ValueError(problems) from None
        except AppError as exc:
            raise ValueError(exc.detail) from None


def _sent(data: dict[str, Any], *names: str) -> dict[str, Any]:
    """The form fields among ``names`` with empty text turned into ``None``."""
    return {name: (None if data.get(name) == "" else data.get(name)) for name in names}


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
)


def _plan_changes(data: dict[str, Any]) -> dict[str, Any]:
    fields = _sent(data, *PLAN_FIELDS)
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
    ]
    form_args = {
        "price_amount": {"label": "Price per period (minor units, e.g. kopecks)"},
        "period_unit": {"description": "month, or day (then set period days)"},
        "active": {"label": "Active (untick to archive: stop selling)"},
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
            out = await admin_catalog.create_plan(session, actor(request), body)
            return await _get(session, Plan, out.id)

        plan = await self._run(work)
        if data.get("active") is False:
            await self._run(
                lambda s: admin_catalog.set_plan_active(s, actor(request), plan.id, active=False)
            )
        return plan

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        body = PlanChangesIn.model_validate(_plan_changes(data))

        async def work(session: AsyncSession) -> Plan:
            plan_id = UUID(pk)
            current = await _get(session, Plan, plan_id)
            if data.get("code") not in (None, current.code):
                raise admin_catalog.InvalidChange("a plan's code cannot change")
            await admin_catalog.update_plan(session, actor(request), plan_id, body)
            if data.get("active") is not None and data["active"] != current.active:
                await admin_catalog.set_plan_active(
                    session, actor(request), plan_id, active=bool(data["active"])
                )
            return await _get(session, Plan, plan_id)

        return await self._run(work)


def _movie_changes(data: dict[str, Any]) -> dict[str, Any]:
    fields = _sent(data, "title", "description", "available", "rent_hours")
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
            movie: Movie = await admin_catalog.create_movie(
                session, actor(request), body, default_currency=currency
            )
            return movie

        return await self._run(work)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        body = MovieChangesIn.model_validate(_movie_changes(data))

        async def work(session: AsyncSession) -> Movie:
            movie: Movie = await admin_catalog.update_movie(session, actor(request), UUID(pk), body)
            return movie

        return await self._run(work)


class MonthTierView(ServiceBackedView, model=MonthTier):
    name_plural = "Months tiers"
    icon = "fa-solid fa-percent"
    can_delete = True
    column_list = [MonthTier.plan_id, MonthTier.min_months, MonthTier.percent]
    form_columns = [MonthTier.plan_id, MonthTier.min_months, MonthTier.percent]

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        body = MonthTierIn.model_validate(_sent(data, "plan_id", "min_months", "percent"))

        async def work(session: AsyncSession) -> MonthTier:
            out = await discounts.create_tier(session, actor(request), body)
            return await _get(session, MonthTier, out.id)

        return await self._run(work)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        body = MonthTierChangesIn.model_validate(_sent(data, "percent"))

        async def work(session: AsyncSession) -> MonthTier:
            await discounts.update_tier(session, actor(request), UUID(pk), body)
            return await _get(session, MonthTier, UUID(pk))

        return await self._run(work)

    async def delete_model(self, request: Request, pk: Any) -> None:
        await self._run(lambda s: discounts.delete_tier(s, actor(request), UUID(str(pk))))


class PersonalDiscountExists(Conflict):
    default_detail = "the user already has a personal discount"


class PersonalDiscountView(ServiceBackedView, model=PersonalDiscount):
    name_plural = "Personal discounts"
    icon = "fa-solid fa-user-tag"
    can_delete = True
    column_list = [
        PersonalDiscount.user_id,
        PersonalDiscount.percent,
        PersonalDiscount.reason,
        PersonalDiscount.updated_at,
    ]
    column_searchable_list = [PersonalDiscount.user_id, PersonalDiscount.reason]
    form_columns = [PersonalDiscount.user_id, PersonalDiscount.percent, PersonalDiscount.reason]
    # The user id is the row's primary key, which sqladmin leaves out of forms unless asked: it
    # is asked for when the discount is created (checked as a UUID by the field) and fixed after.
    form_include_pk = True
    form_create_rules = ["user_id", "percent", "reason"]
    form_edit_rules = ["percent", "reason"]
    form_args = {
        "user_id": {
            "label": "User id",
            "description": "The customer's user id (UUID): the sub of their token.",
            "validators": [InputRequired()],
        }
    }

    async def _set(
        self, request: Request, user_id: UUID, data: dict[str, Any], *, new: bool
    ) -> Any:
        body = PersonalDiscountIn.model_validate(
            {"percent": data.get("percent"), "reason": data.get("reason") or ""}
        )

        async def work(session: AsyncSession) -> PersonalDiscount:
            if new and await session.get(PersonalDiscount, user_id) is not None:
                raise PersonalDiscountExists(
                    f"user {user_id} already has a personal discount: edit that one"
                )
            await discounts.set_personal(session, actor(request), user_id, body)
            return await _get(session, PersonalDiscount, user_id)

        return await self._run(work)

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        user_id = data.get("user_id")
        if not isinstance(user_id, UUID):  # the form's field checks it; never trust a default
            raise ValueError("user_id: a user id (UUID) is required")
        return await self._set(request, user_id, data, new=True)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        return await self._set(request, UUID(pk), data, new=False)

    async def delete_model(self, request: Request, pk: Any) -> None:
        await self._run(lambda s: discounts.delete_personal(s, actor(request), UUID(str(pk))))


class PromoCodeView(ServiceBackedView, model=PromoCode):
    name_plural = "Promo codes"
    icon = "fa-solid fa-ticket"
    column_list = [
        PromoCode.code,
        PromoCode.kind,
        PromoCode.percent,
        PromoCode.amount,
        PromoCode.currency,
        PromoCode.plan_id,
        PromoCode.valid_until,
        PromoCode.redemptions,
        PromoCode.max_redemptions,
        PromoCode.active,
    ]
    column_searchable_list = [PromoCode.code]
    column_filters = [BooleanFilter(PromoCode.active), AllUniqueStringValuesFilter(PromoCode.kind)]
    form_columns = [
        PromoCode.code,
        PromoCode.kind,
        PromoCode.percent,
        PromoCode.amount,
        PromoCode.currency,
        PromoCode.plan_id,
        PromoCode.valid_from,
        PromoCode.valid_until,
        PromoCode.max_redemptions,
        PromoCode.active,
    ]
    form_args = {"kind": {"description": "percent or fixed"}}

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        fields = _sent(
            data,
            "code",
            "kind",
            "percent",
            "plan_id",
            "valid_from",
            "valid_until",
            "max_redemptions",
        )
        if data.get("amount") not in (None, ""):
            fields["amount"] = {"amount": data["amount"], "currency": data.get("currency")}
        body = PromoCodeIn.model_validate(fields)

        async def work(session: AsyncSession) -> PromoCode:
            out = await discounts.create_promo(session, actor(request), body)
            if data.get("active") is False:
                await discounts.update_promo(
                    session, actor(request), out.id, PromoCodeChangesIn(), active=False
                )
            return await _get(session, PromoCode, out.id)

        return await self._run(work)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        body = PromoCodeChangesIn.model_validate(_sent(data, "valid_until", "max_redemptions"))
        active = data.get("active")

        async def work(session: AsyncSession) -> PromoCode:
            await discounts.update_promo(
                session,
                actor(request),
                UUID(pk),
                body,
                active=None if active is None else bool(active),
            )
            return await _get(session, PromoCode, UUID(pk))

        return await self._run(work)


async def _get(session: AsyncSession, model: type[T], pk: Any) -> T:
    row = await session.get(model, pk, populate_existing=True)
    assert row is not None
    return row
