"""The admin API's routers, in the order the app mounts them."""

from __future__ import annotations

from fastapi import APIRouter

from billing_api.admin.audit.api import router as audit_router
from billing_api.admin.customers.api import router as customers_router
from billing_api.admin.discounts.api import router as discounts_router
from billing_api.admin.gifts.api import router as gifts_router
from billing_api.admin.households.api import router as households_router
from billing_api.admin.movies.api import router as movies_router
from billing_api.admin.plans.api import router as plans_router
from billing_api.reports.api import router as reports_router

routers: tuple[APIRouter, ...] = (
    movies_router,
    plans_router,
    discounts_router,
    customers_router,
    audit_router,
    households_router,
    reports_router,
    gifts_router,
)
