"""billing_api: the system of record for plans, subscriptions, purchases, payments and money."""

from __future__ import annotations

from fastapi import FastAPI

from billing_api.activation.handlers import CONSUMER
from billing_api.admin.api import routers as admin_routers
from billing_api.admin.ui.app import mount_admin_ui
from billing_api.catalog.api import router as catalog_router
from billing_api.config import SCHEMA, SERVICE, AdminUISettings, BillingSettings
from billing_api.gateway import GatewayClient
from billing_api.gifts.api import router as gifts_router
from billing_api.households.api import households_router, members_router
from billing_api.idempotency import IdempotencyMiddleware
from billing_api.metrics import read_billing_state
from billing_api.payments.api import pages as checkout_pages
from billing_api.payments.api import router as payments_router
from billing_api.portal.actions import router as portal_actions
from billing_api.portal.api import router as portal_sessions_router
from billing_api.portal.pages import router as portal_pages
from billing_api.portal.receipt_pages import router as portal_receipts
from billing_api.pricing.api import router as pricing_router
from billing_api.purchases.api import router as purchases_router
from billing_api.receipts import links as receipt_links
from billing_api.receipts.api import pages as receipt_pages
from billing_api.receipts.api import router as receipts_router
from billing_api.refunds.api import router as refunds_router
from billing_api.subscriptions.api import router as subscriptions_router
from billing_api.wallet.api import router as wallet_router
from shared.app import create_service_app
from shared.auth import AuthSettings
from shared.observability import create_http_client
from shared.ratelimit import create_rate_limiter
from shared.resources import Resources


def create_app(
    settings: BillingSettings | None = None,
    auth_settings: AuthSettings | None = None,
    admin_ui_settings: AdminUISettings | None = None,
) -> FastAPI:
    settings = settings or BillingSettings()
    auth = auth_settings or AuthSettings()

    async def start(app: FastAPI, resources: Resources) -> None:
        app.state.rate_limiter = create_rate_limiter(
            settings, settings.rate_limits, service=SERVICE
        )
        http = await resources.exit_stack.enter_async_context(create_http_client())
        app.state.gateway = GatewayClient(http, settings.gateway_url, auth)
        receipt_links.install(resources.session_factory, settings)
        app.state.admin_ui_sessions.configure(**resources.session_factory.kw)

    app = create_service_app(
        service=SERVICE,
        schema=SCHEMA,
        title="Cinema billing API",
        description="Plans, quotes, subscriptions, purchases, payments, refunds and wallets.",
        settings=settings,
        auth_settings=auth,
        routers=[
            catalog_router,
            pricing_router,
            subscriptions_router,
            members_router,
            households_router,
            purchases_router,
            payments_router,
            refunds_router,
            wallet_router,
            receipts_router,
            portal_sessions_router,
            gifts_router,
            checkout_pages,
            receipt_pages,
            portal_pages,
            portal_actions,
            portal_receipts,
            *admin_routers,
        ],
        on_startup=start,
        middleware=[IdempotencyMiddleware],
        consumer=CONSUMER,
        metric_probes=[read_billing_state],
    )
    ui_settings = admin_ui_settings or AdminUISettings()
    app.state.admin_ui_settings = ui_settings  # the admin API's refund limit reads it too
    app.state.admin_ui_sessions = mount_admin_ui(app, ui_settings, app.state.token_verifier)
    return app
