"""payment_gateway: one internal payments API in front of Stripe, YooKassa and the sandbox."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import FastAPI

from payment_gateway.config import SCHEMA, SERVICE, GatewaySettings
from payment_gateway.payments.api import router as payments_router
from payment_gateway.providers.base import PaymentProvider
from payment_gateway.providers.calls import ProviderCalls
from payment_gateway.providers.registry import Providers
from payment_gateway.refunds.api import router as refunds_router
from payment_gateway.sandbox.action_pages import router as sandbox_actions_router
from payment_gateway.sandbox.dashboard import router as sandbox_dashboard_router
from payment_gateway.sandbox.delivery import WebhookSender
from payment_gateway.sandbox.pages import router as sandbox_router
from payment_gateway.sandbox.provider import SandboxProvider
from payment_gateway.stripe_actions import router as stripe_actions_router
from payment_gateway.webhooks.api import operator_router as webhooks_operator_router
from payment_gateway.webhooks.api import router as webhooks_router
from payment_gateway.webhooks.processor import WebhookProcessor
from shared.app import create_service_app
from shared.auth import AuthSettings
from shared.observability import create_http_client
from shared.ratelimit import create_rate_limiter
from shared.relay import start_outbox_relay
from shared.resources import Resources, make_database

if TYPE_CHECKING:
    import httpx

    from payment_gateway.providers.stripe_provider import StripeProvider
    from payment_gateway.providers.yookassa_provider import YooKassaProvider

YOOKASSA_TIMEOUT = 30.0  # seconds; YooKassa answers a payment it is still creating within this


def create_app(
    settings: GatewaySettings | None = None,
    auth_settings: AuthSettings | None = None,
    *,
    stripe: PaymentProvider | None = None,
) -> FastAPI:
    """Build the gateway; ``stripe`` replaces the Stripe provider built from settings (tests)."""
    settings = settings or GatewaySettings()

    async def start(app: FastAPI, resources: Resources) -> None:
        app.state.rate_limiter = create_rate_limiter(
            settings, settings.rate_limits, service=SERVICE
        )
        # The call journal commits while the request that makes the call holds its own
        # connection: a pool of its own, so requests never wait on their own pool for it.
        calls_engine, calls_sessions = make_database(
            settings, service="payment_gateway-calls", schema=SCHEMA
        )
        resources.exit_stack.push_async_callback(calls_engine.dispose)
        providers = Providers(
            default=settings.default_provider,
            routes=settings.routes,
            calls=ProviderCalls(calls_sessions),
        )
        if settings.yookassa_on:
            yookassa_http = await resources.exit_stack.enter_async_context(
                create_http_client(timeout=YOOKASSA_TIMEOUT)
            )
            providers.by_name["yookassa"] = _yookassa_from(settings, yookassa_http)
        if stripe is not None:
            providers.by_name["stripe"] = stripe
        elif settings.stripe_api_key:
            built = _stripe_from(settings)
            resources.exit_stack.push_async_callback(built.aclose)
            providers.by_name["stripe"] = built
        if settings.sandbox_on:
            # The sandbox stands for a remote processor: its own connection pool, so a gateway
            # request holding a connection never waits on the same pool for the "provider".
            sandbox_engine, sandbox_sessions = make_database(
                settings, service="sandbox", schema=SCHEMA
            )
            resources.exit_stack.push_async_callback(sandbox_engine.dispose)
            sandbox = SandboxProvider(
                sandbox_sessions,
                public_url=settings.public_url,
                webhook_secret=settings.sandbox_webhook_secret.get_secret_value(),
            )
            providers.by_name["sandbox"] = sandbox
            app.state.sandbox = sandbox
            http = await resources.exit_stack.enter_async_context(
                create_http_client(limits=WebhookSender.limits())
            )
            sender = WebhookSender(
                sandbox,
                http,
                settings.sandbox_webhook_url
                or f"{settings.public_url.rstrip('/')}/webhooks/sandbox",
            )
            app.state.sandbox_sender = sender
            resources.tasks.append(asyncio.create_task(sender.run(), name="sandbox-webhooks"))
        unserved = sorted(set(settings.routes.values()) - set(providers.by_name))
        if unserved:
            raise RuntimeError(
                f"GATEWAY_PROVIDER_ROUTES names {', '.join(unserved)}, which is not configured"
            )
        app.state.providers = providers
        processor = WebhookProcessor(
            resources.session_factory,
            providers,
            max_attempts=settings.webhook_max_attempts,
            max_backoff=settings.webhook_max_backoff_seconds,
        )
        app.state.webhook_processor = processor
        resources.tasks.append(asyncio.create_task(processor.run(), name="webhook-processor"))
        await start_outbox_relay(app, resources)

    routers = [
        payments_router,
        refunds_router,
        webhooks_router,
        webhooks_operator_router,
        stripe_actions_router,
    ]
    if settings.sandbox_on:
        routers.extend([sandbox_router, sandbox_actions_router, sandbox_dashboard_router])
    return create_service_app(
        service=SERVICE,
        schema=SCHEMA,
        title="Cinema payment gateway",
        description="Payments and refunds through Stripe, YooKassa or the sandbox; webhooks.",
        settings=settings,
        auth_settings=auth_settings,
        routers=routers,
        on_startup=start,
    )


def _stripe_from(settings: GatewaySettings) -> StripeProvider:
    import stripe

    from payment_gateway.providers.stripe_provider import StripeProvider

    # The SDK would otherwise write a telemetry id under ~/.config at the first request, from
    # inside the event loop, and report platform details to Stripe.
    stripe.enable_telemetry = False

    assert settings.stripe_api_key is not None
    if settings.stripe_webhook_secret is None:
        raise RuntimeError("GATEWAY_STRIPE_WEBHOOK_SECRET is required with a Stripe key")
    return StripeProvider(
        settings.stripe_api_key.get_secret_value(),
        settings.stripe_webhook_secret.get_secret_value(),
        api_base=settings.stripe_api_base,
        public_url=settings.public_url,
    )


def _yookassa_from(settings: GatewaySettings, http: httpx.AsyncClient) -> YooKassaProvider:
    from payment_gateway.config import parse_networks
    from payment_gateway.providers.yookassa_provider import YooKassaProvider
    from payment_gateway.providers.yookassa_receipts import ReceiptRules

    if not settings.yookassa_shop_id or settings.yookassa_secret_key is None:
        raise RuntimeError("GATEWAY_YOOKASSA_SHOP_ID and GATEWAY_YOOKASSA_SECRET_KEY go together")
    receipts = (
        ReceiptRules(
            vat_code=settings.yookassa_vat_code,
            tax_system_code=settings.yookassa_tax_system_code,
            payment_subject=settings.yookassa_payment_subject,
            payment_mode=settings.yookassa_payment_mode,
        )
        if settings.yookassa_receipts
        else None
    )
    return YooKassaProvider(
        settings.yookassa_shop_id,
        settings.yookassa_secret_key.get_secret_value(),
        api_base=settings.yookassa_api_base,
        http=http,
        allowed_networks=parse_networks(settings.yookassa_allowed_ips),
        trusted_proxies=parse_networks(settings.yookassa_trusted_proxies),
        client_ip_header=settings.yookassa_client_ip_header,
        receipts=receipts,
    )
